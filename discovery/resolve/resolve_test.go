package resolve

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/file"
	"github.com/horizonmesh/horizon/internal/testkit"
	"github.com/horizonmesh/horizon/internal/testkit/dnsserver"
)

// outputs records what a Resolver passes on.
type outputs struct {
	mu   sync.Mutex
	list []*discovery.ClusterSet
}

func (o *outputs) add(cs *discovery.ClusterSet) {
	o.mu.Lock()
	o.list = append(o.list, cs)
	o.mu.Unlock()
}

func (o *outputs) last() *discovery.ClusterSet {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.list) == 0 {
		return nil
	}
	return o.list[len(o.list)-1]
}

// resolved returns what the last output holds for payments.example.com.
func (o *outputs) resolved() ([]string, string) {
	cs := o.last()
	if cs == nil {
		return nil, ""
	}
	e, _ := cs.ExternalService("payments.example.com")
	return e.Resolved["pay.example.test"], e.ResolveErrors["pay.example.test"]
}

// TestResolverFollowsDNS: a real DNS server's answer for an external
// service's name changes, and the Resolver passes each answer on; when the
// server fails, the last good addresses stay, with the error, counted; the
// static service is untouched throughout.
func TestResolverFollowsDNS(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // runs last: after the DNS server stopped
	dns := dnsserver.Start(t)
	dns.Set("pay.example.test", "192.0.2.1")
	cs, err := file.Load("testdata/clusterset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var out outputs
	m := NewMetrics(prometheus.NewRegistry())
	r := New(Options{Lookup: dns.Resolver(), Interval: 50 * time.Millisecond, Timeout: time.Second, Out: out.add, Metrics: m})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()

	r.In(cs)
	// Passed on at once, before any lookup: the ClusterSet never waits for DNS.
	if out.last() == nil {
		t.Fatal("In passed nothing on")
	}
	wait := func(what string, want []string, wantErr bool) {
		t.Helper()
		testkit.Eventually(t, 10*time.Second, what, func() error {
			got, why := out.resolved()
			if !slices.Equal(got, want) || (why != "") != wantErr {
				return fmt.Errorf("resolved %v (error %q), want %v (error: %v)", got, why, want, wantErr)
			}
			return nil
		})
	}
	wait("the first answer", []string{"192.0.2.1"}, false)

	dns.Set("pay.example.test", "192.0.2.2", "192.0.2.3")
	wait("the changed answer", []string{"192.0.2.2", "192.0.2.3"}, false)

	dns.Fail("pay.example.test")
	wait("a failure keeping the last good answer", []string{"192.0.2.2", "192.0.2.3"}, true)
	if n := testutil.ToFloat64(m.lookups.WithLabelValues("failed")); n < 1 {
		t.Errorf("failed lookups counted %v", n)
	}
	if n := testutil.ToFloat64(m.resolved.WithLabelValues("failed")); n != 1 {
		t.Errorf("failing names %v, want 1", n)
	}
	geo, _ := out.last().ExternalService("geo.example.com")
	if geo.Resolved != nil || geo.Endpoints[0].Address != "192.0.2.10" {
		t.Errorf("the static service changed: %+v", geo)
	}

	dns.Set("pay.example.test", "192.0.2.4")
	wait("recovery", []string{"192.0.2.4"}, false)
}

// TestResolverForgetsDroppedNames: a name no longer in the input is not
// looked up again, and its answer is dropped.
func TestResolverForgetsDroppedNames(t *testing.T) {
	dns := dnsserver.Start(t)
	dns.Set("pay.example.test", "192.0.2.1")
	cs, err := file.Load("testdata/clusterset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var out outputs
	r := New(Options{Lookup: dns.Resolver(), Timeout: time.Second, Out: out.add})
	r.In(cs)
	r.round(context.Background(), true)
	if got := r.Answers()["pay.example.test"]; !slices.Equal(got, []string{"192.0.2.1"}) {
		t.Fatalf("answers %v", got)
	}
	plain, err := file.Parse("none.yaml", []byte("clusters: []\n"))
	if err != nil {
		t.Fatal(err)
	}
	r.In(plain)
	before := dns.Queries("pay.example.test")
	r.round(context.Background(), false)
	if len(r.Answers()) != 0 || dns.Queries("pay.example.test") != before {
		t.Fatalf("answers %v, queries %d -> %d", r.Answers(), before, dns.Queries("pay.example.test"))
	}
}
