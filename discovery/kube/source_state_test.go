package kube

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/client-go/rest"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
	"github.com/horizonmesh/horizon/internal/testkit"
)

// downMember is a member whose API server only answers 503: it never syncs.
func downMember(t *testing.T, name string) MemberConfig {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
	}))
	t.Cleanup(api.Close)
	return MemberConfig{Name: name, Network: "net-" + name, Rest: &rest.Config{Host: api.URL}}
}

// startSource runs a Source with a store over members until the test ends.
func startSource(t *testing.T, o SourceOptions, members ...MemberConfig) (*Source, *recorder) {
	t.Helper()
	rec := &recorder{}
	o.OnUpdate = rec.update
	src := NewSource(o)
	for _, m := range members {
		if err := src.Set(m); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- src.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return src, rec
}

func memberState(t *testing.T, src *Source, name string) MemberStatus {
	t.Helper()
	for _, m := range src.Members() {
		if m.Name == name {
			return m
		}
	}
	t.Fatalf("no member %s in %+v", name, src.Members())
	return MemberStatus{}
}

// TestSourcePersistedStateUnreachableMember: a member that never syncs is
// served from its persisted state after SyncWait, marked stale since the
// save time, with --stale-ttl counted from it; a foreign or corrupt state is
// refused, counted, and the member waits (nothing is published).
func TestSourcePersistedStateUnreachableMember(t *testing.T) {
	echo := discovery.ServiceKey{Namespace: "demo", Name: "echo"}
	saved := func(t *testing.T, m MemberConfig, age time.Duration) *FileStore {
		fs := &FileStore{Dir: t.TempDir()}
		s := testState(m.Name, 3)
		s.Server, s.Saved = m.Rest.Host, time.Now().Add(-age)
		if err := fs.Save(s); err != nil {
			t.Fatal(err)
		}
		return fs
	}
	const syncWait = 500 * time.Millisecond

	t.Run("served stale after the wait", func(t *testing.T) {
		west := downMember(t, "west")
		m := NewMetrics(prometheus.NewRegistry())
		start := time.Now()
		src, rec := startSource(t, SourceOptions{State: saved(t, west, time.Minute), TrustDomain: "example.org", SyncWait: syncWait, Metrics: m, StaleTTL: time.Hour}, west)
		testkit.Eventually(t, wait, "west served from its persisted state", func() bool { return endpointsOf(rec.latest(), "west", echo) == 3 })
		if d := time.Since(start); d < syncWait {
			t.Fatalf("published after %v, before the sync wait %v", d, syncWait)
		}
		c, _ := rec.latest().Cluster("west")
		if !c.Stale {
			t.Fatal("a persisted member not marked stale")
		}
		st := memberState(t, src, "west")
		if st.State != Persisted || time.Since(st.PersistedAt) < time.Minute || !st.StaleSince.Equal(st.PersistedAt) {
			t.Fatalf("member status %+v", st)
		}
		if testutil.ToFloat64(m.state.WithLabelValues("west", "persisted")) != 1 || testutil.ToFloat64(m.stale.WithLabelValues("west")) < 60 {
			t.Fatal("state{persisted} or stale_seconds not set from the save time")
		}
		if !src.Ready() {
			t.Fatal("not ready with every member served")
		}
	})

	t.Run("expired by the TTL from the save time", func(t *testing.T) {
		west := downMember(t, "west")
		m := NewMetrics(prometheus.NewRegistry())
		_, rec := startSource(t, SourceOptions{State: saved(t, west, time.Hour), TrustDomain: "example.org", SyncWait: syncWait, Metrics: m, StaleTTL: 30 * time.Minute}, west)
		testkit.Eventually(t, wait, "west a member without endpoints", func() bool { return endpointsOf(rec.latest(), "west", echo) == 0 })
		if testutil.ToFloat64(m.expiredC.WithLabelValues("west")) == 0 {
			t.Fatal("expiry not counted")
		}
	})

	t.Run("a store that does not answer is asked again", func(t *testing.T) {
		west := downMember(t, "west")
		m := NewMetrics(prometheus.NewRegistry())
		store := &flakyStore{StateStore: saved(t, west, time.Minute), fails: 2}
		_, rec := startSource(t, SourceOptions{State: store, TrustDomain: "example.org", SyncWait: syncWait, Metrics: m}, west)
		testkit.Eventually(t, wait, "west served once the store answers", func() bool { return endpointsOf(rec.latest(), "west", echo) == 3 })
		if n := testutil.ToFloat64(m.loadErrs.WithLabelValues(StateIO)); n != 2 {
			t.Fatalf("load_errors_total{io} = %v, want 2", n)
		}
	})

	for _, tc := range []struct {
		name, reason string
		spoil        func(t *testing.T, fs *FileStore)
		td           string
	}{
		{"foreign trust domain", StateForeign, func(*testing.T, *FileStore) {}, "other.org"},
		{"corrupt file", StateCorrupt, func(t *testing.T, fs *FileStore) {
			if err := os.WriteFile(fs.Path("west"), []byte(`{"format":"horizon.member-state/v1","member":`), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "example.org"},
		{"no state", "", func(t *testing.T, fs *FileStore) {
			if err := os.Remove(fs.Path("west")); err != nil {
				t.Fatal(err)
			}
		}, "example.org"},
	} {
		t.Run(tc.name+" waits", func(t *testing.T) {
			west := downMember(t, "west")
			fs := saved(t, west, time.Minute)
			tc.spoil(t, fs)
			m := NewMetrics(prometheus.NewRegistry())
			src, rec := startSource(t, SourceOptions{State: fs, TrustDomain: tc.td, SyncWait: syncWait, Metrics: m}, west)
			time.Sleep(syncWait + 2*time.Second) // the wait, and a publish tick past it
			if rec.latest() != nil || src.Ready() {
				t.Fatal("published without west")
			}
			if tc.reason != "" && testutil.ToFloat64(m.loadErrs.WithLabelValues(tc.reason)) != 1 {
				t.Fatalf("load_errors_total{%s} not 1", tc.reason)
			}
			if st := memberState(t, src, "west"); st.State != Syncing {
				t.Fatalf("member status %+v, want syncing", st)
			}
		})
	}
}

// TestSourcePersistedStateRestart: a Source persists its live members; a
// second one, started while a member's API server is down, serves that
// member's persisted state (stale) and never publishes without it; when the
// API server returns, the live state replaces the persisted one.
func TestSourcePersistedStateRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two kube-apiservers")
	}
	cl := kubetest.Start(t, "east", "west")
	east, west := cl[0], cl[1]
	echo := discovery.ServiceKey{Namespace: "demo", Name: "echo"}
	seed(t, east, "demo", "echo", true, "10.0.1.1", "10.0.1.2")
	seed(t, west, "demo", "echo", true, "10.1.1.1")
	members := []MemberConfig{memberConfig(east, "net-east"), memberConfig(west, "net-west")}
	store := &FileStore{Dir: t.TempDir()}
	opts := SourceOptions{State: store, TrustDomain: "example.org", SyncWait: 2 * time.Second, StateDebounce: 100 * time.Millisecond}

	// The first Source saves both members.
	first := opts
	first.Metrics = NewMetrics(prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	src := NewSource(first)
	rec := &recorder{}
	src.onUpdate = rec.update
	for _, m := range members {
		if err := src.Set(m); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error)
	go func() { done <- src.Run(ctx) }()
	testkit.Eventually(t, wait, "both members saved", func() bool {
		e, err1 := store.Load("east")
		w, err2 := store.Load("west")
		return err1 == nil && err2 == nil && e != nil && w != nil && len(w.Cluster.Services) > 0
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// West's state holds echo with its one endpoint (and, once its API
	// server made it, default/kubernetes: a member's state is all of it).
	ws, _ := store.Load("west")
	if i := slices.IndexFunc(ws.Cluster.Services, func(svc discovery.Service) bool { return svc.Key() == echo }); i < 0 || len(ws.Cluster.Services[i].Endpoints) != 1 {
		t.Fatalf("west saved with %+v", ws.Cluster.Services)
	}

	// West gains an endpoint the persisted state lacks, then goes down.
	seed(t, west, "demo", "more", true, "10.1.2.1")
	if err := west.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(prometheus.NewRegistry())
	second := opts
	second.Metrics = m
	start := time.Now()
	src2, rec2 := startSource(t, second, members...)
	testkit.Eventually(t, wait, "west served from its persisted state", func() bool { return endpointsOf(rec2.latest(), "west", echo) == 1 })
	if d := time.Since(start); d < opts.SyncWait {
		t.Fatalf("west served from its persisted state after %v, before the sync wait", d)
	}
	if c, _ := rec2.latest().Cluster("west"); !c.Stale {
		t.Fatal("persisted west not stale")
	}
	if c, _ := rec2.latest().Cluster("east"); c.Stale || endpointsOf(rec2.latest(), "east", echo) != 2 {
		t.Fatal("east not live")
	}
	if st := memberState(t, src2, "west"); st.State != Persisted {
		t.Fatalf("west %+v, want persisted", st)
	}
	if err := west.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	more := discovery.ServiceKey{Namespace: "demo", Name: "more"}
	testkit.Eventually(t, 3*wait, "west's live state replaces the persisted one", func() bool {
		c, ok := rec2.latest().Cluster("west")
		return ok && !c.Stale && endpointsOf(rec2.latest(), "west", more) == 1
	})
	if st := memberState(t, src2, "west"); st.State != Synced || !st.PersistedAt.IsZero() {
		t.Fatalf("west %+v, want synced", st)
	}
	for i, cs := range rec2.since(0) {
		if endpointsOf(cs, "west", echo) != 1 || endpointsOf(cs, "east", echo) != 2 {
			t.Fatalf("ClusterSet %d lacks a member's endpoints: west %d east %d", i, endpointsOf(cs, "west", echo), endpointsOf(cs, "east", echo))
		}
	}
	// Counted by name: the saved state may hold default/kubernetes too,
	// whenever west's API server has made it.
	testkit.Eventually(t, wait, "west's new state saved", func() error {
		s, err := store.Load("west")
		if err == nil && slices.ContainsFunc(s.Cluster.Services, func(svc discovery.Service) bool { return svc.Key() == more }) {
			return nil
		}
		// What a failure needs to be understood: the store's answer and
		// what the Source thinks of west.
		st := memberState(t, src2, "west")
		if err != nil {
			return fmt.Errorf("load: %v; west %+v", err, st)
		}
		var names []string
		for _, svc := range s.Cluster.Services {
			names = append(names, svc.Key().String())
		}
		return fmt.Errorf("saved at %v with services %v, not %s; west %+v", s.Saved, names, more, st)
	})
}

// flakyStore fails its first loads as an unreachable store would.
type flakyStore struct {
	StateStore
	mu    sync.Mutex
	fails int
}

func (f *flakyStore) Load(member string) (*MemberState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fails > 0 {
		f.fails--
		return nil, &StateError{Origin: "test store", Reason: StateIO, Err: errors.New("connection refused")}
	}
	return f.StateStore.Load(member)
}
