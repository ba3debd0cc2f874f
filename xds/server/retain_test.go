package server

import (
	"fmt"
	"runtime"
	"testing"
	"weak"

	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/horizonmesh/horizon/internal/testkit/xdstest"
)

// TestOldGenerationsAreFreed: a view keeps its current state and what its
// streams hold, not every state it ever published. Each publish computes
// the diff from the previous state; the memo of that diff must not keep
// the previous state alive, or every generation would stay reachable
// through the next one's memo and a view's memory would grow with every
// change it ever saw.
func TestOldGenerationsAreFreed(t *testing.T) {
	h := newHarness(t)
	c := xdstest.NewSotW(t, h.conn)
	c.Send(&discoverypb.DiscoveryRequest{Node: node("a", "east-1"), TypeUrl: resourcev3.EndpointType, ResourceNames: []string{echoSet}})
	c.ACK(c.Expect(), echoSet)

	current := func() *typeState {
		h.srv.cache.mu.Lock()
		defer h.srv.cache.mu.Unlock()
		if len(h.srv.cache.views) != 1 {
			t.Fatalf("%d views, want 1", len(h.srv.cache.views))
		}
		for _, v := range h.srv.cache.views {
			return v.types[resourcev3.EndpointType]
		}
		return nil
	}
	first := weak.Make(current())
	const changes = 6
	for i := range changes {
		if err := h.srv.Apply(h.clusterSet([]string{"{address: 10.0.1.2}", fmt.Sprintf("{address: 10.0.1.%d}", 20+i)})); err != nil {
			t.Fatal(err)
		}
		c.ACK(c.Expect(), echoSet) // the stream follows every generation
	}
	if current() == first.Value() {
		t.Fatal("the changes published no new state")
	}
	for range 3 {
		runtime.GC()
	}
	if first.Value() != nil {
		t.Fatalf("the view's first EDS state is still reachable after %d newer ones were published and ACKed", changes)
	}
}

// TestDeltaWrappersOnlyWhenSent: an entry's wrapper for incremental
// responses is made when a delta stream is first sent it and shared after;
// a view only state-of-the-world streams follow holds none (they were
// ~144 bytes for every resource of every view).
func TestDeltaWrappersOnlyWhenSent(t *testing.T) {
	h := newHarness(t)
	c := xdstest.NewSotW(t, h.conn)
	c.Send(&discoverypb.DiscoveryRequest{Node: node("a", "east-1"), TypeUrl: resourcev3.EndpointType, ResourceNames: []string{echoSet}})
	c.ACK(c.Expect(), echoSet)
	eds := func() *entry {
		h.srv.cache.mu.Lock()
		defer h.srv.cache.mu.Unlock()
		for _, v := range h.srv.cache.views {
			return v.types[resourcev3.EndpointType].entries[echoSet]
		}
		t.Fatal("no view")
		return nil
	}
	e := eds()
	if e.delta.Load() != nil {
		t.Fatal("a view only a state-of-the-world stream follows holds a delta wrapper")
	}
	send := func() *discoverypb.Resource {
		t.Helper()
		d := xdstest.NewDelta(t, h.conn)
		d.Send(&discoverypb.DeltaDiscoveryRequest{Node: node("d", "east-1"), TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: []string{echoSet}})
		r := d.Expect()
		d.ACK(r)
		if len(r.GetResources()) != 1 || r.GetResources()[0].GetName() != echoSet {
			t.Fatalf("delta response %v, want %s", r.GetResources(), echoSet)
		}
		return e.delta.Load()
	}
	first := send()
	if first == nil || first.GetVersion() != e.version || first.GetResource() != e.any {
		t.Fatalf("after a delta stream was sent the entry: wrapper %v", first)
	}
	if again := send(); again != first {
		t.Fatal("a second delta stream made a wrapper of its own")
	}
}
