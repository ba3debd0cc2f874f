package workload

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/file"
)

var (
	vms   = discovery.ServiceKey{Namespace: "shop", Name: "ratings-vms"}
	batch = discovery.ServiceKey{Namespace: "jobs", Name: "batch"}
)

// fixture is a registry over testdata/clusterset.yaml with a manual clock,
// recording every ClusterSet it hands on.
type fixture struct {
	t   *testing.T
	reg *Registry
	m   *Metrics
	pr  *prometheus.Registry

	mu  sync.Mutex
	now time.Time
	out []*discovery.ClusterSet
}

func newFixture(t *testing.T, limits Limits) *fixture {
	t.Helper()
	f := &fixture{t: t, now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), pr: prometheus.NewRegistry()}
	f.m = NewMetrics(f.pr)
	f.reg = New(Options{Limits: limits, Metrics: f.m, ReportInterval: 2 * time.Second, Now: f.clock, Out: func(cs *discovery.ClusterSet) {
		f.mu.Lock()
		f.out = append(f.out, cs)
		f.mu.Unlock()
	}})
	cs, err := file.Load("testdata/clusterset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f.reg.In(cs)
	return f
}

func (f *fixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

func (f *fixture) last() *discovery.ClusterSet {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.out[len(f.out)-1]
}

func (f *fixture) published() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.out)
}

// endpoints renders a service's endpoints in a cluster of the last
// ClusterSet as "address ready|not-ready", in order.
func (f *fixture) endpoints(cluster string, svc discovery.ServiceKey) []string {
	f.t.Helper()
	c, ok := f.last().Cluster(cluster)
	if !ok {
		f.t.Fatalf("no cluster %s", cluster)
	}
	s, ok := c.Service(svc)
	if !ok {
		return nil
	}
	var out []string
	for _, e := range s.Endpoints {
		r := "not-ready"
		if e.Ready {
			r = "ready"
		}
		out = append(out, e.Address+" "+r)
	}
	return out
}

func want[T comparable](t *testing.T, what string, got, want []T) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s:\n got %v\nwant %v", what, got, want)
	}
}

func reasonOf(err error) string {
	var r *Refusal
	if errors.As(err, &r) {
		return r.Reason
	}
	return ""
}

var ratings = discovery.ServiceKey{Namespace: "shop", Name: "ratings"}

