package xdstest

import (
	"maps"
	"testing"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func lbEndpoint(addr string, port, weight uint32) *endpoint.LbEndpoint {
	return &endpoint.LbEndpoint{
		HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{Address: &core.Address{
			Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{Address: addr, PortSpecifier: &core.SocketAddress_PortValue{PortValue: port}}}}}},
		LoadBalancingWeight: wrapperspb.UInt32(weight),
	}
}

func TestTables(t *testing.T) {
	cla := &endpoint.ClusterLoadAssignment{Endpoints: []*endpoint.LocalityLbEndpoints{
		{Locality: &core.Locality{Region: "us-east", Zone: "a"}, LoadBalancingWeight: wrapperspb.UInt32(2),
			LbEndpoints: []*endpoint.LbEndpoint{lbEndpoint("10.0.1.1", 9080, 1), lbEndpoint("10.0.1.2", 9080, 1)}},
		{Locality: &core.Locality{Region: "eu-west"}, LoadBalancingWeight: wrapperspb.UInt32(3), Priority: 1,
			LbEndpoints: []*endpoint.LbEndpoint{lbEndpoint("10.1.0.100", 15443, 3)}},
	}}
	if got, want := Endpoints(cla), map[string]string{"10.0.1.1:9080": "1@0", "10.0.1.2:9080": "1@0", "10.1.0.100:15443": "3@1"}; !maps.Equal(got, want) {
		t.Errorf("Endpoints = %s, want %s", Render(got), Render(want))
	}
	if got, want := Localities(cla), map[string]string{"us-east/a": "2@0", "eu-west/": "3@1"}; !maps.Equal(got, want) {
		t.Errorf("Localities = %s, want %s", Render(got), Render(want))
	}
	if got, want := Render(map[string]string{"b": "1@1", "a": "2@0"}), "a=2@0 b=1@1 "; got != want {
		t.Errorf("Render = %q, want %q", got, want)
	}
}

func TestNode(t *testing.T) {
	n := Node("p", "CLUSTER_ID", "east-1", "ROLE", "sidecar", "ROLE", "gateway")
	if n.GetId() != "p" || n.GetMetadata().GetFields()["CLUSTER_ID"].GetStringValue() != "east-1" || n.GetMetadata().GetFields()["ROLE"].GetStringValue() != "gateway" {
		t.Errorf("Node = %v, want id p, CLUSTER_ID east-1 and the later ROLE", n)
	}
}
