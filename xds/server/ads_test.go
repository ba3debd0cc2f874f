package server

import (
	"fmt"
	"slices"
	"testing"

	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/horizonmesh/horizon/internal/testkit/xdstest"
	"github.com/horizonmesh/horizon/xds"
)

// TestBehindGetsLatestOnce: flow control is ACK-paced. While a
// state-of-the-world response is in flight (not yet ACKed), changes send
// nothing; the ACK brings one response with the latest state, never the
// intermediate ones.
func TestBehindGetsLatestOnce(t *testing.T) {
	h := newHarness(t)
	c := xdstest.NewSotW(t, h.conn)
	c.Send(&discoverypb.DiscoveryRequest{Node: node("a", "east-1"), TypeUrl: resourcev3.EndpointType, ResourceNames: []string{echoSet}})
	first := c.Expect()
	for i := range 3 {
		if err := h.srv.Apply(h.clusterSet([]string{"{address: 10.0.1.2}", fmt.Sprintf("{address: 10.0.1.%d}", 20+i)})); err != nil {
			t.Fatal(err)
		}
	}
	c.ExpectNone() // the first response is not ACKed yet
	c.ACK(first, echoSet)
	r := c.Expect()
	var cla endpoint.ClusterLoadAssignment
	if err := r.GetResources()[0].UnmarshalTo(&cla); err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, l := range cla.GetEndpoints() {
		for _, e := range l.GetLbEndpoints() {
			addrs = append(addrs, e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
		}
	}
	if !slices.Contains(addrs, "10.0.1.22") || slices.Contains(addrs, "10.0.1.20") || slices.Contains(addrs, "10.0.1.21") {
		t.Fatalf("after the ACK: %v, want the latest state (10.0.1.22, not .20 or .21)", addrs)
	}
	c.ACK(r, echoSet)
	c.ExpectNone()
}

// TestWakeOnlyTouched: a publish wakes the streams whose subscription its
// diff touches (a wildcard one, or one naming a changed, added or removed
// resource) and no other.
func TestWakeOnlyTouched(t *testing.T) {
	in := newInterner()
	state := func(versions ...string) *typeState {
		ts := &typeState{typeURL: xds.TypeURLs[1], entries: map[string]*entry{}}
		vs := map[string]string{}
		for i := 0; i+1 < len(versions); i += 2 {
			ts.entries[versions[i]] = &entry{name: versions[i], version: versions[i+1]}
			ts.names = append(ts.names, versions[i])
			vs[versions[i]] = versions[i+1]
		}
		ts.version = stateVersion(vs)
		return ts
	}
	prev, cur := state("a", "1", "b", "1", "c", "1"), state("a", "2", "b", "1", "d", "1")
	v := &view{types: map[string]*typeState{}, followers: map[*adsStream]struct{}{}}
	before := map[string]*typeState{}
	for _, typeURL := range xds.TypeURLs {
		same := state("z", "1") // unchanged
		v.types[typeURL], before[typeURL] = same, same
	}
	v.types[xds.TypeURLs[1]], before[xds.TypeURLs[1]] = cur, prev
	streams := map[string]*adsStream{}
	for name, sub := range map[string]*subscription{
		"wildcard":    {wildcard: true},
		"changed a":   {names: in.get([]string{"a", "x"})},
		"removed c":   {names: in.get([]string{"c"})},
		"added d":     {names: in.get([]string{"d", "b"})},
		"unchanged b": {names: in.get([]string{"b"})},
		"absent x":    {names: in.get([]string{"x", "y"})},
		"other type":  nil,
	} {
		st := &adsStream{kick: make(chan struct{}, 1)}
		if sub != nil {
			st.subs[1].Store(sub)
		} else {
			st.subs[0].Store(&subscription{wildcard: true})
		}
		streams[name] = st
		v.followers[st] = struct{}{}
	}
	c := &Cache{}
	c.wakeLocked(v, before)
	for name, st := range streams {
		woken := len(st.kick) == 1
		want := name != "unchanged b" && name != "absent x" && name != "other type"
		if woken != want {
			t.Errorf("%s: woken %v, want %v", name, woken, want)
		}
	}
}
