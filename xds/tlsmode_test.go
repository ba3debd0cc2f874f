package xds

import (
	"path/filepath"
	"testing"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/horizonmesh/horizon/bench/gen"
	"github.com/horizonmesh/horizon/discovery"
)

// envoySocket is the transport socket Envoy picks for an endpoint, from
// Envoy's documented rule for Cluster.transport_socket_matches
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/cluster/v3/cluster.proto#envoy-v3-api-field-config-cluster-v3-cluster-transport-socket-matches):
// the matches in order against the endpoint's metadata under
// envoy.transport_socket_match (a match whose criteria are empty matches any
// endpoint); if none matches, the same against its locality's metadata
// (LocalityLbEndpoints.metadata); barring both, the cluster's
// transport_socket ("default"). A criterion holds when the metadata has the
// key with an equal value.
func envoySocket(c *cluster.Cluster, endpointMeta, localityMeta *core.Metadata) string {
	holds := func(criteria *structpb.Struct, md *core.Metadata) bool {
		fields := md.GetFilterMetadata()[transportSocketMatchKey].GetFields()
		for k, want := range criteria.GetFields() {
			got, ok := fields[k]
			if !ok || got.GetStringValue() != want.GetStringValue() {
				return false
			}
		}
		return true
	}
	for _, md := range []*core.Metadata{endpointMeta, localityMeta} {
		for _, m := range c.GetTransportSocketMatches() {
			if holds(m.GetMatch(), md) {
				return m.GetTransportSocket().GetName()
			}
		}
	}
	return c.GetTransportSocket().GetName()
}

// TestTransportSocketPerEndpoint: in every sidecar view (the golden cases,
// one with a plaintext endpoint beside mesh ones, and a generated mesh),
// Envoy picks mutual TLS for exactly the endpoints that accept it (mesh
// workloads, and every gateway, which only mesh workloads cross) and plain
// TCP for the rest, whether the tlsMode metadata sits on the endpoint or,
// shared by all of a locality's, on the locality (hoistTLSMode).
func TestTransportSocketPerEndpoint(t *testing.T) {
	ins, err := filepath.Glob("testdata/golden/sidecar-*.in.yaml")
	if err != nil || len(ins) == 0 {
		t.Fatalf("no sidecar golden cases: %v", err)
	}
	generated, err := gen.Generate(gen.Spec{Networks: 2, ClustersPerNetwork: 2, Services: 3, EndpointsPerService: 5, GatewaysPerCluster: 2})
	if err != nil {
		t.Fatal(err)
	}
	type view struct {
		name   string
		cs     *discovery.ClusterSet
		g      Group
		policy Policy
	}
	var views []view
	for _, in := range ins {
		cs, g, policy := loadCase(t, in)
		views = append(views, view{filepath.Base(in), cs, g, policy})
		// The case's ClusterSet seen from every cluster too: a plaintext
		// endpoint appears only in its own network's views.
		for _, c := range cs.Clusters {
			views = append(views, view{filepath.Base(in) + " from " + c.Name, cs, Group{Role: Sidecar, Cluster: c.Name, Network: c.Network, Locality: c.Locality}, policy})
		}
	}
	views = append(views, view{"generated", generated, Group{Role: Sidecar, Cluster: gen.ClusterName(0, 0), Network: gen.NetworkName(0)}, Policy{}})
	plaintext, hoisted, mixed := 0, 0, 0
	for _, v := range views {
		in, cs, g, policy := v.name, v.cs, v.g, v.policy
		// What each address accepts: the view's own network's endpoints as
		// declared, every gateway mutual TLS.
		accepts := map[string]bool{}
		for _, c := range cs.Clusters {
			for _, gw := range c.Gateways {
				accepts[gw.Address] = true
			}
			if c.Network != g.Network {
				continue
			}
			for _, s := range c.Services {
				for _, e := range s.Endpoints {
					accepts[e.Address] = e.MTLS
				}
			}
		}
		res, err := Translate(cs, g, policy)
		if err != nil {
			t.Fatal(err)
		}
		clusters := map[string]*cluster.Cluster{}
		for _, c := range res.Clusters {
			clusters[c.GetName()] = c
		}
		for _, cla := range res.Endpoints {
			c := clusters[cla.GetClusterName()]
			if c == nil {
				t.Fatalf("%s: assignment %s has no cluster", in, cla.GetClusterName())
			}
			for _, lle := range cla.GetEndpoints() {
				if lle.GetMetadata() != nil {
					hoisted++
				} else if len(lle.GetLbEndpoints()) > 1 {
					mixed++
				}
				for _, lb := range lle.GetLbEndpoints() {
					addr := lb.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()
					mtls, known := accepts[addr]
					if !known {
						t.Fatalf("%s: %s: endpoint %s is in no cluster of the view's network and is no gateway", in, cla.GetClusterName(), addr)
					}
					want := "envoy.transport_sockets.raw_buffer"
					if mtls {
						want = "envoy.transport_sockets.tls"
					} else {
						plaintext++
					}
					if got := envoySocket(c, lb.GetMetadata(), lle.GetMetadata()); got != want {
						t.Errorf("%s: %s: Envoy connects to %s with %s, want %s", in, cla.GetClusterName(), addr, got, want)
					}
				}
			}
		}
	}
	if plaintext == 0 || hoisted == 0 || mixed == 0 {
		t.Fatalf("test setup: %d plaintext endpoints, %d localities with tlsMode metadata, %d without: want each", plaintext, hoisted, mixed)
	}
	t.Logf("%d views: %d plaintext endpoints, %d localities with tlsMode metadata, %d with several endpoints without", len(views), plaintext, hoisted, mixed)
}
