// Package seed003_test checks that the Horizon equivalent of the seed 003
// routing examples parses, passes the policy's checks against its
// ClusterSet without warnings, and renders views that pass xds.Check.
package seed003_test

import (
	"slices"
	"testing"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/file"
	"github.com/horizonmesh/horizon/discovery/policyfile"
	"github.com/horizonmesh/horizon/xds"
)

func TestSeed003(t *testing.T) {
	cs, err := file.Load("clusterset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policyfile.Load("policy.yaml", policyfile.TopologyOf(cs))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range pol.Warnings {
		t.Errorf("warning: %v", w)
	}
	hr := pol.RoutesFor("user-service.production.svc.clusterset.local")
	if hr == nil {
		t.Fatal("no routes for user-service")
	}
	// The geo-location header picks the us-west subset, the way Istio's
	// first matching http route does.
	i, _ := hr.Select(policyfile.Request{Path: "/", Headers: map[string]string{"geo-location": "us-west"}, Cluster: "central-1"})
	if i < 0 || hr.Rules[i].Name != "geo-us-west" {
		t.Errorf("geo-location: us-west takes rule %d", i)
	}
	for _, c := range cs.Clusters {
		g := xds.Group{Role: xds.Sidecar, Cluster: c.Name, Network: c.Network, Locality: c.Locality}
		res, err := xds.Render(cs, g, xds.Policy{File: pol})
		if err != nil {
			t.Fatalf("view of %s: %v", c.Name, err)
		}
		names := make([]string, 0, len(res.Clusters))
		for _, cl := range res.Clusters {
			names = append(names, cl.GetName())
		}
		want := discovery.SubsetClusterName("user-service.production.svc.clusterset.local", 80, discovery.Subset{Name: "us-west", Labels: map[string]string{"region": "us-west1"}})
		if !slices.Contains(names, want) {
			t.Errorf("view of %s lacks %s", c.Name, want)
		}
	}
}
