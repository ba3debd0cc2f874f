package workload

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
	"github.com/horizonmesh/horizon/internal/testkit"
)

// installCRD installs the chart's WorkloadGroup CRD and waits until it is
// served.
func installCRD(t *testing.T, c *kubetest.Cluster) {
	t.Helper()
	data, err := os.ReadFile("../../charts/horizon/crds/mesh.horizon.io_workloadgroups.yaml")
	if err != nil {
		t.Fatal(err)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.Unmarshal(data, crd); err != nil {
		t.Fatal(err)
	}
	ext := apiextclient.NewForConfigOrDie(c.Config)
	if _, err := ext.ApiextensionsV1().CustomResourceDefinitions().Create(t.Context(), crd, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, "WorkloadGroup CRD established", func() error {
		got, err := ext.ApiextensionsV1().CustomResourceDefinitions().Get(t.Context(), crd.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range got.Status.Conditions {
			if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("not established")
	})
}

func workloadGroup(ns, name string, spec map[string]any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "mesh.horizon.io/v1alpha1", "kind": "WorkloadGroup",
		"metadata": map[string]any{"namespace": ns, "name": name},
		"spec":     spec,
	}}
}

// TestCRDWatcher runs against a real kube-apiserver with the chart's CRD:
// WorkloadGroup objects become workload groups; one whose spec the file's
// checks refuse is left out with an error naming it and counted, the
// others served; fixing it brings it in; deleting one takes it out.
func TestCRDWatcher(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	c := kubetest.Start(t, "control")[0]
	installCRD(t, c)
	client := dynamic.NewForConfigOrDie(c.Config)
	res := client.Resource(WorkloadGroupResource)
	ctx := t.Context()
	create := func(u *unstructured.Unstructured) {
		t.Helper()
		if _, err := res.Namespace(u.GetNamespace()).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	create(workloadGroup("default", "ratings-vms", map[string]any{
		"service": "ratings", "serviceAccount": "ratings", "cluster": "vm-west", "exported": true, "gracePeriod": "20s", "tokenReviewCluster": "east-1",
		"ports": []any{map[string]any{"name": "http", "port": int64(8080)}},
		"probe": map[string]any{"type": "HTTP", "port": int64(8080), "path": "/healthz", "interval": "2s"},
	}))
	// Valid for the API server's schema, refused by Horizon's checks: the
	// timeout is longer than the interval.
	bad := workloadGroup("default", "broken", map[string]any{
		"service": "billing", "cluster": "vm-west", "ports": []any{map[string]any{"port": int64(80)}},
		"probe": map[string]any{"type": "TCP", "port": int64(80), "interval": "1s", "timeout": "5s"},
	})
	create(bad)

	var mu sync.Mutex
	var latest []discovery.WorkloadGroup
	updates := 0
	rejected := NewCRDMetrics(prometheus.NewRegistry())
	w := &CRDWatcher{Client: client, Rejected: rejected, OnUpdate: func(g []discovery.WorkloadGroup) {
		mu.Lock()
		latest, updates = g, updates+1
		mu.Unlock()
	}}
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(rctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	names := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, g := range latest {
			out = append(out, g.Key().String())
		}
		return out
	}
	await := func(what string, want []string) {
		t.Helper()
		testkit.Eventually(t, 30*time.Second, what, func() error {
			if got := names(); !slices.Equal(got, want) {
				return fmt.Errorf("groups %v, want %v", got, want)
			}
			return nil
		})
	}
	await("the valid group", []string{"default/ratings-vms"})
	mu.Lock()
	g := latest[0]
	mu.Unlock()
	if g.Service != "ratings" || g.Cluster != "vm-west" || !g.Exported || g.GracePeriod != 20*time.Second || g.Probe == nil || g.Probe.Path != "/healthz" || g.Probe.Interval != 2*time.Second ||
		g.TokenReviewCluster != "east-1" { // the chart's schema keeps the field (an API server prunes fields it lacks)
		t.Errorf("group %+v (probe %+v)", g, g.Probe)
	}
	errs := w.Errors()
	if want := "WorkloadGroup default/broken: spec.probe.timeout: 5s is longer than the interval 1s"; errs["WorkloadGroup default/broken"] != want {
		t.Errorf("errors %v, want %q", errs, want)
	}
	if got := testutil.ToFloat64(rejected); got != 1 {
		t.Errorf("rejected = %v, want 1", got)
	}

	// Fixed: it comes in.
	cur, err := res.Namespace("default").Get(ctx, "broken", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	unstructured.SetNestedField(cur.Object, "500ms", "spec", "probe", "timeout")
	if _, err := res.Namespace("default").Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	await("the fixed group", []string{"default/broken", "default/ratings-vms"})
	if len(w.Errors()) != 0 {
		t.Errorf("errors after the fix: %v", w.Errors())
	}
	// Deleted: it goes.
	if err := res.Namespace("default").Delete(ctx, "ratings-vms", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	await("after a delete", []string{"default/broken"})
	if !strings.Contains(fmt.Sprint(names()), "broken") {
		t.Error("lost the other group")
	}
}
