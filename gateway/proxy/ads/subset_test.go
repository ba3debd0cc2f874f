package ads

import (
	"reflect"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/gateway"
	"github.com/horizonmesh/horizon/gateway/proxy/sni"
	"github.com/horizonmesh/horizon/internal/testkit/fixture"
)

// TestGatewayTableSubsets: Horizon's own gateway routes the SNI of a route
// subset (discovery.SubsetClusterName, what a sidecar's or proxyless
// client's subset cluster sends) to that subset's pods in its network
// only, as gateway.Translate configures it: a label subset across the
// network's clusters, a cluster's share of one cluster's pods.
func TestGatewayTableSubsets(t *testing.T) {
	cs := fixture.ClusterSet(t, "testdata/subsets.yaml")
	echo := discovery.ServiceKey{Namespace: "demo", Name: "echo"}
	v2 := discovery.Subset{Name: "v2", Labels: map[string]string{"version": "v2"}}
	share := discovery.Subset{Cluster: "west-1"}
	v2west2 := discovery.Subset{Name: "v2", Labels: map[string]string{"version": "v2"}, Cluster: "west-2"}
	r, err := gateway.Translate(cs, "west", gateway.Options{Subsets: map[discovery.ServiceKey][]discovery.Subset{echo: {v2, share, v2west2}}})
	if err != nil {
		t.Fatal(err)
	}
	listeners := map[string]*listener.Listener{}
	for _, l := range r.Listeners {
		listeners[l.GetName()] = l
	}
	clusters := map[string]*clusterv3.Cluster{}
	for _, c := range r.Clusters {
		clusters[c.GetName()] = c
	}
	assignments := map[string]*endpoint.ClusterLoadAssignment{}
	for _, cla := range r.Endpoints {
		assignments[cla.GetClusterName()] = cla
	}
	host := "echo.demo.svc.clusterset.local"
	got := gatewayTable(listeners, clusters, assignments)
	want := sni.Table{
		discovery.SNI(host, 7070):                        {"10.1.1.1:7070", "10.1.1.2:7070", "10.1.2.1:7070"},
		discovery.SubsetClusterName(host, 7070, v2):      {"10.1.1.2:7070", "10.1.2.1:7070"},
		discovery.SubsetClusterName(host, 7070, share):   {"10.1.1.1:7070", "10.1.1.2:7070"},
		discovery.SubsetClusterName(host, 7070, v2west2): {"10.1.2.1:7070"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("table:\n got %v\nwant %v", got, want)
	}
}
