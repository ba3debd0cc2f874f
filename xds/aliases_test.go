package xds

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/horizonmesh/horizon/internal/testkit/fixture"
)

// TestPolicyRuleByAlias: a policy rule matching an alias applies to the
// Envoy cluster of the host the alias stands for, and to no other.
func TestPolicyRuleByAlias(t *testing.T) {
	cs, g, _ := loadCase(t, "testdata/golden/sidecar-aliases.in.yaml")
	p := Policy{File: fixture.Policy(t, filepath.Join("testdata", "aliases", "policy.yaml"), cs)}
	res, err := Render(cs, g, p)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]time.Duration{}
	for _, c := range res.Clusters {
		got[c.GetName()] = c.GetConnectTimeout().AsDuration()
	}
	if d := got["outbound_.8080_._.users.prod.svc.clusterset.local"]; d != 3*time.Second {
		t.Errorf("users.prod.svc.clusterset.local connect timeout %v, want the alias rule's 3s", d)
	}
	if d := got["outbound_.8080_._.cart.prod.svc.cluster.local"]; d == 3*time.Second {
		t.Error("the alias rule reached another service")
	}
	// And the alias routes to that cluster.
	for _, rc := range res.Routes {
		for _, vh := range rc.GetVirtualHosts() {
			if slices.Contains(vh.GetDomains(), "users.api.example.com:8080") &&
				vh.GetRoutes()[0].GetRoute().GetCluster() != "outbound_.8080_._.users.prod.svc.clusterset.local" {
				t.Errorf("users.api.example.com routes to %s", vh.GetRoutes()[0].GetRoute().GetCluster())
			}
		}
	}
}
