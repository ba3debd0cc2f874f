package mcs_test

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	k8stesting "k8s.io/client-go/testing"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"
	mcsfake "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned/fake"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/kube"
	"github.com/horizonmesh/horizon/discovery/kube/mcs"
	"github.com/horizonmesh/horizon/internal/testkit"
)

// fakeMember is a member cluster backed by a fake MCS clientset; its "cache"
// is the clientset's current content. Services are fixed.
type fakeMember struct {
	id         string
	namespaces []string
	services   []*corev1.Service
	client     *mcsfake.Clientset

	// While frozen, the "cache" keeps showing what it held at freeze: an
	// informer that lags behind the controller's writes.
	mu      sync.Mutex
	frozen  bool
	exports []*mcsv1beta1.ServiceExport
	imps    []*mcsv1beta1.ServiceImport
}

func (m *fakeMember) freeze() {
	exports, imports := m.ServiceExports(), m.ServiceImports()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.frozen, m.exports, m.imps = true, exports, imports
}

func newFakeMember(id string, namespaces []string, services []*corev1.Service, objs ...runtime.Object) *fakeMember {
	c := mcsfake.NewSimpleClientset(objs...)
	// The fake tracker keeps neither resource versions nor UIDs; the API
	// server does, and the controller relies on them.
	var rv atomic.Int64
	rv.Store(100)
	c.PrependReactor("*", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		var obj runtime.Object
		switch a := a.(type) {
		case k8stesting.CreateAction:
			obj = a.GetObject()
		case k8stesting.UpdateAction:
			obj = a.GetObject()
		default:
			return false, nil, nil
		}
		m, err := meta.Accessor(obj)
		if err != nil {
			return false, nil, nil
		}
		m.SetResourceVersion(strconv.FormatInt(rv.Add(1), 10))
		if a.GetVerb() == "create" && m.GetUID() == "" {
			m.SetUID(types.UID(id + "-" + m.GetName()))
		}
		return false, nil, nil
	})
	return &fakeMember{id: id, namespaces: namespaces, services: services, client: c}
}

func (m *fakeMember) ID() string               { return m.id }
func (m *fakeMember) MCS() mcsclient.Interface { return m.client }
func (m *fakeMember) Namespaces() []string     { return m.namespaces }
func (m *fakeMember) ServiceExports() []*mcsv1beta1.ServiceExport {
	m.mu.Lock()
	if m.frozen {
		defer m.mu.Unlock()
		return m.exports
	}
	m.mu.Unlock()
	l, err := m.client.MulticlusterV1beta1().ServiceExports("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		panic(err)
	}
	var out []*mcsv1beta1.ServiceExport
	for i := range l.Items {
		out = append(out, &l.Items[i])
	}
	return out
}
func (m *fakeMember) ServiceImports() []*mcsv1beta1.ServiceImport {
	m.mu.Lock()
	if m.frozen {
		defer m.mu.Unlock()
		return m.imps
	}
	m.mu.Unlock()
	l, err := m.client.MulticlusterV1beta1().ServiceImports("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		panic(err)
	}
	var out []*mcsv1beta1.ServiceImport
	for i := range l.Items {
		out = append(out, &l.Items[i])
	}
	return out
}
func (m *fakeMember) Service(ns, name string) (*corev1.Service, bool) {
	for _, s := range m.services {
		if s.Namespace == ns && s.Name == name {
			return s, true
		}
	}
	return nil, false
}

// writes counts the member's write requests.
func (m *fakeMember) writes() int {
	n := 0
	for _, a := range m.client.Actions() {
		switch a.GetVerb() {
		case "create", "update", "patch", "delete":
			n++
		}
	}
	return n
}

func (m *fakeMember) imports(t *testing.T) map[string]*mcsv1beta1.ServiceImport {
	t.Helper()
	out := map[string]*mcsv1beta1.ServiceImport{}
	for _, im := range m.ServiceImports() {
		out[im.Namespace+"/"+im.Name] = im
	}
	return out
}

