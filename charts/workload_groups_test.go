package charts_test

import (
	"fmt"
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/horizonmesh/horizon/internal/testkit/manifests"
)

// workloadGroupsRBAC names the Role and RoleBinding that let the control
// plane read WorkloadGroups in one namespace (templates/workload-groups.yaml).
const workloadGroupsRBAC = "horizon-workload-groups"

// workloadGroupsRules are all that Role may grant: reading WorkloadGroups,
// and updating their status (the Accepted condition).
var workloadGroupsRules = []rbacv1.PolicyRule{
	{APIGroups: []string{"mesh.horizon.io"}, Resources: []string{"workloadgroups"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{"mesh.horizon.io"}, Resources: []string{"workloadgroups/status"}, Verbs: []string{"update"}},
}

// workloadGroupsNamespaces are the namespaces whose WorkloadGroups the case
// means the control plane to read: controlPlane.workloadGroups.namespaces,
// or the release's; none unless controlPlane.workloadGroups.enabled.
func workloadGroupsNamespaces(c renderCase) []string {
	if c.value("controlPlane.enabled", true) != true || c.value("controlPlane.workloadGroups.enabled", false) != true {
		return nil
	}
	var out []string
	list, _ := c.value("controlPlane.workloadGroups.namespaces", []any{}).([]any)
	for _, ns := range list {
		out = append(out, fmt.Sprint(ns))
	}
	if len(out) == 0 {
		out = []string{namespace}
	}
	return out
}

// grantsOnlyWorkloadGroups: obj is the Role horizon-workload-groups with
// workloadGroupsRules alone, or the RoleBinding of that Role to the control
// plane's ServiceAccount alone.
func grantsOnlyWorkloadGroups(obj runtime.Object) bool {
	switch o := obj.(type) {
	case *rbacv1.Role:
		return o.Name == workloadGroupsRBAC && slices.EqualFunc(o.Rules, workloadGroupsRules, ruleEqual)
	case *rbacv1.RoleBinding:
		return o.Name == workloadGroupsRBAC && o.RoleRef == (rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: workloadGroupsRBAC}) &&
			slices.Equal(o.Subjects, []rbacv1.Subject{{Kind: "ServiceAccount", Name: "horizon", Namespace: namespace}})
	}
	return false
}

// TestWorkloadGroupsContract: with controlPlane.workloadGroups.enabled,
// horizon serve gets --workload-groups-crd and exactly one
// --workload-groups-namespace per namespace the values list (the release's
// by default), and each of those namespaces, and no other, has the Role
// horizon-workload-groups granting get, list and watch on WorkloadGroups and
// update on their status and nothing else, bound to the control plane's ServiceAccount alone. No other
// Role or ClusterRole of the chart grants anything on mesh.horizon.io.
// Without the value, none of it is rendered.
func TestWorkloadGroupsContract(t *testing.T) {
	enabled := 0
	for _, c := range renderCases(t) {
		t.Run(c.name, func(t *testing.T) {
			want := workloadGroupsNamespaces(c)
			if len(want) > 0 {
				enabled++
			}
			if c.value("controlPlane.enabled", true) == true {
				_, ctr := serveContainer(t, c)
				crd := manifests.FlagValues(ctr.Args, "--workload-groups-crd")
				if len(want) > 0 && !slices.Equal(crd, []string{"true"}) || len(want) == 0 && len(crd) > 0 {
					t.Errorf("--workload-groups-crd %q, want it once exactly when enabled (namespaces %q)", crd, want)
				}
				if got := manifests.FlagValues(ctr.Args, "--workload-groups-namespace"); !slices.Equal(got, want) {
					t.Errorf("--workload-groups-namespace %q, want %q", got, want)
				}
			}
			sa := rbacv1.Subject{Kind: "ServiceAccount", Name: "horizon", Namespace: namespace}
			var roles, bindings []string
			for _, r := range objects[*rbacv1.Role](c) {
				if r.Name == workloadGroupsRBAC {
					roles = append(roles, r.Namespace)
					if !slices.EqualFunc(r.Rules, workloadGroupsRules, ruleEqual) {
						t.Errorf("Role %s/%s grants %+v, want only %+v", r.Namespace, r.Name, r.Rules, workloadGroupsRules)
					}
					continue
				}
				for _, rule := range r.Rules {
					if slices.Contains(rule.APIGroups, "mesh.horizon.io") || slices.Contains(rule.APIGroups, "*") {
						t.Errorf("Role %s/%s grants %+v", r.Namespace, r.Name, rule)
					}
				}
			}
			for _, r := range objects[*rbacv1.ClusterRole](c) {
				for _, rule := range r.Rules {
					if slices.Contains(rule.APIGroups, "mesh.horizon.io") || slices.Contains(rule.APIGroups, "*") {
						t.Errorf("ClusterRole %s grants %+v", r.Name, rule)
					}
				}
			}
			for _, b := range objects[*rbacv1.RoleBinding](c) {
				if b.Name != workloadGroupsRBAC && b.RoleRef.Name != workloadGroupsRBAC {
					continue
				}
				bindings = append(bindings, b.Namespace)
				if b.Name != workloadGroupsRBAC || b.RoleRef != (rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: workloadGroupsRBAC}) || !slices.Equal(b.Subjects, []rbacv1.Subject{sa}) {
					t.Errorf("RoleBinding %s/%s binds %+v to %+v, want only the control plane's ServiceAccount to the Role %s", b.Namespace, b.Name, b.RoleRef, b.Subjects, workloadGroupsRBAC)
				}
			}
			slices.Sort(want)
			slices.Sort(roles)
			slices.Sort(bindings)
			if !slices.Equal(roles, want) || !slices.Equal(bindings, want) {
				t.Errorf("Roles %s in %q, RoleBindings in %q: want both in %q", workloadGroupsRBAC, roles, bindings, want)
			}
		})
	}
	if enabled < 2 {
		t.Errorf("%d cases enable controlPlane.workloadGroups, want one with namespaces and one without", enabled)
	}
}
