package chaos

import (
	"strings"
	"testing"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/horizonmesh/horizon/bench/load"
)

func anyOf(t *testing.T, m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func cla(name string, addrs ...string) *endpoint.ClusterLoadAssignment {
	c := &endpoint.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpoint.LocalityLbEndpoints{{}}}
	for _, a := range addrs {
		host, _, _ := strings.Cut(a, ":")
		c.Endpoints[0].LbEndpoints = append(c.Endpoints[0].LbEndpoints, &endpoint.LbEndpoint{
			HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{Address: &core.Address{Address: &core.Address_SocketAddress{
				SocketAddress: &core.SocketAddress{Address: host, PortSpecifier: &core.SocketAddress_PortValue{PortValue: 7070}}}}}},
			LoadBalancingWeight: wrapperspb.UInt32(1),
		})
	}
	return c
}

func testEnv() *Env {
	return &Env{Violations: &Violations{}, gone: map[string]bool{},
		Ledger: &Ledger{addrs: map[string]bool{}, members: map[string]bool{}, removed: map[string]bool{}, owner: ownerOf}}
}

// The recorder's checks can fail: each invariant is broken on purpose.
func TestRecorderChecks(t *testing.T) {
	name := ClusterSetName("svc-0", Namespace, ServicePort)
	cds := load.Response{Type: load.CDS, Version: "c1", Stream: 1, Received: time.Now(), Resources: nil}
	eds := func(v string, subscribed []string, c *endpoint.ClusterLoadAssignment) load.Response {
		return load.Response{Type: load.EDS, Version: v, Stream: 1, Received: time.Now(), Subscribed: subscribed, Resources: []*anypb.Any{anyOf(t, c)}}
	}
	clusterRes := anyOf(t, &cluster.Cluster{Name: name, ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_EDS}})
	cds.Resources = []*anypb.Any{clusterRes}

	t.Run("I1", func(t *testing.T) {
		e := testEnv()
		r := newRecorder(e, load.Identity{ID: "p"}, ACK)
		for _, resp := range []load.Response{cds, eds("e1", []string{name}, cla(name, "10.1.0.1:7070", "10.1.0.2:7070"))} {
			if err := r.observe(resp); err != nil {
				t.Fatal(err)
			}
		}
		e.Ledger.RemoveEndpoints("m1", "10.1.0.2:7070")
		_ = r.observe(eds("e2", []string{name}, cla(name, "10.1.0.1:7070")))
		if v := e.Violations.List(); len(v) != 0 {
			t.Fatalf("a removal in the ledger was reported: %v", v)
		}
		_ = r.observe(eds("e3", []string{name}, cla(name)))
		if v := e.Violations.List(); len(v) != 1 || v[0].Invariant != "I1" || !strings.Contains(v[0].Detail, "10.1.0.1:7070") {
			t.Fatalf("an endpoint lost without a removal: %v", v)
		}
	})
	t.Run("I4", func(t *testing.T) {
		e := testEnv()
		r := newRecorder(e, load.Identity{ID: "p"}, NACK)
		if err := r.observe(cds); err == nil {
			t.Fatal("a NACKer accepted")
		}
		_ = r.observe(cds)
		if v := e.Violations.List(); len(v) != 1 || v[0].Invariant != "I4" {
			t.Fatalf("a NACKed version sent again: %v", v)
		}
		next := cds
		next.Stream = 2 // a new stream may be sent it again
		_ = r.observe(next)
		if v := e.Violations.List(); len(v) != 1 {
			t.Fatalf("a new stream's first response reported: %v", v)
		}
	})
	t.Run("I6", func(t *testing.T) {
		e := testEnv()
		r := newRecorder(e, load.Identity{ID: "p"}, ACK)
		_ = r.observe(eds("e1", nil, cla(name, "10.1.0.1:7070")))
		if v := e.Violations.List(); len(v) != 1 || v[0].Invariant != "I6" {
			t.Fatalf("an assignment nobody asked for: %v", v)
		}
	})
}
