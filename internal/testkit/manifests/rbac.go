package manifests

import (
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

// CheckNoClusterWideRead: no ClusterRoleBinding of docs gives a
// ServiceAccount of namespace a ClusterRole with a rule over every object of
// a resource. A ClusterRole whose every rule names its objects
// (resourceNames, e.g. the injector's one MutatingWebhookConfiguration) may
// be bound; so may the roles listed in allowed (an opt-in). A bound
// ClusterRole that docs do not hold is an error too: nothing here shows
// what it grants. It returns how many bindings it checked.
func CheckNoClusterWideRead(t testing.TB, docs Docs, namespace string, allowed ...string) int {
	t.Helper()
	roles := map[string]*rbacv1.ClusterRole{}
	for _, list := range docs {
		for _, obj := range list {
			if r, ok := obj.(*rbacv1.ClusterRole); ok {
				roles[r.Name] = r
			}
		}
	}
	checked := 0
	for _, file := range docs.Files() {
		for _, obj := range docs[file] {
			b, ok := obj.(*rbacv1.ClusterRoleBinding)
			if !ok {
				continue
			}
			for _, s := range b.Subjects {
				if s.Kind != "ServiceAccount" || s.Namespace != namespace {
					continue
				}
				checked++
				if slices.Contains(allowed, b.RoleRef.Name) {
					continue
				}
				role, ok := roles[b.RoleRef.Name]
				if !ok {
					t.Errorf("%s: ClusterRoleBinding %s binds %s/%s to ClusterRole %s, which is not here", file, b.Name, s.Namespace, s.Name, b.RoleRef.Name)
					continue
				}
				for _, r := range role.Rules {
					if len(r.ResourceNames) == 0 {
						t.Errorf("%s: ClusterRoleBinding %s gives %s/%s the ClusterRole %s cluster-wide: %v %v on every object", file, b.Name, s.Namespace, s.Name, role.Name, r.Verbs, r.Resources)
					}
				}
			}
		}
	}
	return checked
}
