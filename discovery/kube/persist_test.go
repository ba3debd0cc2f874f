package kube

import (
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/horizonmesh/horizon/discovery"
)

// countingStore records every Save; err, when set, is what Save returns.
type countingStore struct {
	mu    sync.Mutex
	saves []*MemberState
	err   error
}

func (c *countingStore) Load(string) (*MemberState, error) { return nil, nil }

func (c *countingStore) Save(s *MemberState) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	c.saves = append(c.saves, s)
	return nil
}

// TestPersisterPacing: a member is saved when its content changes, not when
// another member's does, and again after refresh while unchanged (its save
// time moving on); a replica that does not write counts no failure and
// writes once it does.
func TestPersisterPacing(t *testing.T) {
	store := &countingStore{}
	m := NewMetrics(prometheus.NewRegistry())
	p := &persister{store: store, log: slog.New(slog.DiscardHandler), metrics: m, trustDomain: "example.org",
		debounce: time.Second, refresh: time.Minute, saved: map[string]savedState{}}
	set := func(eastEndpoints, westEndpoints int) *discovery.ClusterSet {
		cs, err := discovery.New([]discovery.Cluster{testState("east", eastEndpoints).Cluster, testState("west", westEndpoints).Cluster})
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	live := []liveMember{{name: "east", id: "east", server: "https://east:6443"}, {name: "west", id: "west", server: "https://west:6443"}}
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	step := func(cs *discovery.ClusterSet, at time.Duration, want ...string) {
		t.Helper()
		store.mu.Lock()
		store.saves = nil
		store.mu.Unlock()
		p.put(&stateOffer{cs: cs, live: live, at: t0.Add(at)})
		p.flush()
		var got []string
		for _, s := range store.saves {
			got = append(got, s.Member)
			if !s.Saved.Equal(t0.Add(at)) || s.TrustDomain != "example.org" || s.Server != "https://"+s.Member+":6443" {
				t.Errorf("saved %+v", s)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("at %v saved %v, want %v", at, got, want)
		}
	}
	cs := set(1, 1)
	step(cs, 0, "east", "west")
	step(cs, time.Second)                   // nothing changed
	step(set(2, 1), 2*time.Second, "east")  // east changed; west's content is the same
	step(set(2, 1), 3*time.Second)          // a new ClusterSet, equal content
	step(set(2, 1), 61*time.Second, "west") // west's refresh is due (saved at 0s), not east's (2s)
	step(set(2, 1), 62*time.Second, "east")
	store.err = ErrNotWriter
	step(set(3, 3), 70*time.Second)
	if n := testutil.ToFloat64(m.saveErrs.WithLabelValues("east")); n != 0 {
		t.Fatalf("not writing counted as %v failures", n)
	}
	store.err = nil
	step(set(3, 3), 71*time.Second)                  // the same content as when not writing: paced by refresh
	step(set(3, 3), 131*time.Second, "east", "west") // refresh
	store.err = errors.New("disk full")
	step(set(4, 4), 132*time.Second)
	if n := testutil.ToFloat64(m.saveErrs.WithLabelValues("east")); n != 1 {
		t.Fatalf("save_errors_total{east} = %v, want 1", n)
	}
}
