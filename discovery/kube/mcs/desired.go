package mcs

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/kube"
)

// The label that marks the ServiceImports Horizon writes; Horizon updates and
// deletes no others.
// The Kubernetes source reads the ClusterSet IPs back from these imports.
const (
	LabelManagedBy   = kube.LabelManagedBy
	ManagedByHorizon = kube.ManagedByHorizon
)

// MemberState is what Desired needs to know of one member cluster, read from
// its caches.
type MemberState struct {
	ID string
	// Namespaces are the cluster's existing, non-terminating namespaces.
	Namespaces []string
	Exports    []ExportState
	// Imports are the cluster's ServiceImports, Horizon's and others'.
	Imports []ImportState
}

// ExportState is one ServiceExport and what its cluster holds of the Service
// it names.
type ExportState struct {
	Namespace, Name string
	Created         time.Time // the export's creationTimestamp
	HasService      bool
	ServiceType     corev1.ServiceType
	// SessionAffinityConfig is the Service's; the winner's goes on the import.
	SessionAffinityConfig *corev1.SessionAffinityConfig
}

// ImportState is one existing ServiceImport.
type ImportState struct {
	Namespace, Name string
	Managed         bool // labelled as Horizon's
	IPs             []string
}

// Ref names one object in one member cluster.
type Ref struct {
	Cluster, Namespace, Name string
}

// String renders the reference as cluster/namespace/name.
func (r Ref) String() string { return r.Cluster + "/" + r.Namespace + "/" + r.Name }

func (r Ref) key() discovery.ServiceKey {
	return discovery.ServiceKey{Namespace: r.Namespace, Name: r.Name}
}