func service(ns, name string, port int32) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeClusterIP, SessionAffinity: corev1.ServiceAffinityNone,
			Ports: []corev1.ServicePort{{Name: "http", Port: port, Protocol: corev1.ProtocolTCP}},
		},
	}
}

func export(ns, name string, created time.Time) *mcsv1beta1.ServiceExport {
	return &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{
		Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(created), ResourceVersion: "1", UID: types.UID("export-" + name),
	}}
}

// clusterSetOf builds the ClusterSet the source would publish for members.
func clusterSetOf(t *testing.T, members ...*fakeMember) *discovery.ClusterSet {
	t.Helper()
	var clusters []discovery.Cluster
	for _, m := range members {
		c, problems := kube.Build(kube.MemberConfig{Name: m.id, Network: "net-" + m.id}, kube.Objects{Services: m.services, Exports: m.ServiceExports()})
		if len(problems) > 0 {
			t.Fatal(problems)
		}
		clusters = append(clusters, c)
	}
	cs, err := discovery.New(clusters)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// metric returns the value of a counter or gauge whose labels include
// labels (0 when absent).
func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			if m.Counter != nil {
				sum += m.Counter.GetValue()
			} else {
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}

type harness struct {
	ctrl    *mcs.Controller
	reg     *prometheus.Registry
	logs    *testkit.Buffer
	cs      atomic.Pointer[discovery.ClusterSet]
	members []mcs.Member
	stop    func()
}

func start(t *testing.T, members ...*fakeMember) *harness {
	t.Helper()
	h := &harness{reg: prometheus.NewRegistry(), logs: &testkit.Buffer{}}
	for _, m := range members {
		h.members = append(h.members, m)
	}
	h.cs.Store(clusterSetOf(t, members...))
	ctrl, err := mcs.New(mcs.Config{
		Members:    func() []mcs.Member { return h.members },
		ClusterSet: h.cs.Load,
		Resync:     20 * time.Millisecond,
		RetryDelay: 20 * time.Millisecond,
		Logger:     slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics:    mcs.NewMetrics(h.reg),
	})
	if err != nil {
		t.Fatal(err)
	}
	h.ctrl = ctrl
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- ctrl.Run(ctx) }()
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(h.stop)
	return h
}

func (h *harness) rounds(t *testing.T) float64 {
	return metric(t, h.reg, "horizon_mcs_rounds_total", nil)
}

func conditions(ex *mcsv1beta1.ServiceExport) string {
	var parts []string
	for _, c := range ex.Status.Conditions {
		parts = append(parts, c.Type+"="+string(c.Status)+"/"+c.Reason)
	}
	return strings.Join(parts, " ")
}

