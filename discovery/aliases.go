package discovery

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Aliases: extra host names of a service. A service may be reached by names
// other than <svc>.<ns>.svc.cluster.local and .svc.clusterset.local: global
// names in the style of `user-service.production.global`, or any name of
// its own such as `users.api.example.com`. An alias names one service,
// ClusterSet-wide: it is rendered beside the service's clusterset.local host
// when some cluster exports the service (the same Envoy cluster, the same
// ClusterSet IP, the same policy), else beside the cluster.local host of the
// clusters that define it. Each cluster's definition lists the aliases it
// declares (Service.Aliases); an export carries the union of every
// cluster's definition's (ExportedService.Aliases).
//
// An alias is claimed once: two services claiming one name, or an alias in
// the service domains Horizon names services in, make New fail (and the
// file source reports it with file:line before that).

// MaxAliases is the most aliases a service declares in one cluster.
const MaxAliases = 32

// CheckAlias returns what is wrong with an alias, or nil: it must be a
// lower-case DNS name of at least two labels, and not in the domains
// Horizon's own service hosts are in (svc.cluster.local,
// svc.clusterset.local), which name services by namespace and name.
func CheckAlias(a string) error {
	switch {
	case !IsDNSName(a):
		return fmt.Errorf("%q is not a lower-case DNS name (dot-separated DNS labels, at most 253 bytes)", a)
	case !strings.Contains(a, "."):
		return fmt.Errorf("%q is a single label: an alias needs a domain (like %s.global), or it would shadow a short service name", a, a)
	case strings.HasSuffix(a, ".svc."+ClusterLocalDomain) || strings.HasSuffix(a, ".svc."+ClusterSetDomain):
		return fmt.Errorf("%q is in a service domain (.svc.%s, .svc.%s): those names belong to the services they name", a, ClusterLocalDomain, ClusterSetDomain)
	}
	return nil
}

// normalizeAliases sorts and checks a service's aliases.
func normalizeAliases(s *Service) error {
	var errs []error
	if len(s.Aliases) > MaxAliases {
		errs = append(errs, fmt.Errorf("%d aliases, at most %d", len(s.Aliases), MaxAliases))
	}
	slices.Sort(s.Aliases)
	for i, a := range s.Aliases {
		if err := CheckAlias(a); err != nil {
			errs = append(errs, fmt.Errorf("alias %w", err))
		}
		if i > 0 && s.Aliases[i-1] == a {
			errs = append(errs, fmt.Errorf("alias %q: listed twice", a))
		}
	}
	return errors.Join(errs...)
}

// AliasClaim is one service's claim on an alias, for the errors of
// indexAliases.
type AliasClaim struct {
	Cluster string
	Service ServiceKey
}

// indexAliases records which service every alias names, and fails when two
// services claim one alias (the clusters' own definitions of one service
// may each list it).
func (cs *ClusterSet) indexAliases() error {
	var errs []error
	first := map[string]AliasClaim{}
	for i := range cs.Clusters {
		c := &cs.Clusters[i]
		for j := range c.Services {
			s := &c.Services[j]
			for _, a := range s.Aliases {
				claim := AliasClaim{Cluster: c.Name, Service: s.Key()}
				old, dup := first[a]
				switch {
				case !dup:
					first[a] = claim
				case old.Service != claim.Service:
					errs = append(errs, fmt.Errorf("alias %q: claimed by service %s (cluster %s) and by service %s (cluster %s); an alias names one service", a, old.Service, old.Cluster, claim.Service, claim.Cluster))
				}
			}
		}
	}
	if len(first) == 0 {
		return errors.Join(errs...)
	}
	cs.aliases = make(map[string]ServiceKey, len(first))
	for a, c := range first {
		cs.aliases[a] = c.Service
	}
	return errors.Join(errs...)
}

// mergeAliases sets every export's aliases: the union of the aliases of
// every cluster's definition of the service, exporting or not (an alias
// stands for the clusterset.local host once the service is exported
// anywhere, so one a non-exporting cluster lists must be rendered there).
func (cs *ClusterSet) mergeAliases() {
	if len(cs.aliases) == 0 {
		return
	}
	for i := range cs.Exports {
		ex := &cs.Exports[i]
		for j := range cs.Clusters {
			if s, ok := cs.Clusters[j].Service(ex.Key); ok {
				ex.Aliases = append(ex.Aliases, s.Aliases...)
			}
		}
		slices.Sort(ex.Aliases)
		ex.Aliases = slices.Compact(ex.Aliases)
	}
}

// AliasOf returns the service an alias names.
func (cs *ClusterSet) AliasOf(host string) (ServiceKey, bool) {
	k, ok := cs.aliases[host]
	return k, ok
}

// AliasNames returns every alias of the ClusterSet, sorted.
func (cs *ClusterSet) AliasNames() []string {
	out := make([]string, 0, len(cs.aliases))
	for a := range cs.aliases {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

// AliasHost returns the host name an alias stands for in a view of the
// given cluster: the service's clusterset.local host when it is exported,
// else its cluster.local host when the cluster's own definition of the
// service lists the alias; ok is false when the alias names nothing
// reachable from that cluster.
func (cs *ClusterSet) AliasHost(alias, cluster string) (host string, ok bool) {
	k, ok := cs.aliases[alias]
	if !ok {
		return "", false
	}
	if _, ok := cs.Export(k); ok {
		return Host(k, ClusterSetWide), true
	}
	if c, ok := cs.Cluster(cluster); ok {
		if s, ok := c.Service(k); ok && slices.Contains(s.Aliases, alias) {
			return Host(k, ClusterLocal), true
		}
	}
	return "", false
}
