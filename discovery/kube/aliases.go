package kube

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/horizonmesh/horizon/discovery"
)

// AnnotationAliases on a Service lists extra host names of the service
// (discovery/aliases.go), comma-separated:
// "users.api.example.com, user-service.production.global".
const AnnotationAliases = "networking.horizon.io/aliases"

// serviceAliases reads a Service's AnnotationAliases. A bad name, one past
// discovery.MaxAliases, or one listed twice is a problem and skipped; the
// rest are kept.
func serviceAliases(svc *corev1.Service, problem problemFunc) []string {
	v, ok := svc.Annotations[AnnotationAliases]
	if !ok {
		return nil
	}
	var out []string
	for entry := range strings.SplitSeq(v, ",") {
		a := strings.TrimSuffix(strings.TrimSpace(entry), ".")
		if a == "" {
			continue
		}
		if err := discovery.CheckAlias(a); err != nil {
			problem("Service", svc.Namespace, svc.Name, "bad_alias", "annotation %s: alias %v; skipped", AnnotationAliases, err)
			continue
		}
		if slices.Contains(out, a) {
			continue
		}
		if len(out) == discovery.MaxAliases {
			problem("Service", svc.Namespace, svc.Name, "bad_alias", "annotation %s: more than %d aliases; the rest skipped", AnnotationAliases, discovery.MaxAliases)
			break
		}
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

// AliasConflict is an alias two services claim, across the member
// clusters: Winner keeps it, Loser's claim is dropped.
type AliasConflict struct {
	Alias   string
	Winner  discovery.ServiceKey
	Loser   discovery.ServiceKey
	Cluster string // the loser's cluster
}

// String renders the conflict for logs.
func (c AliasConflict) String() string {
	return fmt.Sprintf("alias %q of Service %s in cluster %s is claimed by service %s already; dropped", c.Alias, c.Loser, c.Cluster, c.Winner)
}

// DropAliasConflicts keeps every alias with one service, so that
// discovery.New does not refuse the members' ClusterSet over it: the
// service whose key sorts first keeps an alias several services claim, the
// others' claims are dropped (moved to Service.DroppedAliases, which the
// MCS controller reports as the ServiceExport's AliasConflict condition)
// and returned. Services are not modified in place: a Services list or
// Aliases list that changes is replaced.
func DropAliasConflicts(clusters []discovery.Cluster) []AliasConflict {
	owner := map[string]discovery.ServiceKey{}
	for _, c := range clusters {
		for _, s := range c.Services {
			for _, a := range s.Aliases {
				if k, ok := owner[a]; !ok || s.Key().Compare(k) < 0 {
					owner[a] = s.Key()
				}
			}
		}
	}
	var out []AliasConflict
	for i := range clusters {
		c := &clusters[i]
		cloned := false
		for j := range c.Services {
			s := &c.Services[j]
			keep := slices.DeleteFunc(slices.Clone(s.Aliases), func(a string) bool { return owner[a] != s.Key() })
			if len(keep) == len(s.Aliases) {
				continue
			}
			for _, a := range s.Aliases {
				if owner[a] != s.Key() {
					out = append(out, AliasConflict{Alias: a, Winner: owner[a], Loser: s.Key(), Cluster: c.Name})
				}
			}
			if !cloned {
				c.Services, cloned = slices.Clone(c.Services), true
				s = &c.Services[j]
			}
			s.DroppedAliases = slices.DeleteFunc(slices.Clone(s.Aliases), func(a string) bool { return owner[a] == s.Key() })
			s.Aliases = keep
		}
	}
	slices.SortFunc(out, func(a, b AliasConflict) int {
		return cmp.Or(cmp.Compare(a.Alias, b.Alias), cmp.Compare(a.Cluster, b.Cluster), a.Loser.Compare(b.Loser))
	})
	return out
}
