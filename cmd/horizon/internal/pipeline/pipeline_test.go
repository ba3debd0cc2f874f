package pipeline

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/policyfile"
	"github.com/horizonmesh/horizon/gateway/health"
)

// trace records what the stages are given, in order.
type trace struct {
	mu     sync.Mutex
	events []string
}

func (t *trace) add(e string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.events = append(t.events, e)
}

func (t *trace) get() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.events)
}

type fakeViews struct {
	t        *trace
	applyErr error
	got      []*discovery.ClusterSet
}

func (v *fakeViews) Update(cs *discovery.ClusterSet) {
	v.t.add("views.Update")
	v.got = append(v.got, cs)
}

func (v *fakeViews) Apply(cs *discovery.ClusterSet) error {
	v.t.add("views.Apply")
	v.got = append(v.got, cs)
	return v.applyErr
}

func (v *fakeViews) Run(ctx context.Context) error { <-ctx.Done(); return nil }

type fakePolicy struct {
	t    *trace
	topo []policyfile.Topology
}

func (p *fakePolicy) SetTopology(topo policyfile.Topology) {
	p.t.add("policy.SetTopology")
	p.topo = append(p.topo, topo)
}

func (p *fakePolicy) Run(ctx context.Context) error { <-ctx.Done(); return nil }

func clusterSet(t *testing.T) *discovery.ClusterSet {
	t.Helper()
	cs, err := discovery.New([]discovery.Cluster{
		{Name: "east-1", Network: "east", Gateways: []discovery.Gateway{{Address: "192.0.2.1", Port: 15443}}},
		{Name: "west-1", Network: "west", Gateways: []discovery.Gateway{{Address: "192.0.2.2", Port: 15443}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// A ClusterSet goes observers → policy topology → gateway health → views,
// with or without the health stage, and the views get what health passes
// on (the ClusterSet itself while no gateway has been probed down).
func TestStageOrder(t *testing.T) {
	for _, withHealth := range []bool{false, true} {
		tr := &trace{}
		views, pol := &fakeViews{t: tr}, &fakePolicy{t: tr}
		cfg := Config{Views: views, Policy: pol, Observers: []func(*discovery.ClusterSet){func(*discovery.ClusterSet) { tr.add("observer") }}}
		if withHealth {
			cfg.Health = &health.Options{Out: func(*discovery.ClusterSet) { t.Error("the caller's Out was kept: health must feed the views") }}
		}
		p := New(cfg)
		if (p.Prober() != nil) != withHealth {
			t.Fatalf("health %v: Prober() = %v", withHealth, p.Prober())
		}
		cs := clusterSet(t)
		p.Publish(cs)
		want := []string{"observer", "policy.SetTopology", "views.Update"}
		if got := tr.get(); !slices.Equal(got, want) {
			t.Errorf("health %v: stages %v, want %v", withHealth, got, want)
		}
		if len(views.got) != 1 || views.got[0].Version() != cs.Version() {
			t.Errorf("health %v: views got %d ClusterSets, want the published one", withHealth, len(views.got))
		}
		if len(pol.topo) != 1 || len(pol.topo[0].Clusters) != 2 {
			t.Errorf("health %v: policy topology %+v, want the ClusterSet's two clusters", withHealth, pol.topo)
		}
		p.Publish(nil) // a source with nothing yet: no stage runs
		if got := tr.get(); len(got) != len(want) {
			t.Errorf("health %v: Publish(nil) ran stages: %v", withHealth, got[len(want):])
		}
	}
}

// Seed renders at once (Apply) after the same first stages; a ClusterSet
// the views refuse stops there, before gateway health sees it.
func TestSeed(t *testing.T) {
	tr := &trace{}
	views := &fakeViews{t: tr}
	p := New(Config{Views: views, Policy: &fakePolicy{t: tr}, Health: &health.Options{}})
	if err := p.Seed(clusterSet(t)); err != nil {
		t.Fatal(err)
	}
	if want := []string{"policy.SetTopology", "views.Apply", "views.Update"}; !slices.Equal(tr.get(), want) {
		// The prober passes the unprobed ClusterSet on to Update; the
		// views skip an unchanged version.
		t.Errorf("stages %v, want %v", tr.get(), want)
	}

	tr = &trace{}
	views = &fakeViews{t: tr, applyErr: errors.New("bad view")}
	p = New(Config{Views: views, Health: &health.Options{}})
	if err := p.Seed(clusterSet(t)); err == nil || !strings.Contains(err.Error(), "initial ClusterSet: bad view") {
		t.Errorf("Seed = %v, want the views' error", err)
	}
	if want := []string{"views.Apply"}; !slices.Equal(tr.get(), want) {
		t.Errorf("after a refused ClusterSet: stages %v, want %v (gateway health must not see it)", tr.get(), want)
	}
}

// Run owns every part: it returns nil once ctx is done and every part has
// returned; the first failure stops the others and is returned, named.
func TestRunAndShutdown(t *testing.T) {
	defer goleak.VerifyNone(t)
	blocking := func(done *sync.WaitGroup) func(context.Context) error {
		done.Add(1)
		return func(ctx context.Context) error {
			defer done.Done()
			<-ctx.Done()
			return nil
		}
	}

	tr := &trace{}
	var done sync.WaitGroup
	p := New(Config{Views: &fakeViews{t: tr}, Policy: &fakePolicy{t: tr}, Health: &health.Options{Dial: refuse}})
	p.Add("source", blocking(&done))
	p.Add("listener", blocking(&done))
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- p.Run(ctx) }()
	p.Publish(clusterSet(t)) // the prober has gateways to probe while running
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-ran:
		if err != nil {
			t.Errorf("Run = %v after ctx is done, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after ctx was done")
	}
	done.Wait() // every added part returned before Run did (Wait would hang otherwise)

	// A failing part stops the rest.
	p = New(Config{Views: &fakeViews{t: tr}})
	var stopped sync.WaitGroup
	p.Add("healthy", blocking(&stopped))
	p.Add("source", func(context.Context) error { return errors.New("member east: forbidden") })
	err := p.Run(context.Background())
	if err == nil || err.Error() != "source: member east: forbidden" {
		t.Errorf("Run = %v, want the source's error, named", err)
	}
	stopped.Wait()

	defer func() {
		if recover() == nil {
			t.Error("Add after Run did not panic")
		}
	}()
	p.Add("late", blocking(&sync.WaitGroup{}))
}

func refuse(context.Context, string, string) (net.Conn, error) {
	return nil, errors.New("refused")
}
