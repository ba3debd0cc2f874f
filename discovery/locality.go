package discovery

import "sync"

// localities is the index ClampLocality reads: per cluster, every locality
// the ClusterSet knows there (the cluster's own and those of its endpoints)
// and their region/zone and region prefixes. Built on first use, once per
// ClusterSet.
type localities struct {
	once      sync.Once
	byCluster map[string]map[Locality]bool
	// all is every locality of a cluster or an endpoint, in any cluster.
	all map[Locality]bool
}

// ClampLocality returns the locality the ClusterSet knows in cluster that is
// nearest to l: l itself when the cluster's own locality or one of its
// endpoints' is l; else l without its sub-zone, or without its zone, when
// that prefix is known there; else the cluster's own locality. A proxy
// declares its locality; clamping it keeps the number of views a proxy can
// make Horizon render bounded by what the ClusterSet holds, while a proxy in
// a zone without endpoints still gets its region's view.
func (cs *ClusterSet) ClampLocality(cluster string, l Locality) Locality {
	c, ok := cs.Cluster(cluster)
	if !ok || cs.locs == nil {
		return l
	}
	cs.locs.once.Do(cs.indexLocalities)
	known := cs.locs.byCluster[cluster]
	for _, cand := range []Locality{l, {Region: l.Region, Zone: l.Zone}, {Region: l.Region}} {
		if cand.Region != "" && known[cand] {
			return cand
		}
	}
	return c.Locality
}

func (cs *ClusterSet) indexLocalities() {
	cs.locs.byCluster = make(map[string]map[Locality]bool, len(cs.Clusters))
	cs.locs.all = map[Locality]bool{}
	for i := range cs.Clusters {
		c := &cs.Clusters[i]
		known := map[Locality]bool{}
		add := func(l Locality) {
			cs.locs.all[l] = true
			if l.Region == "" {
				return
			}
			known[l] = true
			known[Locality{Region: l.Region, Zone: l.Zone}] = true
			known[Locality{Region: l.Region}] = true
		}
		add(c.Locality)
		for j := range c.Services {
			for k := range c.Services[j].Endpoints {
				add(c.Services[j].Endpoints[k].Locality)
			}
		}
		cs.locs.byCluster[c.Name] = known
	}
}

// Localities calls f with every locality of a cluster or an endpoint of the
// ClusterSet, each once: the localities an endpoint ranking can compare a
// proxy's with.
func (cs *ClusterSet) Localities(f func(Locality)) {
	if cs.locs == nil {
		return
	}
	cs.locs.once.Do(cs.indexLocalities)
	for l := range cs.locs.all {
		f(l)
	}
}
