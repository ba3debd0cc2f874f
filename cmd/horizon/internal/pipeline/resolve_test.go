package pipeline

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/resolve"
	"github.com/horizonmesh/horizon/internal/testkit"
	"github.com/horizonmesh/horizon/internal/testkit/dnsserver"
)

// lockedViews is fakeViews safe for the resolver's goroutine.
type lockedViews struct {
	mu  sync.Mutex
	got []*discovery.ClusterSet
}

func (v *lockedViews) Update(cs *discovery.ClusterSet) {
	v.mu.Lock()
	v.got = append(v.got, cs)
	v.mu.Unlock()
}
func (v *lockedViews) Apply(cs *discovery.ClusterSet) error {
	v.Update(cs)
	return nil
}
func (v *lockedViews) Run(ctx context.Context) error { <-ctx.Done(); return nil }
func (v *lockedViews) last() *discovery.ClusterSet {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.got) == 0 {
		return nil
	}
	return v.got[len(v.got)-1]
}

// TestResolveStage: with the external DNS stage, a published ClusterSet
// reaches the views at once, then again with its external services' DNS
// names resolved.
func TestResolveStage(t *testing.T) {
	dns := dnsserver.Start(t)
	dns.Set("api.example.test", "192.0.2.9")
	cs, err := clusterSet(t).WithExternal([]discovery.ExternalService{{
		Host: "api.example.com", Ports: []discovery.Port{{Port: 443}}, Resolution: discovery.ResolveStrictDNS,
		Endpoints: []discovery.ExternalEndpoint{{Address: "api.example.test"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	views := &lockedViews{}
	p := New(Config{Views: views, Resolve: &resolve.Options{Lookup: dns.Resolver(), Timeout: time.Second}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()

	p.Publish(cs)
	if views.last() == nil {
		t.Fatal("the ClusterSet waited for DNS")
	}
	testkit.Eventually(t, 10*time.Second, "the resolved address reaches the views", func() error {
		e, _ := views.last().ExternalService("api.example.com")
		if got := e.Resolved["api.example.test"]; !slices.Equal(got, []string{"192.0.2.9"}) {
			return fmt.Errorf("resolved %v", got)
		}
		return nil
	})
}
