package server

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
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
		ts := &typeState{typeURL: xds.TypeURLs[1], entries: map[string]*entry{}, seq: typeStates.Add(1)}
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

// TestQuietReconnectKeepsState: a SotW client that reconnects presenting
// the current state gets no push, and holds that state from then on: its
// next request, dropping a name, is owed nothing, as on a stream that was
// sent a response. (Found by the model-based test: the go-control-plane
// engine answered it in full, as a first request.)
func TestQuietReconnectKeepsState(t *testing.T) {
	h := newHarness(t)
	n := node("a", "east-1")
	both := []string{echoSet, emptySet}
	c := xdstest.NewSotW(t, h.conn)
	c.Send(&discoverypb.DiscoveryRequest{Node: n, TypeUrl: resourcev3.EndpointType, ResourceNames: both})
	r := c.Expect()
	c.ACK(r, both...)
	c.Send(&discoverypb.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: both[:1], VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()})
	c.ExpectNone() // dropping a name needs no answer
	c.Close()

	c2 := xdstest.NewSotW(t, h.conn)
	c2.Send(&discoverypb.DiscoveryRequest{Node: n, TypeUrl: resourcev3.EndpointType, ResourceNames: both, VersionInfo: r.GetVersionInfo()})
	c2.ExpectNone() // it holds the current state
	c2.Send(&discoverypb.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: both[:1], VersionInfo: r.GetVersionInfo()})
	c2.ExpectNone() // as on the first stream
	// It is still followed: a change to echo reaches it.
	if err := h.srv.Apply(h.clusterSet([]string{"{address: 10.0.1.2}", "{address: 10.0.1.9}"})); err != nil {
		t.Fatal(err)
	}
	if got := responseNames(t, c2.Expect()); !slices.Equal(got, []string{echoSet}) {
		t.Fatalf("after the change: %v, want %s", got, echoSet)
	}
}

// TestSplitKeepsPushOrder: when the byte budget splits an incremental
// stream's new clusters over several responses, the route that references
// them waits until all have been sent: ADS sends clusters before what
// references them ("CDS updates ... must always be pushed first",
// https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#eventual-consistency-considerations),
// or Envoy routes to a cluster it does not have (503 NC). (Found by the
// model-based test on the go-control-plane engine.)
func TestSplitKeepsPushOrder(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.MaxResponseBytes = 300 }) // about one cluster per response
	d := xdstest.NewDelta(t, h.conn)
	clusters := map[string]bool{}
	recv := func() *discoverypb.DeltaDiscoveryResponse {
		t.Helper()
		r := d.Expect()
		if r.GetTypeUrl() == resourcev3.ClusterType {
			for _, res := range r.GetResources() {
				clusters[res.GetName()] = true
			}
		}
		d.ACK(r)
		return r
	}
	// checkRoute fails the test if a route of r references a cluster the
	// client has not been sent.
	checkRoute := func(r *discoverypb.DeltaDiscoveryResponse) {
		t.Helper()
		for _, res := range r.GetResources() {
			var rc route.RouteConfiguration
			if err := res.GetResource().UnmarshalTo(&rc); err != nil {
				t.Fatal(err)
			}
			for _, vh := range rc.GetVirtualHosts() {
				for _, rt := range vh.GetRoutes() {
					if c := rt.GetRoute().GetCluster(); c != "" && !clusters[c] {
						t.Errorf("route %s references cluster %s before the client was sent it", res.GetName(), c)
					}
				}
			}
		}
	}
	d.Send(&discoverypb.DeltaDiscoveryRequest{Node: node("s", "east-1"), TypeUrl: resourcev3.ClusterType})
	recv()
	d.Send(&discoverypb.DeltaDiscoveryRequest{TypeUrl: resourcev3.RouteType, ResourceNamesSubscribe: []string{"7070"}})
	for {
		if r := recv(); r.GetTypeUrl() == resourcev3.RouteType {
			checkRoute(r)
			break
		}
	}
	d.ExpectNone()

	// Two new services on port 7070: two new clusters, and route 7070 now
	// has a virtual host for each.
	more := "name: empty\n        namespace: demo\n        exported: true\n        ports: [{name: grpc, port: 7070, appProtocol: grpc}]\n"
	for _, s := range []string{"more1", "more2"} {
		more += "      - name: " + s + "\n        namespace: demo\n        exported: true\n        ports: [{name: grpc, port: 7070, appProtocol: grpc}]\n        endpoints: [{address: 10.0.3.1}]\n"
	}
	if err := h.srv.Apply(h.clusterSet([]string{"name: empty\n        namespace: demo\n        exported: true\n        ports: [{name: grpc, port: 7070, appProtocol: grpc}]\n", more})); err != nil {
		t.Fatal(err)
	}
	routes := 0
	for routes == 0 {
		r := recv()
		if r.GetTypeUrl() != resourcev3.RouteType {
			continue
		}
		routes++
		checkRoute(r)
	}
	for _, want := range []string{"more1", "more2"} {
		found := false
		for c := range clusters {
			found = found || strings.Contains(c, want)
		}
		if !found {
			t.Errorf("no cluster of %s was sent", want)
		}
	}
}
