package xds

import (
	"strings"
	"sync"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/policyfile"
)

// ViewKeys reduces a proxy's Group to the view it is served: the Group with
// only what its render reads from it, under one ClusterSet and policy, so
// that proxies whose resources would be identical share one view.
//
//   - A gateway's view is its network's (gateway.Translate reads nothing
//     else): every gateway of a network shares one.
//   - A sidecar's or proxyless client's cluster and network always matter
//     (its cluster.local services, direct or through a gateway). Its
//     locality and labels matter only through the locality rankings of the
//     policy (LocalityLB: failoverPriority, failover, distribute), and only
//     where an endpoint or a rule can tell a value apart:
//   - its locality is first clamped to one the ClusterSet knows in its
//     cluster (ClusterSet.ClampLocality);
//   - a region, zone or sub-zone is kept when some enabled ranking compares
//     that level (failoverPriority) and some cluster or endpoint has the
//     same value there, or when a failover entry (From) or a distribute
//     pattern (From) names it; otherwise it is dropped ("").
//   - a region, zone or sub-zone a route rule's from: locality names is
//     kept too: the rule is in the views of the localities it matches;
//   - a label value is kept when some endpoint carries it under that key;
//     otherwise it is dropped, as if the proxy did not declare it.
//
// Why that is exact: a ranking compares a proxy's value with an
// endpoint's, and a proxy value equal to no endpoint's agrees with none,
// exactly like an empty one (LocalityLB.Priority: an empty value never
// agrees); a failover entry or a distribute pattern either names the value
// (kept) or does not match it, nor "" (a pattern level left empty matches
// both). TestViewKeysExact renders both groups of every golden case and
// compares their bytes.
//
// Rendering notes (Notes) can differ between the merged groups: the view
// keeps those of the proxy that first asked for it.
type ViewKeys struct {
	cs *discovery.ClusterSet
	// enabled: some ranking is on; without one, locality and labels never
	// matter.
	enabled bool
	// keys are the failoverPriority keys of the enabled rankings.
	keys map[policyfile.Key]bool
	// named are the values failover entries and distribute patterns name,
	// by level.
	named [3]map[string]bool
	// seen are the values endpoints and clusters have, by level, built on
	// first use; labels by key, for the label keys ranked on.
	once   sync.Once
	seen   [3]map[string]bool
	labels map[string]map[string]bool
}

// Levels of a locality, as ViewKeys indexes them.
const (
	levelRegion = iota
	levelZone
	levelSubZone
)

var levelKeys = [3]policyfile.Key{policyfile.KeyRegion, policyfile.KeyZone, policyfile.KeySubZone}

// NewViewKeys returns the view keys of a ClusterSet under a policy.
func NewViewKeys(cs *discovery.ClusterSet, p Policy) *ViewKeys {
	k := &ViewKeys{cs: cs, keys: map[policyfile.Key]bool{}}
	for i := range k.named {
		k.named[i] = map[string]bool{}
	}
	add := func(l policyfile.LocalityLB) {
		if !l.Enabled {
			return
		}
		k.enabled = true
		for _, key := range l.FailoverPriority {
			k.keys[key] = true
		}
		for _, f := range l.Failover {
			k.named[levelRegion][f.From] = true
		}
		for _, d := range l.Distribute {
			k.named[levelRegion][d.From.Region] = true
			k.named[levelZone][d.From.Zone] = true
			k.named[levelSubZone][d.From.SubZone] = true
		}
	}
	if p.File == nil {
		add(builtinLocality)
	} else {
		p.File.EachLocality(add)
		// A route rule's from: locality selects the rule per view
		// (routes.go): the values it names must stay apart.
		p.File.EachRouteLocality(func(pat policyfile.Pattern) {
			k.enabled = true
			k.named[levelRegion][pat.Region] = true
			k.named[levelZone][pat.Zone] = true
			k.named[levelSubZone][pat.SubZone] = true
		})
	}
	return k
}

// index collects the values endpoints and clusters have.
func (k *ViewKeys) index() {
	for i := range k.seen {
		k.seen[i] = map[string]bool{}
	}
	k.cs.Localities(func(l discovery.Locality) {
		k.seen[levelRegion][l.Region] = true
		k.seen[levelZone][l.Zone] = true
		k.seen[levelSubZone][l.SubZone] = true
	})
	k.labels = map[string]map[string]bool{}
	for key := range k.keys {
		if key.IsLabel() {
			k.labels[string(key)] = map[string]bool{}
		}
	}
	if len(k.labels) == 0 {
		return
	}
	for i := range k.cs.Clusters {
		c := &k.cs.Clusters[i]
		for j := range c.Services {
			for _, e := range c.Services[j].Endpoints {
				for key, vals := range k.labels {
					if v, ok := e.Labels[key]; ok {
						vals[v] = true
					}
				}
			}
		}
	}
}

// Of returns the view a group is served.
func (k *ViewKeys) Of(g Group) Group {
	if g.Role == Gateway {
		return Group{Role: Gateway, Network: g.Network}
	}
	out := Group{Role: g.Role, Cluster: g.Cluster, Network: g.Network}
	if !k.enabled {
		return out
	}
	k.once.Do(k.index)
	l := k.cs.ClampLocality(g.Cluster, g.Locality)
	keep := func(level int, v string) string {
		if v == "" || k.named[level][v] || (k.keys[levelKeys[level]] && k.seen[level][v]) {
			return v
		}
		return ""
	}
	out.Locality = discovery.Locality{
		Region:  keep(levelRegion, l.Region),
		Zone:    keep(levelZone, l.Zone),
		SubZone: keep(levelSubZone, l.SubZone),
	}
	if g.Labels != "" {
		var kvs []string
		for kv := range strings.SplitSeq(g.Labels, ",") {
			key, v, _ := strings.Cut(kv, "=")
			if k.labels[key][v] {
				kvs = append(kvs, kv)
			}
		}
		out.Labels = strings.Join(kvs, ",")
	}
	return out
}
