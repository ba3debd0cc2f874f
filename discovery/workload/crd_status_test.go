package workload

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
	"github.com/horizonmesh/horizon/internal/testkit"
)

// TestCRDWatcherStatus runs against a real kube-apiserver with the chart's
// CRD: with WriteStatus, an object Horizon refuses gets Accepted=False
// (reason Invalid, the error naming the field, observedGeneration its
// generation) through the status subresource, a valid one Accepted=True;
// a change of another object writes nothing to an object whose condition
// is already right (its resourceVersion stays, and writing the status is
// not counted as a new rejection); fixing the object flips it to
// Accepted=True for its new generation.
func TestCRDWatcherStatus(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	c := kubetest.Start(t, "control")[0]
	installCRD(t, c)
	client := dynamic.NewForConfigOrDie(c.Config)
	res := client.Resource(WorkloadGroupResource).Namespace("default")
	ctx := t.Context()
	for _, u := range []*unstructured.Unstructured{
		workloadGroup("default", "ratings-vms", map[string]any{"service": "ratings", "cluster": "vm-west", "ports": []any{map[string]any{"port": int64(8080)}}}),
		workloadGroup("default", "broken", map[string]any{
			"service": "billing", "cluster": "vm-west", "ports": []any{map[string]any{"port": int64(80)}},
			"probe": map[string]any{"type": "TCP", "port": int64(80), "interval": "1s", "timeout": "5s"},
		}),
	} {
		if _, err := res.Create(ctx, u, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The watcher's client counts its status updates (PUT .../status).
	var writes atomic.Int64
	cfg := rest.CopyConfig(c.Config)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(r *http.Request) (*http.Response, error) {
			if r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/status") {
				writes.Add(1)
			}
			return rt.RoundTrip(r)
		})
	}
	rejected := NewCRDMetrics(prometheus.NewRegistry())
	w := &CRDWatcher{Client: dynamic.NewForConfigOrDie(cfg), Rejected: rejected, WriteStatus: true, OnUpdate: func([]discovery.WorkloadGroup) {}}
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(rctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	// await waits until name carries want (transition time aside) and
	// returns the object.
	await := func(name string, want metav1.Condition) *unstructured.Unstructured {
		t.Helper()
		var got *unstructured.Unstructured
		testkit.Eventually(t, 30*time.Second, name+" "+want.Reason, func() error {
			u, err := res.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			have := meta.FindStatusCondition(conditions(u), ConditionAccepted)
			if have == nil || have.Status != want.Status || have.Reason != want.Reason || have.Message != want.Message || have.ObservedGeneration != want.ObservedGeneration {
				return fmt.Errorf("Accepted %+v, want %+v", have, want)
			}
			if have.LastTransitionTime.IsZero() {
				return fmt.Errorf("Accepted %+v without lastTransitionTime", have)
			}
			got = u
			return nil
		})
		return got
	}
	invalid := metav1.Condition{Status: metav1.ConditionFalse, Reason: ReasonInvalid, Message: "spec.probe.timeout: 5s is longer than the interval 1s", ObservedGeneration: 1}
	broken := await("broken", invalid)
	if broken.GetGeneration() != 1 {
		t.Fatalf("broken has generation %d, want 1", broken.GetGeneration())
	}
	await("ratings-vms", metav1.Condition{Status: metav1.ConditionTrue, Reason: ReasonValid, Message: "served by Horizon", ObservedGeneration: 1})

	// Another object changes: the watcher looks at every object again
	// (broken before ratings-vms, by name) and writes only ratings-vms.
	before := writes.Load()
	vms, err := res.Get(ctx, "ratings-vms", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	unstructured.SetNestedField(vms.Object, "20s", "spec", "gracePeriod")
	if _, err := res.Update(ctx, vms, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	await("ratings-vms", metav1.Condition{Status: metav1.ConditionTrue, Reason: ReasonValid, Message: "served by Horizon", ObservedGeneration: 2})
	again := await("broken", invalid)
	if got := writes.Load() - before; got != 1 {
		t.Errorf("%d status updates after ratings-vms changed, want 1 (ratings-vms only)", got)
	}
	if again.GetResourceVersion() != broken.GetResourceVersion() {
		t.Errorf("broken's status written again with nothing changed: resourceVersion %s, was %s", again.GetResourceVersion(), broken.GetResourceVersion())
	}
	if got := testutil.ToFloat64(rejected); got != 1 {
		t.Errorf("rejected = %v, want 1 (one invalid generation)", got)
	}

	// Fixed: Accepted=True for generation 2.
	unstructured.SetNestedField(again.Object, "500ms", "spec", "probe", "timeout")
	if _, err := res.Update(ctx, again, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	await("broken", metav1.Condition{Status: metav1.ConditionTrue, Reason: ReasonValid, Message: "served by Horizon", ObservedGeneration: 2})
	if len(w.Errors()) != 0 {
		t.Errorf("errors after the fix: %v", w.Errors())
	}
}

// roundTripper is a function as an http.RoundTripper.
type roundTripper func(*http.Request) (*http.Response, error)

// RoundTrip calls f.
func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// syncBuffer is a bytes.Buffer for a logger and a test at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String is what was written.
func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
