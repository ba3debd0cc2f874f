package server

import (
	"testing"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/horizonmesh/horizon/discovery/policyfile"
	"github.com/horizonmesh/horizon/internal/testkit/xdstest"
	"github.com/horizonmesh/horizon/xds"
)

// labeled is a sidecar of cluster declaring workload labels (LABELS).
func labeled(t *testing.T, id, cluster string, labels map[string]any) *core.Node {
	t.Helper()
	n := node(id, cluster)
	s, err := structpb.NewStruct(labels)
	if err != nil {
		t.Fatal(err)
	}
	n.Metadata.Fields[xds.MetaLabels] = structpb.NewStructValue(s)
	return n
}

// tierPolicy ranks echo's endpoints by the proxy's tier label, then region.
const tierPolicy = `
services:
  - match: {service: demo/echo}
    locality:
      failoverPriority: [tier, region]
`

// cla decodes the one assignment of an EDS response.
func cla(t *testing.T, r *discoverypb.DiscoveryResponse) *endpoint.ClusterLoadAssignment {
	t.Helper()
	if len(r.GetResources()) != 1 {
		t.Fatalf("%d assignments, want 1", len(r.GetResources()))
	}
	var c endpoint.ClusterLoadAssignment
	if err := r.GetResources()[0].UnmarshalTo(&c); err != nil {
		t.Fatal(err)
	}
	return &c
}

// TestViewsShareByContent: proxies whose resources would be identical share
// one view (horizon_xds_views): gateways of one network whatever their
// cluster and locality, sidecars that declare a sub-zone or a ranked label
// value no endpoint has. A ClusterSet change that makes a declared value
// matter moves its proxies to a view of their own before their next
// response, so that response already ranks by it.
func TestViewsShareByContent(t *testing.T) {
	h := newHarness(t)
	cs := h.clusterSet(nil)
	pol, err := policyfile.Parse("tier.yaml", []byte(tierPolicy), policyfile.TopologyOf(cs))
	if err != nil {
		t.Fatal(err)
	}
	h.srv.SetPolicy(pol)
	if err := h.srv.Apply(cs); err != nil {
		t.Fatal(err)
	}
	views := func() int {
		t.Helper()
		return int(testutil.ToFloat64(h.metrics.views))
	}
	eds := func(c *xdstest.SotW, n *core.Node) *discoverypb.DiscoveryResponse {
		c.Send(&discoverypb.DiscoveryRequest{Node: n, TypeUrl: resourcev3.EndpointType, ResourceNames: []string{echoSet}})
		r := c.Expect()
		c.ACK(r, echoSet)
		return r
	}

	plain := xdstest.NewSotW(t, h.conn)
	eds(plain, node("plain", "east-1"))
	if got := views(); got != 1 {
		t.Fatalf("one proxy: %d views", got)
	}
	// A made-up sub-zone, a tier no endpoint has: the same view.
	subZone := xdstest.NewSotW(t, h.conn)
	sz := node("sub-zone", "east-1")
	sz.Locality = &core.Locality{Region: "us-east", Zone: "us-east-1a", SubZone: "rack-7"}
	eds(subZone, sz)
	gold := xdstest.NewSotW(t, h.conn)
	before := cla(t, eds(gold, labeled(t, "gold", "east-1", map[string]any{"tier": "gold"})))
	if got := views(); got != 1 {
		t.Errorf("a tier no endpoint carries: %d views, want 1", got)
	}

	// Gateways of east-1 in two zones: one view, the network's.
	for _, zone := range []string{"us-east-1a", "us-east-1b"} {
		gw := xdstest.NewSotW(t, h.conn)
		n := xdstest.Node("gw-"+zone, xds.MetaClusterID, "east-1", xds.MetaRole, "gateway")
		n.Locality = &core.Locality{Region: "us-east", Zone: zone}
		gw.Send(&discoverypb.DiscoveryRequest{Node: n, TypeUrl: resourcev3.ClusterType})
		gw.ACK(gw.Expect())
	}
	if got := views(); got != 2 {
		t.Errorf("two gateways of a network and three sidecars: %d views, want 2", got)
	}
	if got := xdstest.Endpoints(before); got["10.0.1.2:7070"] != got["10.0.1.1:7070"] {
		t.Fatalf("before: %s: no endpoint is gold, so both rank alike", xdstest.Render(got))
	}

	// 10.0.1.2 becomes gold: the gold proxy's very next response ranks it
	// first; the plain proxy's keeps both alike (and is not pushed).
	if err := h.srv.Apply(h.clusterSet([]string{"{address: 10.0.1.2}", "{address: 10.0.1.2, labels: {tier: gold}}"})); err != nil {
		t.Fatal(err)
	}
	after := xdstest.Endpoints(cla(t, gold.Expect()))
	if after["10.0.1.2:7070"] != "1@0" || after["10.0.1.1:7070"] != "1@1" {
		t.Errorf("gold proxy's first response after the change: %s, want 10.0.1.2 at priority 0 alone", xdstest.Render(after))
	}
	// The plain proxy declares no tier: its assignment is unchanged, so
	// nothing is pushed to it.
	plain.ExpectNone()
	if got := views(); got < 3 {
		t.Errorf("after the change: %d views, want the gold proxy's own", got)
	}
}
