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