// TestLifecycle: a joined instance of a group with a probe is an endpoint,
// not ready until a healthy report, ready after one, not ready after an
// unhealthy one or when reports stop (StaleAfter), and gone after the
// grace period; the gauges follow.
func TestLifecycle(t *testing.T) {
	f := newFixture(t, Limits{})
	want(t, "before", f.endpoints("vm-west", ratings), nil)
	if _, err := f.reg.Join(vms, "10.2.0.5", map[string]string{"host": "vm-5"}, nil); err != nil {
		t.Fatal(err)
	}
	want(t, "joined", f.endpoints("vm-west", ratings), []string{"10.2.0.5 not-ready"})
	e := f.last().Clusters[1].Services[0].Endpoints[0]
	if e.ServiceAccount != "ratings" || !e.MTLS || e.Labels["host"] != "vm-5" || e.Workload != discovery.WorkloadSource(vms, true) {
		t.Errorf("endpoint = %+v", e)
	}
	gauge := func(group, health string) float64 {
		return testutil.ToFloat64(f.m.instances.WithLabelValues(group, health))
	}
	f.advance(f.reg.MinReportGap())
	if _, err := f.reg.Report(vms, "10.2.0.5", true, nil); err != nil {
		t.Fatal(err)
	}
	want(t, "healthy", f.endpoints("vm-west", ratings), []string{"10.2.0.5 ready"})
	if gauge("shop/ratings-vms", "ready") != 1 || gauge("shop/ratings-vms", "not_ready") != 0 {
		t.Errorf("gauges ready %v not_ready %v", gauge("shop/ratings-vms", "ready"), gauge("shop/ratings-vms", "not_ready"))
	}
	// The exported service gains the VM network's cluster.
	exp, _ := f.last().Export(ratings)
	want(t, "exporters", exp.Clusters, []string{"east-1", "vm-west"})

	n := f.published()
	f.advance(f.reg.MinReportGap())
	f.reg.Report(vms, "10.2.0.5", true, nil)
	if f.published() != n {
		t.Error("a report that changes nothing published a ClusterSet")
	}
	f.advance(f.reg.MinReportGap())
	f.reg.Report(vms, "10.2.0.5", false, nil)
	want(t, "unhealthy", f.endpoints("vm-west", ratings), []string{"10.2.0.5 not-ready"})
	f.advance(f.reg.MinReportGap())
	f.reg.Report(vms, "10.2.0.5", true, nil)
	want(t, "healthy again", f.endpoints("vm-west", ratings), []string{"10.2.0.5 ready"})

	// The agent goes away: not ready after StaleAfter, gone after grace.
	f.advance(f.reg.StaleAfter())
	f.reg.Sweep()
	want(t, "at StaleAfter", f.endpoints("vm-west", ratings), []string{"10.2.0.5 ready"})
	f.advance(time.Second)
	f.reg.Sweep()
	want(t, "past StaleAfter", f.endpoints("vm-west", ratings), []string{"10.2.0.5 not-ready"})
	f.advance(30*time.Second - f.reg.StaleAfter())
	f.reg.Sweep()
	want(t, "past grace", f.endpoints("vm-west", ratings), nil)
	if got := testutil.ToFloat64(f.m.removals.WithLabelValues("grace period passed")); got != 1 {
		t.Errorf("removals = %v", got)
	}
	if gauge("shop/ratings-vms", "ready")+gauge("shop/ratings-vms", "not_ready") != 0 {
		t.Error("gauges still count the removed instance")
	}
	if _, err := f.reg.Report(vms, "10.2.0.5", true, nil); reasonOf(err) != ReasonNotRegistered {
		t.Errorf("report after removal: %v, want %s", err, ReasonNotRegistered)
	}
}

// TestNoProbeReadyOnJoin: without a probe an instance is ready while its
// agent reports.
func TestNoProbeReadyOnJoin(t *testing.T) {
	f := newFixture(t, Limits{})
	if _, err := f.reg.Join(batch, "10.0.0.9", nil, nil); err != nil {
		t.Fatal(err)
	}
	want(t, "joined", f.endpoints("east-1", discovery.ServiceKey{Namespace: "jobs", Name: "batch"}), []string{"10.0.0.9 ready"})
}

