package server

import (
	"testing"

	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"go.uber.org/goleak"

	"github.com/horizonmesh/horizon/internal/testkit/xdstest"
	"github.com/horizonmesh/horizon/xds"
)

// The minimal sequences of the defects modelKnownDefects tolerates. Each
// fails on the current engine (go-control-plane's pkg/server with
// Horizon's cache) and is skipped until the engine that fixes it is merged.

// TestModelDefectSotwQuietReconnect: a SotW client reconnects presenting
// the current state and rightly gets no push; its next request of that
// type drops one of its names. Nothing is owed (the client holds the
// current state of what it still covers; on a stream that was sent a
// response the same request gets nothing), yet the current engine answers
// it in full, as a first request: after a quiet reconnect
// it does not record that the client holds the state (go-control-plane
// sets a subscription's returned resources only when it sends a response,
// and Horizon's cache treats any request without a nonce as a first one).
// The model found it at seed 2 (TestModel, 60 steps, split).
func TestModelDefectSotwQuietReconnect(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	cs := modelClusterSet(t)
	_, conn := newModelServer(t, cs, Options{})
	n := xdstest.Node("p", xds.MetaClusterID, "n1-c0", xds.MetaRole, "proxyless")
	names := []string{"outbound_.80_._.svc-0.ns-0.svc.clusterset.local", "outbound_.80_._.svc-1.ns-0.svc.clusterset.local"}
	c := xdstest.NewSotW(t, conn)
	c.Send(&discoverypb.DiscoveryRequest{Node: n, TypeUrl: resourcev3.ClusterType, ResourceNames: names})
	r := c.Expect()
	if len(r.GetResources()) != 2 {
		t.Fatalf("got %d clusters, want 2", len(r.GetResources()))
	}
	c.ACK(r, names...)
	// Dropping a name needs no answer.
	c.Send(&discoverypb.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResourceNames: names[:1], VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()})
	c.ExpectNone()
	c.Close()

	c2 := xdstest.NewSotW(t, conn)
	c2.Send(&discoverypb.DiscoveryRequest{Node: n, TypeUrl: resourcev3.ClusterType, ResourceNames: names, VersionInfo: r.GetVersionInfo()})
	c2.ExpectNone() // it holds the current state
	c2.Send(&discoverypb.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResourceNames: names[:1], VersionInfo: r.GetVersionInfo()})
	c2.ExpectNone() // the same request as on the first stream
}

// TestModelDefectSplitOrder: with MaxResponseBytes splitting a delta
// stream's clusters over several responses, a route referencing a new
// cluster is sent before the response that carries the cluster. ADS must
// send clusters before what references them ("CDS updates ... must always
// be pushed first ... LDS updates must arrive after corresponding CDS/EDS
// updates", https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#eventual-consistency-considerations);
// Envoy otherwise routes to a cluster it does not have (503 NC) until the
// cluster arrives. The model found it at seed 4 (TestModel, 60 steps).
func TestModelDefectSplitOrder(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	cs := modelClusterSet(t)
	srv, conn := newModelServer(t, cs, Options{MaxResponseBytes: 700}) // about one cluster per response
	d := xdstest.NewDelta(t, conn)
	n := xdstest.Node("s", xds.MetaClusterID, "n0-c0", xds.MetaRole, "sidecar")
	clusters := map[string]bool{}
	// recv answers every response and returns it, keeping the clusters held.
	recv := func() *discoverypb.DeltaDiscoveryResponse {
		r := d.Expect()
		if r.GetTypeUrl() == resourcev3.ClusterType {
			for _, res := range r.GetResources() {
				clusters[res.GetName()] = true
			}
		}
		d.ACK(r)
		return r
	}
	d.Send(&discoverypb.DeltaDiscoveryRequest{Node: n, TypeUrl: resourcev3.ClusterType})
	for len(clusters) < 14 { // 3 services × 2 ports × 2 scopes, passthrough and blackhole
		recv()
	}
	d.Send(&discoverypb.DeltaDiscoveryRequest{TypeUrl: resourcev3.RouteType, ResourceNamesSubscribe: []string{"80"}})
	if r := recv(); r.GetTypeUrl() != resourcev3.RouteType {
		t.Fatalf("got %s, want the route", r.GetTypeUrl())
	}
	d.ExpectNone()

	// A new service: two new clusters (one response each), and route 80
	// now sends to them.
	if err := srv.Apply(withService(t, cs, "new", 1)); err != nil {
		t.Fatal(err)
	}
	for range 3 { // two cluster responses and the route, in the order sent
		r := recv()
		if r.GetTypeUrl() != resourcev3.RouteType {
			continue
		}
		for _, res := range r.GetResources() {
			msg := newMessage(resourcev3.RouteType)
			if err := res.GetResource().UnmarshalTo(msg); err != nil {
				t.Fatal(err)
			}
			for _, ref := range clusterRefs(msg.ProtoReflect()) {
				if !clusters[ref] {
					t.Errorf("route %s references cluster %s before the client was sent it", res.GetName(), ref)
				}
			}
		}
	}
}
