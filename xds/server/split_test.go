package server

import (
	"slices"
	"strings"
	"testing"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"

	"github.com/horizonmesh/horizon/bench/gen"
	"github.com/horizonmesh/horizon/internal/testkit/xdstest"
	"github.com/horizonmesh/horizon/xds"
)

// TestLargeEDSIsSplit: with 300 services, a sidecar's endpoints are more
// than MaxResponseBytes. They come in several responses, each within the
// bound, one after each ACK, until the client holds every assignment; the
// clusters, which a SotW response must carry whole, come in one response
// over the bound, logged and counted.
func TestLargeEDSIsSplit(t *testing.T) {
	const limit = 16 << 10
	h := newHarness(t, func(o *Options) { o.MaxResponseBytes = limit })
	cs, err := gen.Generate(gen.Spec{Networks: 2, ClustersPerNetwork: 1, Services: 300, EndpointsPerService: 4, GatewaysPerCluster: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Apply(cs); err != nil {
		t.Fatal(err)
	}
	c := xdstest.NewSotW(t, h.conn)
	c.Send(&discoverypb.DiscoveryRequest{Node: node("big", gen.ClusterName(0, 0)), TypeUrl: resourcev3.ClusterType})
	cds := c.Expect()
	var eds []string
	for _, a := range cds.GetResources() {
		var cl cluster.Cluster
		if err := a.UnmarshalTo(&cl); err != nil {
			t.Fatal(err)
		}
		if cl.GetEdsClusterConfig() != nil {
			eds = append(eds, cl.GetName())
		}
	}
	if proto.Size(cds) <= limit {
		t.Fatalf("test setup: CDS is %d bytes, want over %d", proto.Size(cds), limit)
	}
	c.ACK(cds)
	if got := testutil.ToFloat64(h.metrics.oversized.WithLabelValues("cds")); got != 1 {
		t.Errorf("oversize CDS responses counted %v, want 1", got)
	}
	if !strings.Contains(h.logs.String(), "response larger than the maximum sent whole") {
		t.Errorf("the oversize CDS response is not logged:\n%s", h.logs.String())
	}

	c.Send(&discoverypb.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: eds})
	held := map[string]bool{}
	responses := 0
	for len(held) < len(eds) {
		r := c.Expect()
		responses++
		if size := proto.Size(r); size > limit+1024 {
			t.Fatalf("EDS response %d is %d bytes, over %d", responses, size, limit)
		}
		for _, a := range r.GetResources() {
			var cla interface{ GetClusterName() string }
			m, err := a.UnmarshalNew()
			if err != nil {
				t.Fatal(err)
			}
			cla = m.(interface{ GetClusterName() string })
			if held[cla.GetClusterName()] {
				t.Fatalf("response %d resends %s", responses, cla.GetClusterName())
			}
			held[cla.GetClusterName()] = true
		}
		c.ACK(r, eds...)
	}
	c.ExpectNone()
	if responses < 2 {
		t.Fatalf("%d assignments in %d response(s): not split", len(eds), responses)
	}
	if got := testutil.ToFloat64(h.metrics.oversized.WithLabelValues("eds")); got != 0 {
		t.Errorf("oversize EDS responses counted %v, want 0", got)
	}
	t.Logf("%d clusters (%d bytes, one response), %d assignments in %d responses", len(cds.GetResources()), proto.Size(cds), len(eds), responses)
}

// TestLargeDeltaIsSplit: a delta response may carry any subset, so even the
// clusters come in several responses within MaxResponseBytes, until the
// client holds them all.
func TestLargeDeltaIsSplit(t *testing.T) {
	const limit = 16 << 10
	h := newHarness(t, func(o *Options) { o.MaxResponseBytes = limit })
	cs, err := gen.Generate(gen.Spec{Networks: 2, ClustersPerNetwork: 1, Services: 300, EndpointsPerService: 4, GatewaysPerCluster: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Apply(cs); err != nil {
		t.Fatal(err)
	}
	// The clusters of the view, as a state-of-the-world client gets them.
	sotw, err := xdstest.Fetch(t, h.conn, &discoverypb.DiscoveryRequest{Node: node("count", gen.ClusterName(0, 0)), TypeUrl: resourcev3.ClusterType})
	if err != nil {
		t.Fatal(err)
	}
	want := len(sotw.GetResources())
	c := xdstest.NewDelta(t, h.conn)
	c.Send(&discoverypb.DeltaDiscoveryRequest{Node: node("big", gen.ClusterName(0, 0)), TypeUrl: resourcev3.ClusterType})
	held := map[string]bool{}
	responses := 0
	for {
		r, err := c.Next()
		if err != nil {
			t.Fatal(err)
		}
		responses++
		if size := proto.Size(r); size > limit+1024 {
			t.Fatalf("delta CDS response %d is %d bytes, over %d", responses, size, limit)
		}
		for _, res := range r.GetResources() {
			if held[res.GetName()] {
				t.Fatalf("response %d resends %s", responses, res.GetName())
			}
			held[res.GetName()] = true
		}
		c.ACK(r)
		if len(held) >= want {
			break
		}
	}
	c.ExpectNone()
	if responses < 2 || len(held) != want {
		t.Fatalf("%d clusters in %d response(s), want %d over several", len(held), responses, want)
	}
	// Only the state-of-the-world fetch was over the bound.
	if got := testutil.ToFloat64(h.metrics.oversized.WithLabelValues("cds")); got != 1 {
		t.Errorf("oversize responses counted %v, want 1 (the SotW fetch; delta splits)", got)
	}
}

// TestByNameSotWGetsOnlyItsNames: grpc-go subscribes to listeners and
// clusters by name, never by wildcard (it asks for the listeners of the
// targets it dials and the clusters their routes name). Listeners and
// clusters come whole in a state-of-the-world response, but "whole" is the
// subscription's: a proxyless client subscribed to two of a view's 600
// listeners and clusters gets those two, not the view, so its responses grow
// with what it dials rather than with the mesh.
func TestByNameSotWGetsOnlyItsNames(t *testing.T) {
	h := newHarness(t)
	cs, err := gen.Generate(gen.Spec{Networks: 2, ClustersPerNetwork: 1, Services: 300, EndpointsPerService: 4, GatewaysPerCluster: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Apply(cs); err != nil {
		t.Fatal(err)
	}
	n := xdstest.Node("pl", xds.MetaClusterID, gen.ClusterName(0, 0), xds.MetaRole, string(xds.Proxyless))
	for _, typeURL := range []string{resourcev3.ListenerType, resourcev3.ClusterType} {
		all, err := xdstest.Fetch(t, h.conn, &discoverypb.DiscoveryRequest{Node: n, TypeUrl: typeURL})
		if err != nil {
			t.Fatal(err)
		}
		if len(all.GetResources()) < 600 {
			t.Fatalf("test setup: %s view has %d resources, want 600 or more", typeURL, len(all.GetResources()))
		}
		var want []string
		for _, a := range all.GetResources()[:2] {
			m, err := a.UnmarshalNew()
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, m.(interface{ GetName() string }).GetName())
		}
		c := xdstest.NewSotW(t, h.conn)
		c.Send(&discoverypb.DiscoveryRequest{Node: n, TypeUrl: typeURL, ResourceNames: want})
		r := c.Expect()
		var got []string
		for _, a := range r.GetResources() {
			m, err := a.UnmarshalNew()
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, m.(interface{ GetName() string }).GetName())
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: subscribed to %q, got %d resources %q", typeURL, want, len(got), got)
		}
	}
}
