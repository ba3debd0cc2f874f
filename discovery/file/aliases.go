// This file reads a service's aliases (discovery/aliases.go): extra host
// names, each claimed by one service across the whole file.

package file

import (
	"strings"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/internal/yamlnode"
)

// aliasesBound bounds a service's aliases.
var aliasesBound = yamlnode.Bound{Max: discovery.MaxAliases, What: "aliases"}

// aliasClaim is where an alias was first claimed, and by which service.
type aliasClaim struct {
	service discovery.ServiceKey
	cluster string
	line    int
}

// aliases reads the aliases of service k of a cluster, the object o
// (named where). An alias another service claimed earlier in the file is
// an error naming that service and its line; the same service may list it
// again in another cluster.
func (p *parser) aliases(o *yamlnode.Object, where, cluster string, k discovery.ServiceKey) []string {
	var out []string
	lines := map[string]int{}
	for i, n := range o.List("aliases", aliasesBound) {
		path := yamlnode.Index(yamlnode.Join(where, "aliases"), i)
		a, ok := p.ScalarString(n, path, "")
		if !ok {
			continue
		}
		a = strings.TrimSuffix(a, ".") // a fully qualified name is the same name
		if err := discovery.CheckAlias(a); err != nil {
			p.Errorf(n, path, "%v", err)
			continue
		}
		if first := lines[a]; first != 0 {
			p.Errorf(n, path, "alias %q listed twice (first at line %d)", a, first)
			continue
		}
		lines[a] = n.Line
		if p.claims == nil {
			p.claims = map[string]aliasClaim{}
		}
		if c, ok := p.claims[a]; ok && c.service != k {
			p.Errorf(n, path, "alias %q is claimed by service %s (cluster %s, line %d) already: an alias names one service", a, c.service, c.cluster, c.line)
			continue
		} else if !ok {
			p.claims[a] = aliasClaim{service: k, cluster: cluster, line: n.Line}
		}
		out = append(out, a)
	}
	return out
}
