package policyfile

import (
	"maps"

	"github.com/horizonmesh/horizon/discovery"
)

// A rule may match a service's alias (discovery/aliases.go), say
// `match: {host: users.api.example.com}`. An alias reaches the same Envoy
// cluster as the host it stands for, so the rule is that host's rule: the
// service's clusterset.local host when a cluster exports it, else its
// cluster.local host. Match.Host is that host and Match.Alias the name the
// file wrote; a file with rules for both an alias and its host, or for two
// aliases of one host, is refused as any host ruled twice. An alias the
// topology does not know is an error (unlike an unknown service, a
// warning): which host it stands for is unknown, so the rule could apply
// to nothing. The topology carries the aliases, so a ClusterSet change that
// moves or drops one re-checks the policy.

// aliasHosts returns, for every alias of cs, the host it stands for in
// every cluster (see above).
func aliasHosts(cs *discovery.ClusterSet) map[string]string {
	names := cs.AliasNames()
	if len(names) == 0 {
		return nil
	}
	out := make(map[string]string, len(names))
	for _, a := range names {
		k, _ := cs.AliasOf(a)
		scope := discovery.ClusterLocal
		if _, ok := cs.Export(k); ok {
			scope = discovery.ClusterSetWide
		}
		out[a] = discovery.Host(k, scope)
	}
	return out
}

// aliasesEqual compares two topologies' aliases.
func aliasesEqual(a, b map[string]string) bool { return maps.Equal(a, b) }
