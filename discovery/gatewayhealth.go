package discovery

import "slices"

// WithoutGateways returns a ClusterSet equal to cs except that every gateway
// for which withdraw reports true is left out of every cluster that lists it,
// as if the source had never seen it. Proxies on other networks then stop
// being sent to it, and a network left without gateways is unreachable from
// the others, which is a valid ClusterSet. When withdraw matches no gateway,
// cs itself is returned.
//
// The result is a new, immutable ClusterSet with its own content hash (the
// gateways are part of it, so withdrawing one changes the version). It shares
// everything but the cluster list and the changed gateway lists with cs,
// read-only; cs is not modified. Exports do not depend on gateways and are
// shared as they are.
func (cs *ClusterSet) WithoutGateways(withdraw func(Gateway) bool) *ClusterSet {
	var out *ClusterSet
	for i := range cs.Clusters {
		gws := cs.Clusters[i].Gateways
		if !slices.ContainsFunc(gws, withdraw) {
			continue
		}
		if out == nil {
			out = &ClusterSet{
				Clusters: slices.Clone(cs.Clusters),
				Exports:  cs.Exports,
				byName:   cs.byName,
				byExport: cs.byExport,
				locs:     cs.locs, // gateways hold no locality
				aliases:  cs.aliases,
				External: cs.External,

				WorkloadGroups: cs.WorkloadGroups,
			}
		}
		kept := slices.DeleteFunc(slices.Clone(gws), withdraw)
		if len(kept) == 0 {
			kept = nil
		}
		out.Clusters[i].Gateways = kept
	}
	if out == nil {
		return cs
	}
	out.version = workloadVersion(fingerprint(out), out.WorkloadGroups)
	if len(out.External) > 0 {
		out.version = externalVersion(out.version, out.External)
	}
	return out
}
