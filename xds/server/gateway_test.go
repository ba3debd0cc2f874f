package server

import (
	"slices"
	"testing"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/horizonmesh/horizon/gateway"
	"github.com/horizonmesh/horizon/internal/testkit/xdstest"
	"github.com/horizonmesh/horizon/xds"
)

// emptyEndpoints gives the protocol fixture's service "empty" an endpoint.
var emptyEndpoints = []string{
	"name: empty\n        namespace: demo\n        exported: true\n        ports: [{name: grpc, port: 7070, appProtocol: grpc}]",
	"name: empty\n        namespace: demo\n        exported: true\n        ports: [{name: grpc, port: 7070, appProtocol: grpc}]\n        endpoints: [{address: 10.0.1.7}]",
}

func responseNames(t *testing.T, r *discoverypb.DiscoveryResponse) []string {
	t.Helper()
	var out []string
	for _, a := range r.GetResources() {
		var m proto.Message
		switch r.GetTypeUrl() {
		case resourcev3.ClusterType:
			m = &cluster.Cluster{}
		case resourcev3.EndpointType:
			m = &endpoint.ClusterLoadAssignment{}
		case resourcev3.ListenerType:
			m = &listener.Listener{}
		default:
			t.Fatalf("unexpected type %s", r.GetTypeUrl())
		}
		if err := a.UnmarshalTo(m); err != nil {
			t.Fatal(err)
		}
		out = append(out, xds.ResourceName(m.(types.Resource)))
	}
	slices.Sort(out)
	return out
}

// TestGatewaySubscriptions follows an Envoy east-west gateway on a
// state-of-the-world stream: wildcard CDS, EDS for each cluster by name,
// wildcard LDS. Every request is answered, and a new exported endpoint
// reaches it as CDS, then LDS, then EDS once it asks for the new cluster.
func TestGatewaySubscriptions(t *testing.T) {
	h := newHarness(t)
	c := xdstest.NewSotW(t, h.conn)
	n := node("gw", "east-1", xds.MetaRole, string(xds.Gateway))
	listenerName := gateway.ListenerName(gateway.DefaultPort)

	c.Send(&discoverypb.DiscoveryRequest{Node: n, TypeUrl: resourcev3.ClusterType})
	cds := c.Expect()
	if got := responseNames(t, cds); !slices.Equal(got, []string{echoSet}) {
		t.Fatalf("CDS %v, want only %s (empty has no endpoints)", got, echoSet)
	}
	c.ACK(cds)
	c.Send(&discoverypb.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: []string{echoSet}})
	eds := c.Expect()
	if got := responseNames(t, eds); !slices.Equal(got, []string{echoSet}) {
		t.Fatalf("EDS %v, want %s", got, echoSet)
	}
	var cla endpoint.ClusterLoadAssignment
	if err := eds.GetResources()[0].UnmarshalTo(&cla); err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, lle := range cla.GetEndpoints() {
		for _, lb := range lle.GetLbEndpoints() {
			addrs = append(addrs, lb.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
		}
	}
	if want := []string{"10.0.1.1", "10.0.1.2"}; !slices.Equal(addrs, want) {
		t.Fatalf("assignment lists %v, want east's pods %v", addrs, want)
	}
	c.ACK(eds, echoSet)
	c.Send(&discoverypb.DiscoveryRequest{TypeUrl: resourcev3.ListenerType})
	lds := c.Expect()
	if got := responseNames(t, lds); !slices.Equal(got, []string{listenerName}) {
		t.Fatalf("LDS %v, want %s", got, listenerName)
	}
	c.ACK(lds)
	c.ExpectNone()

	if err := h.srv.Apply(h.clusterSet(emptyEndpoints)); err != nil {
		t.Fatal(err)
	}
	cds = c.Expect()
	if cds.GetTypeUrl() != resourcev3.ClusterType {
		t.Fatalf("first push is %s, want CDS", cds.GetTypeUrl())
	}
	if got := responseNames(t, cds); !slices.Equal(got, []string{echoSet, emptySet}) {
		t.Fatalf("CDS after the change %v, want %s and %s", got, echoSet, emptySet)
	}
	lds = c.Expect()
	if lds.GetTypeUrl() != resourcev3.ListenerType {
		t.Fatalf("second push is %s, want LDS", lds.GetTypeUrl())
	}
	var l listener.Listener
	if err := lds.GetResources()[0].UnmarshalTo(&l); err != nil {
		t.Fatal(err)
	}
	if len(l.GetFilterChains()) != 2 {
		t.Fatalf("listener has %d filter chains, want 2", len(l.GetFilterChains()))
	}
	c.ACK(cds)
	c.ACK(eds, echoSet, emptySet)
	if got := responseNames(t, c.Expect()); !slices.Equal(got, []string{emptySet}) {
		t.Fatalf("EDS for the new cluster %v, want %s", got, emptySet)
	}
}

// TestGatewayDeltaSubscriptions is the same on an incremental stream.
func TestGatewayDeltaSubscriptions(t *testing.T) {
	h := newHarness(t)
	c := xdstest.NewDelta(t, h.conn)
	n := node("gw", "west-1", xds.MetaRole, string(xds.Gateway))

	c.Send(&discoverypb.DeltaDiscoveryRequest{Node: n, TypeUrl: resourcev3.ClusterType})
	r := c.Expect()
	if got := names(r); !slices.Equal(got, []string{echoSet}) {
		t.Fatalf("CDS %v, want %s", got, echoSet)
	}
	c.ACK(r)
	c.Send(&discoverypb.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: []string{echoSet}})
	r = c.Expect()
	if got := names(r); !slices.Equal(got, []string{echoSet}) {
		t.Fatalf("EDS %v, want %s", got, echoSet)
	}
	c.ACK(r)
	c.Send(&discoverypb.DeltaDiscoveryRequest{TypeUrl: resourcev3.ListenerType})
	r = c.Expect()
	if got, want := names(r), []string{gateway.ListenerName(gateway.DefaultPort)}; !slices.Equal(got, want) {
		t.Fatalf("LDS %v, want %v", got, want)
	}
	c.ACK(r)
	c.ExpectNone()

	// A change on another network's service leaves west's gateway alone.
	if err := h.srv.Apply(h.clusterSet(emptyEndpoints)); err != nil {
		t.Fatal(err)
	}
	c.ExpectNone()
}
