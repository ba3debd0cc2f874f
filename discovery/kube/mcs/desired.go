package mcs

import (
	"cmp"
	"fmt"
	"maps"
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
	// IPFamilies, InternalTrafficPolicy and TrafficDistribution are the
	// Service's ("" when unset); the winner's go on the import.
	IPFamilies            []corev1.IPFamily
	InternalTrafficPolicy corev1.ServiceInternalTrafficPolicy
	TrafficDistribution   string
	// ExportedLabels and ExportedAnnotations are the export's
	// spec.exportedLabels and spec.exportedAnnotations; the winner's go on
	// the import's metadata.
	ExportedLabels, ExportedAnnotations map[string]string
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
	// Labels and Annotations are the winning export's exportedLabels and
	// exportedAnnotations, less the keys Horizon keeps for itself; nil when
	// there are none.
	Labels, Annotations map[string]string
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

	// Conflicts and the winning export, per exported service.
	type merged struct {
		conflict *metav1.Condition
		winner   *ExportState // nil when its member's cache lacks it
	}
	services := make(map[discovery.ServiceKey]merged, len(cs.Exports))
	for i := range cs.Exports {
		es := &cs.Exports[i]
		winner := winnerOf(cs, es)
		mg := merged{winner: exportOf[Ref{winner, es.Key.Namespace, es.Key.Name}]}
		mg.conflict = conflictCondition(cs, es, winner, exportOf)
		services[es.Key] = mg
	}

	// Export conditions.
	for _, m := range members {
		for _, e := range m.Exports {
			ref := Ref{m.ID, e.Namespace, e.Name}
			conds := exportConditions(cs, ref, e, services[ref.key()].conflict)
			if a := aliasCondition(cs, ref); a != nil && e.HasService {
				conds = append(conds, *a)
			}
			plan.Exports = append(plan.Exports, ExportStatus{Ref: ref, Conditions: conds})
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
			w := services[es.Key].winner
			im := Import{
				Ref:      ref,
				Spec:     importSpec(&es, ips[es.Key], w),
				Clusters: slices.Clone(es.Clusters),
			}
			if w != nil {
				im.Labels, im.Annotations = exportedMetadata(w)
			}
			plan.Imports = append(plan.Imports, im)
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

// conflictReasons orders reasons the way mcs-api declares them.
var conflictReasons = []string{
	string(mcsv1beta1.ServiceExportReasonPortConflict),
	string(mcsv1beta1.ServiceExportReasonTypeConflict),
	string(mcsv1beta1.ServiceExportReasonSessionAffinityConflict),
	string(mcsv1beta1.ServiceExportReasonSessionAffinityConfigConflict),
	string(mcsv1beta1.ServiceExportReasonLabelsConflict),
	string(mcsv1beta1.ServiceExportReasonAnnotationsConflict),
	string(mcsv1beta1.ServiceExportReasonInternalTrafficPolicyConflict),
	string(mcsv1beta1.ServiceExportReasonTrafficDistributionConflict),
	string(mcsv1beta1.ServiceExportReasonIPFamilyConflict),
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
	add := func(reason mcsv1beta1.ServiceExportConditionReason, format string, args ...any) {
		reasons[string(reason)] = true
		messages = append(messages, fmt.Sprintf(format, args...))
	}
	// The model merges ports into a union and reports only ports that
	// clash; a port set that merely differs from the winner's is a
	// conflict too.
	portClash := map[string]bool{}
	for _, c := range es.Conflicts {
		if c.Reason == discovery.PortConflict {
			portClash[c.Cluster] = true
		}
	}
	winnerPorts := portsOf(cs, winner, es.Key)
	for _, name := range es.Clusters {
		if name == winner || portClash[name] {
			continue
		}
		if ps := portsOf(cs, name, es.Key); !slices.Equal(ps, winnerPorts) {
			add(mcsv1beta1.ServiceExportReasonPortConflict, "cluster %s exports ports [%s]; the oldest export (cluster %s) has [%s]",
				name, strings.Join(ps, " "), winner, strings.Join(winnerPorts, " "))
		}
	}
	// The rest is not in the model: compare the members' exports and
	// Services with the winner's.
	if w := exportOf[Ref{winner, es.Key.Namespace, es.Key.Name}]; w != nil {
		for _, name := range es.Clusters {
			e := exportOf[Ref{name, es.Key.Namespace, es.Key.Name}]
			if name == winner || e == nil {
				continue
			}
			// Session affinity configs only matter among exports that
			// agree on the affinity itself.
			if affinityOf(cs, name, es.Key) == es.SessionAffinity && !apiequality.Semantic.DeepEqual(e.SessionAffinityConfig, w.SessionAffinityConfig) {
				add(mcsv1beta1.ServiceExportReasonSessionAffinityConfigConflict, "cluster %s has a different session affinity config than the oldest export (cluster %s)", name, winner)
			}
			if !maps.Equal(e.ExportedLabels, w.ExportedLabels) {
				add(mcsv1beta1.ServiceExportReasonLabelsConflict, "cluster %s exports labels %s; the oldest export (cluster %s) has %s", name, renderMap(e.ExportedLabels), winner, renderMap(w.ExportedLabels))
			}
			if !maps.Equal(e.ExportedAnnotations, w.ExportedAnnotations) {
				add(mcsv1beta1.ServiceExportReasonAnnotationsConflict, "cluster %s exports annotations %s; the oldest export (cluster %s) has %s", name, renderKeys(e.ExportedAnnotations), winner, renderKeys(w.ExportedAnnotations))
			}
			if a, b := trafficPolicy(e), trafficPolicy(w); a != b {
				add(mcsv1beta1.ServiceExportReasonInternalTrafficPolicyConflict, "cluster %s has internal traffic policy %s; the oldest export (cluster %s) has %s", name, a, winner, b)
			}
			if e.TrafficDistribution != w.TrafficDistribution {
				add(mcsv1beta1.ServiceExportReasonTrafficDistributionConflict, "cluster %s has traffic distribution %q; the oldest export (cluster %s) has %q", name, e.TrafficDistribution, winner, w.TrafficDistribution)
			}
			if !sameFamilies(e.IPFamilies, w.IPFamilies) {
				add(mcsv1beta1.ServiceExportReasonIPFamilyConflict, "cluster %s has IP families %v; the oldest export (cluster %s) has %v", name, e.IPFamilies, winner, w.IPFamilies)
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

// portsOf renders a cluster's ports of a service as name/port/protocol/app,
// sorted: what must agree between exports (target ports are each cluster's
// own business).
func portsOf(cs *discovery.ClusterSet, cluster string, k discovery.ServiceKey) []string {
	c, ok := cs.Cluster(cluster)
	if !ok {
		return nil
	}
	s, ok := c.Service(k)
	if !ok {
		return nil
	}
	out := make([]string, 0, len(s.Ports))
	for _, p := range s.Ports {
		out = append(out, fmt.Sprintf("%s/%d/%s/%s", p.Name, p.Port, p.Protocol, p.AppProtocol))
	}
	slices.Sort(out)
	return out
}

// trafficPolicy is the Service's internal traffic policy, Cluster when unset
// (the API server's default).
func trafficPolicy(e *ExportState) corev1.ServiceInternalTrafficPolicy {
	if e.InternalTrafficPolicy == "" {
		return corev1.ServiceInternalTrafficPolicyCluster
	}
	return e.InternalTrafficPolicy
}

// sameFamilies compares IP families as sets: the order (which family is
// primary) decides nothing a client of the other cluster can reach.
func sameFamilies(a, b []corev1.IPFamily) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// renderMap renders a map as {k=v, ...}, sorted by key.
func renderMap(m map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+m[k])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// renderKeys renders a map's keys, sorted: annotation values can be long.
func renderKeys(m map[string]string) string {
	return "{" + strings.Join(slices.Sorted(maps.Keys(m)), ", ") + "}"
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

// importSpec builds the import's spec from the merged export and the winning
// export (nil when its member's cache lacks it).
func importSpec(es *discovery.ExportedService, ips []string, winner *ExportState) mcsv1beta1.ServiceImportSpec {
	var affinity *corev1.SessionAffinityConfig
	if winner != nil {
		affinity = winner.SessionAffinityConfig
	}
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
	var families []corev1.IPFamily
	if winner != nil {
		families = winner.IPFamilies
		if winner.InternalTrafficPolicy != "" {
			p := winner.InternalTrafficPolicy
			spec.InternalTrafficPolicy = &p
		}
		if winner.TrafficDistribution != "" {
			d := winner.TrafficDistribution
			spec.TrafficDistribution = &d
		}
	}
	switch spec.Type {
	case mcsv1beta1.ClusterSetIP:
		// One IP per configured family, in the order of the winning
		// Service's families (its primary first); families it lacks follow
		// in the allocator's order.
		rank := func(ip string) int {
			f := corev1.IPv6Protocol
			if a, err := netip.ParseAddr(ip); err == nil && a.Is4() {
				f = corev1.IPv4Protocol
			}
			if i := slices.Index(families, f); i >= 0 {
				return i
			}
			return len(families)
		}
		ordered := slices.Clone(ips)
		slices.SortStableFunc(ordered, func(a, b string) int { return cmp.Compare(rank(a), rank(b)) })
		for _, ip := range ordered {
			spec.IPs = append(spec.IPs, ip)
			if a, err := netip.ParseAddr(ip); err == nil && a.Is4() {
				spec.IPFamilies = append(spec.IPFamilies, corev1.IPv4Protocol)
			} else {
				spec.IPFamilies = append(spec.IPFamilies, corev1.IPv6Protocol)
			}
		}
	case mcsv1beta1.Headless:
		// No IPs; the families say which addresses the endpoints have.
		spec.IPFamilies = slices.Clone(families)
	}
	return spec
}

// exportedMetadata returns the labels and annotations an import carries: the
// winning export's exportedLabels and exportedAnnotations, less Horizon's
// own keys (its managed-by label and its annotations), which an export
// cannot override.
func exportedMetadata(w *ExportState) (labels, annotations map[string]string) {
	for k, v := range w.ExportedLabels {
		if k == LabelManagedBy {
			continue
		}
		if labels == nil {
			labels = map[string]string{}
		}
		labels[k] = v
	}
	for k, v := range w.ExportedAnnotations {
		if strings.HasPrefix(k, horizonAnnotationPrefix) {
			continue
		}
		if annotations == nil {
			annotations = map[string]string{}
		}
		annotations[k] = v
	}
	return labels, annotations
}