// TestRefusals: every bad join or report is refused with its reason and
// counted, and publishes nothing.
func TestRefusals(t *testing.T) {
	f := newFixture(t, Limits{PerGroup: 2, Total: 3, MaxLabels: 2})
	for _, a := range []string{"10.2.0.1", "10.2.0.2"} {
		if _, err := f.reg.Join(vms, a, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.reg.Join(batch, "10.0.0.30", nil, nil); err != nil {
		t.Fatal(err)
	}
	before, n := f.last().Version(), f.published()
	errDenied := errors.New("denied by authorize")
	cases := []struct {
		name  string
		call  func() error
		want  string
		count bool
	}{
		{"unknown group", func() error {
			_, err := f.reg.Join(discovery.ServiceKey{Namespace: "shop", Name: "nope"}, "10.2.0.9", nil, nil)
			return err
		}, ReasonUnknownGroup, true},
		{"bad address", func() error { _, err := f.reg.Join(vms, "vm-5.example.com", nil, nil); return err }, ReasonBadAddress, true},
		{"unspecified address", func() error { _, err := f.reg.Join(vms, "0.0.0.0", nil, nil); return err }, ReasonBadAddress, true},
		{"another group's address", func() error { _, err := f.reg.Join(batch, "10.2.0.1", nil, nil); return err }, ReasonAddressTaken, true},
		{"group full", func() error { _, err := f.reg.Join(vms, "10.2.0.3", nil, nil); return err }, ReasonGroupFull, true},
		{"too many labels", func() error {
			_, err := f.reg.Join(batch, "10.0.0.31", map[string]string{"a": "1", "b": "2", "c": "3"}, nil)
			return err
		}, ReasonTooManyLabels, true},
		{"registry full", func() error { _, err := f.reg.Join(batch, "10.0.0.31", nil, nil); return err }, ReasonRegistryFull, true},
		{"report not registered", func() error { _, err := f.reg.Report(vms, "10.2.0.7", true, nil); return err }, ReasonNotRegistered, true},
		{"report right after the join", func() error { _, err := f.reg.Report(vms, "10.2.0.1", true, nil); return err }, ReasonRateLimited, true},
		{"report denied", func() error {
			_, err := f.reg.Report(vms, "10.2.0.1", true, func(discovery.WorkloadGroup) error { return errDenied })
			if !errors.Is(err, errDenied) {
				return fmt.Errorf("want the authorizer's error, got %v", err)
			}
			return nil
		}, "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := testutil.ToFloat64(f.m.refusals.WithLabelValues(c.want))
			err := c.call()
			if c.want == "" {
				if err != nil {
					t.Error(err)
				}
				return
			}
			if reasonOf(err) != c.want {
				t.Fatalf("err = %v, want reason %s", err, c.want)
			}
			if c.count && testutil.ToFloat64(f.m.refusals.WithLabelValues(c.want)) != before+1 {
				t.Errorf("refusal %s not counted", c.want)
			}
		})
	}
	if f.last().Version() != before || f.published() != n {
		t.Errorf("refused calls changed the ClusterSet (%d publications, want %d)", f.published(), n)
	}
}

// TestAddressOfAPod: an instance may not take the address of an endpoint
// its service already has in its cluster.
func TestAddressOfAPod(t *testing.T) {
	cs, err := file.Parse("t.yaml", []byte(strings.Replace(string(mustRead(t, "testdata/clusterset.yaml")), "cluster: east-1\n    ports: [{port: 9000}]", "cluster: east-1\n    ports: [{port: 9000}]\n    instances: [{address: 10.0.0.40}]", 1)))
	if err != nil {
		t.Fatal(err)
	}
	r := New(Options{})
	r.In(cs)
	if _, err := r.Join(batch, "10.0.0.40", nil, nil); reasonOf(err) != ReasonAddressTaken {
		t.Errorf("err = %v, want %s", err, ReasonAddressTaken)
	}
}

// TestJoinFlood: joins beyond the rate are refused as rate_limited and
// counted; those admitted are registered and nothing else changes.
func TestJoinFlood(t *testing.T) {
	f := newFixture(t, Limits{JoinsPerSecond: 1, JoinBurst: 5, PerGroup: 1000})
	ok, limited := 0, 0
	for i := range 50 {
		_, err := f.reg.Join(vms, fmt.Sprintf("10.2.1.%d", i+1), nil, nil)
		switch reasonOf(err) {
		case "":
			if err != nil {
				t.Fatal(err)
			}
			ok++
		case ReasonRateLimited:
			limited++
		default:
			t.Fatal(err)
		}
	}
	// The token bucket runs on the registry's clock, which stands still.
	if ok != 5 || limited != 45 {
		t.Errorf("%d joins admitted, %d rate-limited; want the burst of 5", ok, limited)
	}
	if got := testutil.ToFloat64(f.m.refusals.WithLabelValues(ReasonRateLimited)); int(got) != limited {
		t.Errorf("rate_limited counted %v, want %d", got, limited)
	}
	if got := len(f.endpoints("vm-west", ratings)); got != ok {
		t.Errorf("%d endpoints, want %d", got, ok)
	}
	// A second later one more token is there.
	f.advance(time.Second)
	if _, err := f.reg.Join(vms, "10.2.2.1", nil, nil); err != nil {
		t.Errorf("a join a second after the flood: %v", err)
	}
	// Another group's services are untouched.
	want(t, "east-1 ratings", f.endpoints("east-1", ratings), []string{"10.0.0.2 ready"})
}

// TestGroupGone: instances of a group that leaves the ClusterSet are
// removed at the next sweep.
func TestGroupGone(t *testing.T) {
	f := newFixture(t, Limits{})
	if _, err := f.reg.Join(batch, "10.0.0.9", nil, nil); err != nil {
		t.Fatal(err)
	}
	data := string(mustRead(t, "testdata/clusterset.yaml"))
	cs, err := file.Parse("t.yaml", []byte(data[:strings.Index(data, "  - name: batch")]))
	if err != nil {
		t.Fatal(err)
	}
	f.reg.In(cs)
	f.reg.Sweep()
	if got := f.reg.Instances(); len(got) != 0 {
		t.Errorf("instances = %+v", got)
	}
	if got := testutil.ToFloat64(f.m.removals.WithLabelValues("group gone")); got != 1 {
		t.Errorf("removals = %v", got)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestCRDGroups: groups from WorkloadGroup objects are merged like the
// file's, and agents may join them.
func TestCRDGroups(t *testing.T) {
	f := newFixture(t, Limits{})
	crd := discovery.WorkloadGroup{Namespace: "shop", Name: "from-crd", Service: "ratings", ServiceAccount: "ratings", Cluster: "east-1", Exported: true,
		Instances: []discovery.WorkloadInstance{{Group: discovery.ServiceKey{Namespace: "shop", Name: "from-crd"}, Address: "10.0.0.60", Ready: true}}}
	f.reg.SetCRDGroups([]discovery.WorkloadGroup{crd})
	want(t, "declared by the object", f.endpoints("east-1", ratings), []string{"10.0.0.2 ready", "10.0.0.60 ready"})
	if _, err := f.reg.Join(crd.Key(), "10.0.0.61", nil, nil); err != nil {
		t.Fatal(err)
	}
	want(t, "joined", f.endpoints("east-1", ratings), []string{"10.0.0.2 ready", "10.0.0.60 ready", "10.0.0.61 ready"})
	f.reg.SetCRDGroups(nil)
	want(t, "object deleted", f.endpoints("east-1", ratings), []string{"10.0.0.2 ready"})
}

// TestReportFlood: one agent reporting as fast as it can is refused
// (rate_limited) past one report per MinReportGap, and the other agents'
// reports are still taken.
func TestReportFlood(t *testing.T) {
	f := newFixture(t, Limits{ReportsPerSecond: 10, ReportBurst: 10})
	for _, a := range []string{"10.2.0.1", "10.2.0.2"} {
		if _, err := f.reg.Join(vms, a, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	f.advance(f.reg.MinReportGap())
	taken := 0
	for range 1000 {
		if _, err := f.reg.Report(vms, "10.2.0.1", true, nil); err == nil {
			taken++
		} else if reasonOf(err) != ReasonRateLimited {
			t.Fatal(err)
		}
	}
	if taken != 1 {
		t.Errorf("%d of the flood's reports taken, want 1", taken)
	}
	if _, err := f.reg.Report(vms, "10.2.0.2", true, nil); err != nil {
		t.Errorf("the other agent's report during the flood: %v", err)
	}
	want(t, "both ready", f.endpoints("vm-west", ratings), []string{"10.2.0.1 ready", "10.2.0.2 ready"})
	if got := testutil.ToFloat64(f.m.refusals.WithLabelValues(ReasonRateLimited)); got != 999 {
		t.Errorf("rate_limited = %v, want 999", got)
	}
}
