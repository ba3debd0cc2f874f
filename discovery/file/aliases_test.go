package file

import (
	"testing"

	"github.com/horizonmesh/horizon/discovery"
)

// TestParseAliases reads a service's aliases in each cluster, merges them
// into the export, and resolves every alias to the host it stands for.
func TestParseAliases(t *testing.T) {
	cs := mustParse(t, "testdata/aliases/valid.yaml")
	users := discovery.ServiceKey{Namespace: "prod", Name: "users"}
	equal(t, "east-1 users aliases", service(t, cluster(t, cs, "east-1"), "prod", "users").Aliases,
		[]string{"user-service.production.global", "users.api.example.com"})
	ex, ok := cs.Export(users)
	if !ok {
		t.Fatal("prod/users is not exported")
	}
	equal(t, "export aliases", ex.Aliases,
		[]string{"user-service.production.global", "users.api.example.com", "users.west.example.com"})
	equal(t, "alias names", cs.AliasNames(),
		[]string{"cart.global", "user-service.production.global", "users.api.example.com", "users.west.example.com"})
	for _, tc := range []struct{ alias, cluster, host string }{
		{"users.api.example.com", "east-1", "users.prod.svc.clusterset.local"},
		{"users.west.example.com", "east-1", "users.prod.svc.clusterset.local"},
		{"cart.global", "east-1", "cart.prod.svc.cluster.local"},
		{"cart.global", "west-1", ""}, // west-1 has no cart
		{"nothing.global", "east-1", ""},
	} {
		host, ok := cs.AliasHost(tc.alias, tc.cluster)
		if host != tc.host || ok != (tc.host != "") {
			t.Errorf("AliasHost(%s, %s) = %q, %v; want %q", tc.alias, tc.cluster, host, ok, tc.host)
		}
	}
}
