package mcs

import (
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/horizonmesh/horizon/discovery"
)

// Horizon's own ServiceExport condition about its Service's aliases
// (networking.horizon.io/aliases; discovery/aliases.go): True when an alias
// the Service declares is claimed by another service, which keeps it (the
// Kubernetes source drops this Service's claim: Service.DroppedAliases);
// False when the Service declares aliases and keeps them all. A Service
// without aliases gets no such condition.
const (
	ConditionAliasConflict mcsv1beta1.ServiceExportConditionType   = "AliasConflict"
	ReasonAliasClaimed     mcsv1beta1.ServiceExportConditionReason = "AliasClaimedElsewhere"
	ReasonNoAliasConflicts mcsv1beta1.ServiceExportConditionReason = "NoAliasConflicts"
)

// aliasCondition returns the AliasConflict condition of an export's
// Service in its cluster, nil when the Service declares no alias.
func aliasCondition(cs *discovery.ClusterSet, ref Ref) *metav1.Condition {
	c, ok := cs.Cluster(ref.Cluster)
	if !ok {
		return nil
	}
	s, ok := c.Service(ref.key())
	if !ok || len(s.Aliases)+len(s.DroppedAliases) == 0 {
		return nil
	}
	if len(s.DroppedAliases) == 0 {
		cond := condition(ConditionAliasConflict, metav1.ConditionFalse, ReasonNoAliasConflicts, "every alias of the Service is its own")
		return &cond
	}
	var claims []string
	for _, a := range s.DroppedAliases {
		owner, _ := cs.AliasOf(a)
		claims = append(claims, fmt.Sprintf("%s (claimed by service %s)", a, owner))
	}
	cond := condition(ConditionAliasConflict, metav1.ConditionTrue, ReasonAliasClaimed,
		"aliases dropped, another service keeps them: "+strings.Join(claims, ", "))
	return &cond
}
