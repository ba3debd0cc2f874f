package xds

import (
	"slices"
	"testing"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/internal/testkit/fixture"
)

// TestClusterSetIPRouting: a ClusterSet IP that an MCS controller allocated
// (and DNS hands out for <svc>.<ns>.svc.clusterset.local) is routed to the
// clusterset service on a sidecar.
func TestClusterSetIPRouting(t *testing.T) {
	base := fixture.ClusterSet(t, "testdata/splithorizon.yaml")
	clusters := slices.Clone(base.Clusters)
	echo := discovery.ServiceKey{Namespace: "demo", Name: "echo"}
	clusters[0].ImportIPs = map[discovery.ServiceKey][]string{echo: {"240.240.0.7"}}
	cs, err := discovery.New(clusters)
	if err != nil {
		t.Fatal(err)
	}
	if ex, _ := cs.Export(echo); !slices.Equal(ex.IPs, []string{"240.240.0.7"}) {
		t.Fatalf("export IPs %v", ex.IPs)
	}
	g := Group{Role: Sidecar, Cluster: "west", Network: "west"}
	res, err := Translate(cs, g, Policy{})
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(res, cs, g); err != nil {
		t.Fatal(err)
	}
	for _, rc := range res.Routes {
		for _, vh := range rc.GetVirtualHosts() {
			if vh.GetName() == discovery.Host(echo, discovery.ClusterSetWide)+":8080" {
				if !slices.Contains(vh.GetDomains(), "240.240.0.7:8080") {
					t.Fatalf("virtual host %s domains %v lack the ClusterSet IP", vh.GetName(), vh.GetDomains())
				}
				return
			}
		}
	}
	t.Fatal("no virtual host for echo's clusterset host")
}