// TestControllerWritesOnlyChanges: the controller converges, then writes
// nothing on further rounds; a change is written, and lastTransitionTime only
// moves with a status.
func TestControllerWritesOnlyChanges(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	east := newFakeMember("east", []string{"demo"}, []*corev1.Service{service("demo", "echo", 80)}, export("demo", "echo", t0))
	west := newFakeMember("west", []string{"demo"}, nil)
	h := start(t, east, west)

	testkit.Eventually(t, 5*time.Second, "imports and conditions", func() error {
		for _, m := range []*fakeMember{east, west} {
			im := m.imports(t)["demo/echo"]
			if im == nil || len(im.Status.Clusters) != 1 || len(im.Spec.IPs) != 1 {
				return errors.New(m.id + ": import incomplete")
			}
			if im.Labels[mcs.LabelManagedBy] != mcs.ManagedByHorizon {
				return errors.New(m.id + ": import not labelled")
			}
		}
		if got := conditions(east.ServiceExports()[0]); got != "Valid=True/Valid Ready=True/Exported Conflict=False/NoConflicts" {
			return errors.New("conditions " + got)
		}
		return nil
	})
	// Converged: several more rounds write nothing.
	writes := east.writes() + west.writes()
	r := h.rounds(t)
	testkit.Eventually(t, 5*time.Second, "more rounds", func() error {
		if h.rounds(t) < r+5 {
			return errors.New("waiting")
		}
		return nil
	})
	if got := east.writes() + west.writes(); got != writes {
		t.Fatalf("%d writes after convergence", got-writes)
	}
	if n := metric(t, h.reg, "horizon_mcs_writes_total", map[string]string{"result": "conflict"}); n != 0 {
		t.Errorf("%v conflicts: the controller wrote over stale state", n)
	}
	validSince := east.ServiceExports()[0].Status.Conditions[0].LastTransitionTime

	// The Service goes away: Valid turns False (its transition time moves),
	// and with the export out of the ClusterSet the imports go.
	east.services = nil
	h.cs.Store(clusterSetOf(t, east, west))
	h.ctrl.Notify()
	testkit.Eventually(t, 5*time.Second, "NoService and no imports", func() error {
		if got := conditions(east.ServiceExports()[0]); got != "Valid=False/NoService Ready=False/Failed Conflict=False/NoConflicts" {
			return errors.New("conditions " + got)
		}
		if len(east.imports(t))+len(west.imports(t)) != 0 {
			return errors.New("imports remain")
		}
		return nil
	})
	valid := meta.FindStatusCondition(east.ServiceExports()[0].Status.Conditions, "Valid")
	if !valid.LastTransitionTime.After(validSince.Time) && !valid.LastTransitionTime.Equal(&validSince) {
		t.Errorf("Valid's transition time went back: %v, was %v", valid.LastTransitionTime, validSince)
	}
	conflict := meta.FindStatusCondition(east.ServiceExports()[0].Status.Conditions, "Conflict")
	if conflict.ObservedGeneration != east.ServiceExports()[0].Generation {
		t.Errorf("observedGeneration %d", conflict.ObservedGeneration)
	}
	h.stop()
	if n := metric(t, h.reg, "horizon_mcs_writes_total", map[string]string{"kind": "ServiceImport", "result": "deleted"}); n != 2 {
		t.Errorf("%v imports deleted, want 2", n)
	}
	if n := metric(t, h.reg, "horizon_mcs_leader", nil); n != 0 {
		t.Errorf("leader gauge %v after stopping", n)
	}
}

