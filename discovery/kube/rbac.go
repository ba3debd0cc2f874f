package kube

import rbacv1 "k8s.io/api/rbac/v1"

// ReaderClusterRole is the ClusterRole that grants Horizon ReaderRules in a
// member cluster: `horizon cluster add-secret` makes it, and
// examples/kubernetes/rbac.yaml holds the same.
const ReaderClusterRole = "horizon-reader"

// ReaderRules is what Horizon may do in a member cluster: read what
// discovery needs (every resource a Member's informers watch, and the
// ClusterProperty it reads its id from), write ServiceImports and
// ServiceExport status (the MCS controller, mcs), and review tokens.
// examples/kubernetes/rbac.yaml holds the same rules;
// TestReaderRulesCoverTheMember holds them to what a Member asks for.
func ReaderRules() []rbacv1.PolicyRule {
	read := []string{"get", "list", "watch"}
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"services", "pods", "nodes", "namespaces"}, Verbs: read},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: read},
		{APIGroups: []string{"multicluster.x-k8s.io"}, Resources: []string{"serviceexports"}, Verbs: read},
		{APIGroups: []string{"multicluster.x-k8s.io"}, Resources: []string{"serviceexports/status"}, Verbs: []string{"update"}},
		{APIGroups: []string{"multicluster.x-k8s.io"}, Resources: []string{"serviceimports"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
		{APIGroups: []string{"multicluster.x-k8s.io"}, Resources: []string{"serviceimports/status"}, Verbs: []string{"update"}},
		{APIGroups: []string{"about.k8s.io"}, Resources: []string{"clusterproperties"}, Verbs: []string{"get"}},
		// Proxies in the member prove who they are with ServiceAccount
		// tokens that only the member can review.
		{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
	}
}
