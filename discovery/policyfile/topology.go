package policyfile

import (
	"cmp"
	"slices"

	"github.com/horizonmesh/horizon/discovery"
)

// Topology is what the checker knows of the ClusterSet a policy is used
// with: its clusters, where they and their endpoints run, and which services
// they hold. TopologyOf builds it from a discovery.ClusterSet; tests may
// write it by hand.
type Topology struct {
	Clusters []TopologyCluster
	// Aliases maps every alias of a service to the host it stands for
	// (aliases.go).
	Aliases map[string]string
}

// TopologyCluster is one member cluster as the checker sees it.
type TopologyCluster struct {
	Name    string
	Network string
	// Localities are the cluster's own locality and those of its endpoints.
	Localities []discovery.Locality
	// Services are the keys of the services the cluster holds.
	Services []discovery.ServiceKey
}

// TopologyOf summarizes a ClusterSet for the checker.
func TopologyOf(cs *discovery.ClusterSet) Topology {
	var t Topology
	if cs == nil {
		return t
	}
	for _, c := range cs.Clusters {
		tc := TopologyCluster{Name: c.Name, Network: c.Network}
		if c.Locality != (discovery.Locality{}) {
			tc.Localities = append(tc.Localities, c.Locality)
		}
		for _, s := range c.Services {
			tc.Services = append(tc.Services, s.Key())
			for _, e := range s.Endpoints {
				if e.Locality != (discovery.Locality{}) {
					tc.Localities = append(tc.Localities, e.Locality)
				}
			}
		}
		t.Clusters = append(t.Clusters, tc)
	}
	t.Aliases = aliasHosts(cs)
	return t.normalized()
}

// normalized returns a sorted, deduplicated copy, so that equal topologies
// compare equal.
func (t Topology) normalized() Topology {
	out := Topology{Clusters: slices.Clone(t.Clusters), Aliases: t.Aliases}
	slices.SortFunc(out.Clusters, func(a, b TopologyCluster) int { return cmp.Compare(a.Name, b.Name) })
	for i := range out.Clusters {
		c := &out.Clusters[i]
		c.Localities = slices.Clone(c.Localities)
		slices.SortFunc(c.Localities, discovery.Locality.Compare)
		c.Localities = slices.Compact(c.Localities)
		c.Services = slices.Clone(c.Services)
		slices.SortFunc(c.Services, discovery.ServiceKey.Compare)
		c.Services = slices.Compact(c.Services)
	}
	return out
}

// Equal reports whether two topologies hold the same facts.
func (t Topology) Equal(o Topology) bool {
	a, b := t.normalized(), o.normalized()
	return aliasesEqual(a.Aliases, b.Aliases) && slices.EqualFunc(a.Clusters, b.Clusters, func(x, y TopologyCluster) bool {
		return x.Name == y.Name && x.Network == y.Network && slices.Equal(x.Localities, y.Localities) && slices.Equal(x.Services, y.Services)
	})
}

func (t Topology) cluster(name string) (*TopologyCluster, bool) {
	for i := range t.Clusters {
		if t.Clusters[i].Name == name {
			return &t.Clusters[i], true
		}
	}
	return nil, false
}

// matches reports whether any locality of the given clusters (all when
// clusters is nil) is in the pattern.
func (t Topology) matches(p Pattern, clusters func(name string) bool) bool {
	for _, c := range t.Clusters {
		if clusters != nil && !clusters(c.Name) {
			continue
		}
		for _, l := range c.Localities {
			if p.Matches(l) {
				return true
			}
		}
	}
	return false
}

// hasRegion, hasZone: whether any locality has them.
func (t Topology) hasRegion(r string) bool { return t.matches(Pattern{Region: r}, nil) }

func (t Topology) hasService(k discovery.ServiceKey) bool {
	for _, c := range t.Clusters {
		if _, ok := slices.BinarySearchFunc(c.Services, k, discovery.ServiceKey.Compare); ok {
			return true
		}
	}
	return false
}

func (t Topology) networks() []string {
	var out []string
	for _, c := range t.Clusters {
		out = append(out, c.Network)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (t Topology) regions() []string {
	var out []string
	for _, c := range t.Clusters {
		for _, l := range c.Localities {
			if l.Region != "" {
				out = append(out, l.Region)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (t Topology) clusterNames() []string {
	var out []string
	for _, c := range t.Clusters {
		out = append(out, c.Name)
	}
	return out
}