// TestControllerIsolatesFailures: a write the API server rejects is logged
// with the object's name and counted, and the other writes go on; an
// unreachable member costs one failed request per round, not one per object.
func TestControllerIsolatesFailures(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	east := newFakeMember("east", []string{"demo"},
		[]*corev1.Service{service("demo", "echo", 80), service("demo", "cart", 80)},
		export("demo", "echo", t0), export("demo", "cart", t0))
	west := newFakeMember("west", []string{"demo"}, nil)
	west.client.PrependReactor("create", "serviceimports", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.(k8stesting.CreateAction).GetObject().(*mcsv1beta1.ServiceImport).Name == "echo" {
			return true, nil, apierrors.NewInvalid(schema.GroupKind{Group: "multicluster.x-k8s.io", Kind: "ServiceImport"}, "echo", nil)
		}
		return false, nil, nil
	})
	central := newFakeMember("central", []string{"demo"}, nil)
	central.client.PrependReactor("*", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetVerb() == "list" {
			return false, nil, nil
		}
		return true, nil, errors.New("dial tcp 192.0.2.1:443: connect: connection refused")
	})
	h := start(t, east, west, central)

	testkit.Eventually(t, 5*time.Second, "the other imports", func() error {
		if east.imports(t)["demo/echo"] == nil || east.imports(t)["demo/cart"] == nil {
			return errors.New("east incomplete")
		}
		if im := west.imports(t)["demo/cart"]; im == nil || len(im.Status.Clusters) == 0 {
			return errors.New("west's cart missing")
		}
		if h.rounds(t) < 3 {
			return errors.New("waiting for rounds")
		}
		return nil
	})
	h.stop()
	if west.imports(t)["demo/echo"] != nil {
		t.Fatal("west's echo was created despite the error")
	}
	if n := metric(t, h.reg, "horizon_mcs_writes_total", map[string]string{"kind": "ServiceImport", "result": "error"}); n < 2 {
		t.Errorf("%v errors counted", n)
	}
	logs := h.logs.String()
	for _, want := range []string{`"cluster":"west","namespace":"demo","name":"echo"`, `"cluster":"central","namespace":"demo"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("no log line with %s", want)
		}
	}
	rounds, attempts := int(metric(t, h.reg, "horizon_mcs_rounds_total", nil)), central.writes()
	if attempts > rounds {
		t.Errorf("unreachable central: %d write attempts in %d rounds", attempts, rounds)
	}
	if n := metric(t, h.reg, "horizon_mcs_rounds_total", map[string]string{"result": "failed"}); n == 0 {
		t.Error("no failed round counted")
	}
}

// TestControllerRetriesConflicts: a 409 is retried on a later round.
func TestControllerRetriesConflicts(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	east := newFakeMember("east", []string{"demo"}, []*corev1.Service{service("demo", "echo", 80)}, export("demo", "echo", time.Now()))
	var failed atomic.Bool
	east.client.PrependReactor("update", "serviceexports", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if failed.CompareAndSwap(false, true) {
			return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "multicluster.x-k8s.io", Resource: "serviceexports"}, "echo", errors.New("the object has been modified"))
		}
		return false, nil, nil
	})
	h := start(t, east)
	testkit.Eventually(t, 5*time.Second, "conditions after a conflict", func() error {
		if got := conditions(east.ServiceExports()[0]); !strings.HasPrefix(got, "Valid=True/Valid") {
			return errors.New("conditions " + got)
		}
		return nil
	})
	h.stop()
	if n := metric(t, h.reg, "horizon_mcs_writes_total", map[string]string{"kind": "ServiceExport/status", "result": "conflict"}); n != 1 {
		t.Errorf("%v conflicts counted, want 1", n)
	}
}

// TestControllerLeavesForeignImports: an import someone else manages is
// neither updated nor deleted.
func TestControllerLeavesForeignImports(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	foreign := &mcsv1beta1.ServiceImport{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "echo", ResourceVersion: "1", Labels: map[string]string{mcs.LabelManagedBy: "someone"}},
		Spec:       mcsv1beta1.ServiceImportSpec{Type: mcsv1beta1.Headless, Ports: []mcsv1beta1.ServicePort{}},
	}
	gone := foreign.DeepCopy()
	gone.Name = "gone"
	east := newFakeMember("east", []string{"demo"}, []*corev1.Service{service("demo", "echo", 80)}, export("demo", "echo", time.Now()), foreign, gone)
	h := start(t, east)
	testkit.Eventually(t, 5*time.Second, "rounds", func() error {
		if h.rounds(t) < 3 {
			return errors.New("waiting")
		}
		return nil
	})
	h.stop()
	for _, a := range east.client.Actions() {
		if r := a.GetResource().Resource; r == "serviceimports" && a.GetVerb() != "list" {
			t.Errorf("%s %s on someone else's import", a.GetVerb(), r)
		}
	}
}

// TestControllerLaggingCache: while a member's cache has not caught up with
// the controller's writes, the controller neither repeats them nor writes
// over the versions it replaced.
func TestControllerLaggingCache(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	east := newFakeMember("east", []string{"demo"}, []*corev1.Service{service("demo", "echo", 80)}, export("demo", "echo", time.Now()))
	stale := newFakeMember("stale", []string{"demo"}, nil,
		&mcsv1beta1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "old", ResourceVersion: "7", UID: "old",
			Labels: map[string]string{mcs.LabelManagedBy: mcs.ManagedByHorizon}}})
	east.freeze()
	stale.freeze()
	h := start(t, east, stale)
	testkit.Eventually(t, 5*time.Second, "rounds", func() error {
		if h.rounds(t) < 5 {
			return errors.New("waiting")
		}
		return nil
	})
	h.stop()
	// east: the export's status, the import and its status; stale: the
	// same import and the deletion of the old one.
	if got := east.writes(); got != 3 {
		t.Errorf("east: %d writes, want 3", got)
	}
	if got := stale.writes(); got != 3 {
		t.Errorf("stale: %d writes, want 3", got)
	}
}
