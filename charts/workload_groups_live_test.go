package charts_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
	"github.com/horizonmesh/horizon/discovery/workload"
	"github.com/horizonmesh/horizon/internal/testkit"
	"github.com/horizonmesh/horizon/internal/testkit/manifests"
)

// TestWorkloadGroupsRBACSuffices: in a real kube-apiserver holding the
// chart's WorkloadGroup CRD and every RBAC object ci/workload-groups renders,
// the authorizer (SubjectAccessReview) lets the control plane's
// ServiceAccount get, list and watch WorkloadGroups and update their status
// (not the objects) in shop and payments and nowhere else, and Horizon's WorkloadGroup watcher, run as the control plane's ServiceAccount
// with the namespaces of the Deployment's --workload-groups-namespace flags,
// syncs and serves the groups of those namespaces (shop, payments) and not
// those of another (other), writing their Accepted condition; a list of every namespace, what the watcher
// does without the flag, is forbidden to that ServiceAccount.
func TestWorkloadGroupsRBACSuffices(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	var c renderCase
	for _, rc := range renderCases(t) {
		if rc.name == "workload-groups" {
			c = rc
		}
	}
	dep, ctr := serveContainer(t, c)
	namespaces := manifests.FlagValues(ctr.Args, "--workload-groups-namespace")
	if !slices.Equal(namespaces, []string{"shop", "payments"}) {
		t.Fatalf("--workload-groups-namespace %q, want shop and payments (ci/workload-groups-values.yaml)", namespaces)
	}
	cluster := kubetest.Start(t, "east")[0]
	ctx := t.Context()
	for _, ns := range []string{namespace, "shop", "payments", "other"} {
		if _, err := cluster.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	installCRD(t, cluster, filepath.Join(chartDir, "crds", "mesh.horizon.io_workloadgroups.yaml"))
	rbac := cluster.Kube.RbacV1()
	for _, r := range objects[*rbacv1.Role](c) {
		if _, err := rbac.Roles(r.Namespace).Create(ctx, r, metav1.CreateOptions{}); err != nil {
			t.Fatalf("Role %s/%s: %v", r.Namespace, r.Name, err)
		}
	}
	for _, b := range objects[*rbacv1.RoleBinding](c) {
		if _, err := rbac.RoleBindings(b.Namespace).Create(ctx, b, metav1.CreateOptions{}); err != nil {
			t.Fatalf("RoleBinding %s/%s: %v", b.Namespace, b.Name, err)
		}
	}
	for _, r := range objects[*rbacv1.ClusterRole](c) {
		if _, err := rbac.ClusterRoles().Create(ctx, r, metav1.CreateOptions{}); err != nil {
			t.Fatalf("ClusterRole %s: %v", r.Name, err)
		}
	}
	for _, b := range objects[*rbacv1.ClusterRoleBinding](c) {
		if _, err := rbac.ClusterRoleBindings().Create(ctx, b, metav1.CreateOptions{}); err != nil {
			t.Fatalf("ClusterRoleBinding %s: %v", b.Name, err)
		}
	}
	admin := dynamic.NewForConfigOrDie(cluster.Config).Resource(workload.WorkloadGroupResource)
	for _, ns := range []string{"shop", "payments", "other"} {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "mesh.horizon.io/v1alpha1", "kind": "WorkloadGroup",
			"metadata": map[string]any{"namespace": ns, "name": ns + "-vms"},
			"spec":     map[string]any{"service": ns, "cluster": "vm-west", "ports": []any{map[string]any{"port": int64(8080)}}},
		}}
		if _, err := admin.Namespace(ns).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	asHorizon := rest.CopyConfig(cluster.Config)
	asHorizon.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + namespace + ":" + dep.Spec.Template.Spec.ServiceAccountName,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
	}
	// The apiserver's authorizer: each verb the watcher uses (a list and
	// watch, or a watch-list stream) in the listed namespaces, none of them
	// elsewhere or cluster-wide.
	user := asHorizon.Impersonate
	for _, ns := range []string{"shop", "payments", "other", ""} {
		for _, access := range []struct {
			verb, subresource string
			listed            bool // allowed in the listed namespaces
		}{{"get", "", true}, {"list", "", true}, {"watch", "", true}, {"update", "status", true}, {"update", "", false}, {"patch", "status", false}} {
			sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User: user.UserName, Groups: user.Groups,
				ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: access.verb, Group: "mesh.horizon.io", Resource: "workloadgroups", Subresource: access.subresource},
			}}
			got, err := cluster.Kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if want := access.listed && slices.Contains(namespaces, ns); got.Status.Allowed != want {
				t.Errorf("%s WorkloadGroups (subresource %q) in namespace %q: allowed %v, want %v", access.verb, access.subresource, ns, got.Status.Allowed, want)
			}
		}
	}
	client := dynamic.NewForConfigOrDie(asHorizon)
	if _, err := client.Resource(workload.WorkloadGroupResource).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("the control plane lists WorkloadGroups of every namespace: %v, want forbidden", err)
	}

	var mu sync.Mutex
	var updates [][]string
	w := &workload.CRDWatcher{Client: client, Namespaces: namespaces, WriteStatus: true, OnUpdate: func(gs []discovery.WorkloadGroup) {
		var names []string
		for _, g := range gs {
			names = append(names, g.Key().String())
		}
		mu.Lock()
		updates = append(updates, names)
		mu.Unlock()
	}}
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(rctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	want := []string{"payments/payments-vms", "shop/shop-vms"}
	testkit.Eventually(t, 30*time.Second, "the groups of shop and payments", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(updates) == 0 {
			return fmt.Errorf("no update")
		}
		// The first update follows every namespace's sync: it is complete.
		if !slices.Equal(updates[0], want) {
			t.Errorf("first update %v, want %v", updates[0], want)
		}
		return nil
	})
	// The status writes the Role allows: each served object says so.
	for _, ns := range []string{"shop", "payments"} {
		testkit.Eventually(t, 30*time.Second, ns+"/"+ns+"-vms Accepted", func() error {
			u, err := admin.Namespace(ns).Get(ctx, ns+"-vms", metav1.GetOptions{})
			if err != nil {
				return err
			}
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			for _, c := range conds {
				if m, _ := c.(map[string]any); m["type"] == workload.ConditionAccepted && m["status"] == "True" && m["reason"] == workload.ReasonValid {
					return nil
				}
			}
			return fmt.Errorf("status %v, want Accepted=True", u.Object["status"])
		})
	}
}
