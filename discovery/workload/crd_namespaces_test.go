package workload

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
	"github.com/horizonmesh/horizon/internal/testkit"
)

// TestCRDWatcherNamespaces runs against a real kube-apiserver with the
// chart's CRD, as a user that may only get, list and watch WorkloadGroups
// in the namespaces default and shop (a Role and RoleBinding in each, as
// the chart's controlPlane.workloadGroups renders): a watcher given those
// namespaces (one twice) syncs and serves their objects and not those of
// the namespace other, before and after changes. A watcher of every
// namespace could not even list as that user. That user may not write
// their status either: the watcher (WriteStatus on) tries each object, logs
// that once, and serves on.
func TestCRDWatcherNamespaces(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	c := kubetest.Start(t, "control")[0]
	installCRD(t, c)
	ctx := t.Context()
	const user = "workload-groups-reader"
	for _, ns := range []string{"shop", "other"} {
		if _, err := c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, ns := range []string{"default", "shop"} {
		role := &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "horizon-workload-groups"},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"mesh.horizon.io"}, Resources: []string{"workloadgroups"}, Verbs: []string{"get", "list", "watch"}}},
		}
		if _, err := c.Kube.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		binding := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "horizon-workload-groups"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
		}
		if _, err := c.Kube.RbacV1().RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	admin := dynamic.NewForConfigOrDie(c.Config).Resource(WorkloadGroupResource)
	create := func(ns, name string) {
		t.Helper()
		u := workloadGroup(ns, name, map[string]any{
			"service": name, "cluster": "vm-west", "ports": []any{map[string]any{"port": int64(8080)}},
		})
		if _, err := admin.Namespace(ns).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	create("default", "ratings")
	create("shop", "cart")
	create("other", "billing")

	restricted := rest.CopyConfig(c.Config)
	restricted.Impersonate = rest.ImpersonationConfig{UserName: user}
	var refused atomic.Int64 // status updates the apiserver refused
	restricted.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(r *http.Request) (*http.Response, error) {
			resp, err := rt.RoundTrip(r)
			if err == nil && r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/status") && resp.StatusCode == http.StatusForbidden {
				refused.Add(1)
			}
			return resp, err
		})
	}
	var logs syncBuffer
	// The user's rights are as meant: a list of every namespace is refused.
	if _, err := dynamic.NewForConfigOrDie(restricted).Resource(WorkloadGroupResource).List(ctx, metav1.ListOptions{}); err == nil {
		t.Fatal("the restricted user lists WorkloadGroups of every namespace")
	}

	var mu sync.Mutex
	var updates [][]string
	w := &CRDWatcher{
		Client:      dynamic.NewForConfigOrDie(restricted),
		Namespaces:  []string{"shop", "default", "shop"},
		WriteStatus: true,
		Log:         slog.New(slog.NewTextHandler(&logs, nil)),
		OnUpdate: func(gs []discovery.WorkloadGroup) {
			var names []string
			for _, g := range gs {
				names = append(names, g.Key().String())
			}
			mu.Lock()
			updates = append(updates, names)
			mu.Unlock()
		},
	}
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(rctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	last := func() ([]string, int) {
		mu.Lock()
		defer mu.Unlock()
		if len(updates) == 0 {
			return nil, 0
		}
		return updates[len(updates)-1], len(updates)
	}
	await := func(what string, want []string) {
		t.Helper()
		testkit.Eventually(t, 30*time.Second, what, func() error {
			if got, n := last(); n == 0 || !slices.Equal(got, want) {
				return fmt.Errorf("groups %v, want %v", got, want)
			}
			return nil
		})
	}
	// The first update comes after every informer synced: it holds all
	// that the watcher will ever see of the objects created before.
	await("the watched namespaces' groups", []string{"default/ratings", "shop/cart"})
	mu.Lock()
	first := updates[0]
	mu.Unlock()
	if !slices.Equal(first, []string{"default/ratings", "shop/cart"}) {
		t.Errorf("first update %v, want default/ratings and shop/cart only", first)
	}

	// Changes: one in the unwatched namespace, then one in a watched one.
	create("other", "payments")
	create("shop", "checkout")
	await("a new group in shop", []string{"default/ratings", "shop/cart", "shop/checkout"})
	if err := admin.Namespace("default").Delete(ctx, "ratings", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	await("after a delete in default", []string{"shop/cart", "shop/checkout"})
	// cart and checkout at least were tried (ratings perhaps deleted
	// first); one warning in all.
	testkit.Eventually(t, 30*time.Second, "refused status updates", func() error {
		if n := refused.Load(); n < 2 {
			return fmt.Errorf("%d refused status updates, want at least 2", n)
		}
		return nil
	})
	if n := strings.Count(logs.String(), "cannot write WorkloadGroup status"); n != 1 {
		t.Errorf("%d warnings about the refused status updates, want 1:\n%s", n, logs.String())
	}
	mu.Lock()
	defer mu.Unlock()
	for _, u := range updates {
		for _, name := range u {
			if name == "other/billing" || name == "other/payments" {
				t.Errorf("update %v holds a group of the unwatched namespace other", u)
			}
		}
	}
}