func compareRef(a, b Ref) int {
	return cmp.Or(cmp.Compare(a.Cluster, b.Cluster), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}

// ExportStatus is the conditions one ServiceExport should carry. Conditions
// have no lastTransitionTime: the writer stamps it when a status changes.
type ExportStatus struct {
	Ref
	Conditions []metav1.Condition // Valid, Ready, then Conflict when known
}

// Import is a ServiceImport one member cluster should hold.
type Import struct {
	Ref
	Spec mcsv1beta1.ServiceImportSpec
	// Clusters are the exporting clusters (status.clusters), sorted.
	Clusters []string
}

// Plan is every member's desired MCS state. Everything is sorted by
// (cluster, namespace, name).
type Plan struct {
	Exports []ExportStatus
	Imports []Import
	// Deletes are Horizon's imports whose service is no longer exported (or
	// whose namespace is going).
	Deletes []Ref
	// Foreign are imports Horizon would write but someone else manages; they
	// are left alone.
	Foreign []Ref
	// Problems are allocation failures, for the log.
	Problems []string
}

// Desired computes the plan: the conditions of every ServiceExport and the
// ServiceImports of every member. cs decides what is exported and how (it
// merged the exports); members say what each cluster holds. It reads the
// allocator's memory of recent assignments and updates it, and otherwise
// depends on nothing but its arguments. A nil ClusterSet (none published
// yet) gives an empty plan: nothing is known, so nothing is deleted.
func Desired(cs *discovery.ClusterSet, members []MemberState, alloc *Allocator) Plan {
	var plan Plan
	if cs == nil {
		return plan
	}
	members = slices.Clone(members)
	slices.SortFunc(members, func(a, b MemberState) int { return cmp.Compare(a.ID, b.ID) })
	exportOf := map[Ref]*ExportState{}
	for _, m := range members {
		for i := range m.Exports {
			e := &m.Exports[i]
			exportOf[Ref{m.ID, e.Namespace, e.Name}] = e
		}
	}

	// Conflicts and the winner's session affinity config, per exported service.
	type merged struct {
		conflict *metav1.Condition
		affinity *corev1.SessionAffinityConfig
	}
	services := make(map[discovery.ServiceKey]merged, len(cs.Exports))
	for i := range cs.Exports {
		es := &cs.Exports[i]
		winner := winnerOf(cs, es)
		var mg merged
		if e := exportOf[Ref{winner, es.Key.Namespace, es.Key.Name}]; e != nil {
			mg.affinity = e.SessionAffinityConfig
		}
		mg.conflict = conflictCondition(cs, es, winner, exportOf)
		services[es.Key] = mg
	}

	// Export conditions.
	for _, m := range members {
		for _, e := range m.Exports {
			ref := Ref{m.ID, e.Namespace, e.Name}
			plan.Exports = append(plan.Exports, ExportStatus{Ref: ref, Conditions: exportConditions(cs, ref, e, services[ref.key()].conflict)})
		}
	}

	// ClusterSet IPs: every ClusterSetIP service, keeping the IPs its
	// managed imports already carry.
	var want []discovery.ServiceKey
	for _, es := range cs.Exports {
		if es.Type == discovery.ClusterSetIP {
			want = append(want, es.Key)
		}
	}
	held := map[discovery.ServiceKey][]string{}     // managed imports' IPs
	reserved := map[discovery.ServiceKey][]string{} // everyone's IPs
	for _, m := range members {
		for _, im := range m.Imports {
			k := discovery.ServiceKey{Namespace: im.Namespace, Name: im.Name}
			reserved[k] = append(reserved[k], im.IPs...)
			if im.Managed {
				held[k] = append(held[k], im.IPs...)
			}
		}
	}
	ips, problems := alloc.Assign(want, held, reserved)
	plan.Problems = problems

	// Imports, and deletion of Horizon's imports nobody wants any more.
	for _, m := range members {
		namespaces := map[string]bool{}
		for _, ns := range m.Namespaces {
			namespaces[ns] = true
		}
		existing := map[discovery.ServiceKey]ImportState{}
		for _, im := range m.Imports {
			existing[discovery.ServiceKey{Namespace: im.Namespace, Name: im.Name}] = im
		}
		wanted := map[discovery.ServiceKey]bool{}
		for _, es := range cs.Exports {
			if !namespaces[es.Key.Namespace] {
				continue
			}
			wanted[es.Key] = true
			ref := Ref{m.ID, es.Key.Namespace, es.Key.Name}
			if im, ok := existing[es.Key]; ok && !im.Managed {
				plan.Foreign = append(plan.Foreign, ref)
				continue
			}
			plan.Imports = append(plan.Imports, Import{
				Ref:      ref,
				Spec:     importSpec(&es, ips[es.Key], services[es.Key].affinity),
				Clusters: slices.Clone(es.Clusters),
			})
		}
		for _, im := range m.Imports {
			if im.Managed && !wanted[discovery.ServiceKey{Namespace: im.Namespace, Name: im.Name}] {
				plan.Deletes = append(plan.Deletes, Ref{m.ID, im.Namespace, im.Name})
			}
		}
	}
	slices.SortFunc(plan.Exports, func(a, b ExportStatus) int { return compareRef(a.Ref, b.Ref) })
	slices.SortFunc(plan.Imports, func(a, b Import) int { return compareRef(a.Ref, b.Ref) })
	slices.SortFunc(plan.Deletes, compareRef)
	slices.SortFunc(plan.Foreign, compareRef)
	return plan
}

// winnerOf returns the cluster whose export defines the service: the oldest,
// then the lowest cluster id, as discovery.New merges them.
func winnerOf(cs *discovery.ClusterSet, es *discovery.ExportedService) string {
	winner := ""
	var at time.Time
	for _, name := range es.Clusters { // sorted by name
		c, ok := cs.Cluster(name)
		if !ok {
			continue
		}
		s, ok := c.Service(es.Key)
		if !ok {
			continue
		}
		if winner == "" || s.ExportedAt.Before(at) {
			winner, at = name, s.ExportedAt
		}
	}
	return winner
}

// conflictReasons orders reasons the way the KEP lists them.
var conflictReasons = []string{
	string(mcsv1beta1.ServiceExportReasonPortConflict),
	string(mcsv1beta1.ServiceExportReasonTypeConflict),
	string(mcsv1beta1.ServiceExportReasonSessionAffinityConflict),
	string(mcsv1beta1.ServiceExportReasonSessionAffinityConfigConflict),
}

// conflictCondition is the Conflict condition every export of a service
// carries: True with every reason when its exports disagree.
func conflictCondition(cs *discovery.ClusterSet, es *discovery.ExportedService, winner string, exportOf map[Ref]*ExportState) *metav1.Condition {
	reasons := map[string]bool{}
	var messages []string
	for _, c := range es.Conflicts {
		reasons[c.Reason] = true
		messages = append(messages, c.Message)
	}
	// The model does not carry session affinity configs; compare them among
	// exports that agree on the affinity itself.
	if w := exportOf[Ref{winner, es.Key.Namespace, es.Key.Name}]; w != nil {
		for _, name := range es.Clusters {
			e := exportOf[Ref{name, es.Key.Namespace, es.Key.Name}]
			if name == winner || e == nil || affinityOf(cs, name, es.Key) != es.SessionAffinity {
				continue
			}
			if !apiequality.Semantic.DeepEqual(e.SessionAffinityConfig, w.SessionAffinityConfig) {
				reasons[string(mcsv1beta1.ServiceExportReasonSessionAffinityConfigConflict)] = true
				messages = append(messages, fmt.Sprintf("cluster %s has a different session affinity config than the oldest export (cluster %s)", name, winner))
			}
		}
	}
	if len(reasons) == 0 {
		c := condition(mcsv1beta1.ServiceExportConditionConflict, metav1.ConditionFalse, mcsv1beta1.ServiceExportReasonNoConflicts,
			fmt.Sprintf("the exports of %s from clusters %s agree", es.Key, strings.Join(es.Clusters, ", ")))
		return &c
	}
	var rs []string
	for _, r := range conflictReasons {
		if reasons[r] {
			rs = append(rs, r)
		}
	}
	msg := fmt.Sprintf("the exports of %s disagree; the oldest export (cluster %s) defines the service: %s", es.Key, winner, strings.Join(messages, "; "))
	c := condition(mcsv1beta1.ServiceExportConditionConflict, metav1.ConditionTrue, mcsv1beta1.ServiceExportConditionReason(strings.Join(rs, ",")), msg)
	return &c
}

func affinityOf(cs *discovery.ClusterSet, cluster string, k discovery.ServiceKey) string {
	if c, ok := cs.Cluster(cluster); ok {
		if s, ok := c.Service(k); ok {
			return s.SessionAffinity
		}
	}
	return ""
}

func exportConditions(cs *discovery.ClusterSet, ref Ref, e ExportState, conflict *metav1.Condition) []metav1.Condition {
	invalid := func(reason mcsv1beta1.ServiceExportConditionReason, msg string) []metav1.Condition {
		return []metav1.Condition{
			condition(mcsv1beta1.ServiceExportConditionValid, metav1.ConditionFalse, reason, msg),
			condition(mcsv1beta1.ServiceExportConditionReady, metav1.ConditionFalse, mcsv1beta1.ServiceExportReasonFailed, "the export is not valid: "+msg),
			condition(mcsv1beta1.ServiceExportConditionConflict, metav1.ConditionFalse, mcsv1beta1.ServiceExportReasonNoConflicts, "the export is not valid"),
		}
	}
	svc := ref.Namespace + "/" + ref.Name
	switch {
	case !e.HasService:
		return invalid(mcsv1beta1.ServiceExportReasonNoService, fmt.Sprintf("cluster %s has no Service %s", ref.Cluster, svc))
	case e.ServiceType == corev1.ServiceTypeExternalName:
		return invalid(mcsv1beta1.ServiceExportReasonInvalidServiceType, fmt.Sprintf("Service %s is of type ExternalName, which cannot be exported", svc))
	}
	out := []metav1.Condition{
		condition(mcsv1beta1.ServiceExportConditionValid, metav1.ConditionTrue, mcsv1beta1.ServiceExportReasonValid, fmt.Sprintf("Service %s is exported", svc)),
	}
	es, ok := cs.Export(ref.key())
	if !ok || !slices.Contains(es.Clusters, ref.Cluster) || conflict == nil {
		return append(out, condition(mcsv1beta1.ServiceExportConditionReady, metav1.ConditionFalse, mcsv1beta1.ServiceExportReasonPending,
			"waiting for the export to join the ClusterSet"))
	}
	return append(out,
		condition(mcsv1beta1.ServiceExportConditionReady, metav1.ConditionTrue, mcsv1beta1.ServiceExportReasonExported,
			fmt.Sprintf("exported to the ClusterSet by clusters %s", strings.Join(es.Clusters, ", "))),
		*conflict)
}

// condition builds a condition without a transition time: Desired has no
// clock, and meta.SetStatusCondition stamps the time of a change.
func condition(t mcsv1beta1.ServiceExportConditionType, s metav1.ConditionStatus, r mcsv1beta1.ServiceExportConditionReason, msg string) metav1.Condition {
	c := mcsv1beta1.NewServiceExportCondition(t, s, r, truncate(msg, 32768))
	c.LastTransitionTime = metav1.Time{}
	return c
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

func importSpec(es *discovery.ExportedService, ips []string, affinity *corev1.SessionAffinityConfig) mcsv1beta1.ServiceImportSpec {
	spec := mcsv1beta1.ServiceImportSpec{
		Type:            mcsv1beta1.ClusterSetIP,
		Ports:           []mcsv1beta1.ServicePort{}, // required, even when empty
		SessionAffinity: corev1.ServiceAffinity(es.SessionAffinity),
	}
	if es.Type == discovery.Headless {
		spec.Type = mcsv1beta1.Headless
	}
	if spec.SessionAffinity == "" {
		spec.SessionAffinity = corev1.ServiceAffinityNone
	}
	if spec.SessionAffinity == corev1.ServiceAffinityClientIP && affinity != nil {
		spec.SessionAffinityConfig = affinity.DeepCopy()
	}
	for _, p := range es.Ports {
		sp := mcsv1beta1.ServicePort{Name: p.Name, Protocol: corev1.Protocol(p.Protocol), Port: int32(p.Port)}
		if p.AppProtocol != "" {
			sp.AppProtocol = &p.AppProtocol
		}
		spec.Ports = append(spec.Ports, sp)
	}
	if spec.Type == mcsv1beta1.ClusterSetIP {
		for _, ip := range ips {
			spec.IPs = append(spec.IPs, ip)
			if a, err := netip.ParseAddr(ip); err == nil && a.Is4() {
				spec.IPFamilies = append(spec.IPFamilies, corev1.IPv4Protocol)
			} else {
				spec.IPFamilies = append(spec.IPFamilies, corev1.IPv6Protocol)
			}
		}
	}
	return spec
}
