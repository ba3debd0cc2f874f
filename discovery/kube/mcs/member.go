package mcs

import (
	"cmp"
	"slices"

	corev1 "k8s.io/api/core/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"
)

// Member is what the controller needs of one member cluster: its id, its
// caches and a client to write with. *kube.Member satisfies it. Lists come
// from informer caches and are read-only.
type Member interface {
	ID() string
	MCS() mcsclient.Interface
	ServiceExports() []*mcsv1beta1.ServiceExport
	ServiceImports() []*mcsv1beta1.ServiceImport
	Service(namespace, name string) (*corev1.Service, bool)
	Namespaces() []string
}

// State reads a member's caches into the plain form Desired takes.
func State(m Member) MemberState {
	s := MemberState{ID: m.ID(), Namespaces: slices.Sorted(slices.Values(m.Namespaces()))}
	for _, ex := range m.ServiceExports() {
		e := ExportState{
			Namespace: ex.Namespace, Name: ex.Name, Created: ex.CreationTimestamp.Time,
			ExportedLabels:      ex.Spec.ExportedLabels,
			ExportedAnnotations: ex.Spec.ExportedAnnotations,
		}
		if svc, ok := m.Service(ex.Namespace, ex.Name); ok {
			e.HasService = true
			e.ServiceType = svc.Spec.Type
			e.SessionAffinityConfig = svc.Spec.SessionAffinityConfig
			e.IPFamilies = slices.Clone(svc.Spec.IPFamilies)
			if p := svc.Spec.InternalTrafficPolicy; p != nil {
				e.InternalTrafficPolicy = *p
			}
			if d := svc.Spec.TrafficDistribution; d != nil {
				e.TrafficDistribution = *d
			}
		}
		s.Exports = append(s.Exports, e)
	}
	slices.SortFunc(s.Exports, func(a, b ExportState) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	for _, im := range m.ServiceImports() {
		s.Imports = append(s.Imports, ImportState{
			Namespace: im.Namespace, Name: im.Name,
			Managed: managed(im),
			IPs:     slices.Clone(im.Spec.IPs),
		})
	}
	slices.SortFunc(s.Imports, func(a, b ImportState) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return s
}

func managed(im *mcsv1beta1.ServiceImport) bool {
	return im.Labels[LabelManagedBy] == ManagedByHorizon
}
