package kube

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
	"github.com/horizonmesh/horizon/internal/testkit"
)

// recorder keeps every ClusterSet a Source publishes.
type recorder struct {
	mu  sync.Mutex
	all []*discovery.ClusterSet
}

func (r *recorder) update(cs *discovery.ClusterSet) {
	r.mu.Lock()
	r.all = append(r.all, cs)
	r.mu.Unlock()
}

func (r *recorder) latest() *discovery.ClusterSet {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.all) == 0 {
		return nil
	}
	return r.all[len(r.all)-1]
}

// mark returns the number of ClusterSets seen so far; since(mark) the ones after.
func (r *recorder) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.all)
}

func (r *recorder) since(mark int) []*discovery.ClusterSet {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*discovery.ClusterSet(nil), r.all[mark:]...)
}

// wait bounds how long a test waits for an event; it does not time one.
const wait = 30 * time.Second

// seed creates a Service with ready endpoints (and their Pods, accepting
// mutual TLS) in a member cluster; envtest runs no controllers, so the test
// writes the EndpointSlice itself.
func seed(t *testing.T, c *kubetest.Cluster, ns, name string, export bool, addrs ...string) {
	t.Helper()
	ctx := t.Context()
	kc := c.Kube
	_, _ = kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if _, err := kc.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "grpc", Port: 7070, AppProtocol: ptr.To("grpc")}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("grpc"), Port: ptr.To[int32](7070)}},
	}
	for i, a := range addrs {
		pod := fmt.Sprintf("%s-%d", name, i)
		if _, err := kc.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: pod, Labels: map[string]string{LabelTLSMode: TLSModeMTLS}},
			Spec:       corev1.PodSpec{ServiceAccountName: name, Containers: []corev1.Container{{Name: "app", Image: "app"}}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{a},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: pod},
		})
	}
	if _, err := kc.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if export {
		if _, err := c.MCS.MulticlusterV1beta1().ServiceExports(ns).Create(ctx, &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

func endpointsOf(cs *discovery.ClusterSet, cluster string, key discovery.ServiceKey) int {
	if cs == nil {
		return -1
	}
	c, ok := cs.Cluster(cluster)
	if !ok {
		return -1
	}
	s, ok := c.Service(key)
	if !ok {
		return 0
	}
	return len(s.Endpoints)
}

func memberConfig(c *kubetest.Cluster, network string) MemberConfig {
	return MemberConfig{Name: c.Name, Network: network, Rest: rest.CopyConfig(c.Config), Origin: "test"}
}

// TestSourceOnRealClusters drives a Source over three real member clusters
// through export changes, an API server outage, a credential rotation, a
// removal, and a second replica started during an outage.
func TestSourceOnRealClusters(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three kube-apiservers")
	}
	cl := kubetest.Start(t, "east", "west", "central")
	east, west, central := cl[0], cl[1], cl[2]
	echo := discovery.ServiceKey{Namespace: "demo", Name: "echo"}
	local := discovery.ServiceKey{Namespace: "demo", Name: "local-only"}
	seed(t, east, "demo", "echo", true, "10.0.1.1", "10.0.1.2")
	seed(t, west, "demo", "echo", true, "10.1.1.1")
	seed(t, central, "demo", "local-only", false, "10.2.1.1")

	rec := &recorder{}
	reg := prometheus.NewRegistry()
	metrics := NewMetrics(reg)
	src := NewSource(SourceOptions{OnUpdate: rec.update, Metrics: metrics})
	for _, m := range []MemberConfig{memberConfig(east, "net-east"), memberConfig(west, "net-west"), memberConfig(central, "net-central")} {
		if err := src.Set(m); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- src.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})

	t.Run("exports", func(t *testing.T) {
		testkit.Eventually(t, wait, "echo exported by east and west", func() bool {
			ex, ok := exportOf(rec.latest(), echo)
			return ok && len(ex.Clusters) == 2
		})
		cs := rec.latest()
		if endpointsOf(cs, "east", echo) != 2 || endpointsOf(cs, "west", echo) != 1 {
			t.Fatalf("endpoints east %d west %d", endpointsOf(cs, "east", echo), endpointsOf(cs, "west", echo))
		}
		if _, ok := cs.Export(local); ok {
			t.Fatal("an unexported service is part of the ClusterSet")
		}
		if endpointsOf(cs, "central", local) != 1 {
			t.Fatal("central's own service is missing from its cluster")
		}
		c, _ := cs.Cluster("east")
		s, _ := c.Service(echo)
		if !s.Endpoints[0].MTLS || s.Endpoints[0].ServiceAccount != "echo" {
			t.Fatalf("pod identity not read: %+v", s.Endpoints[0])
		}
	})

	// A member is rebuilt only when something of its own changed: the
	// Source publishes every second, and untouched members reuse their
	// snapshot.
	t.Run("untouched members are not rebuilt", func(t *testing.T) {
		type counts struct {
			gen               uint64
			builds, snapshots int
		}
		read := func() map[string]counts {
			out := map[string]counts{}
			for _, name := range []string{"east", "west", "central"} {
				m, ok := src.Member(name)
				if !ok {
					t.Fatalf("no member %s", name)
				}
				m.mu.Lock()
				out[name] = counts{m.gen, m.builds, m.snapshots}
				m.mu.Unlock()
			}
			return out
		}
		testkit.Eventually(t, wait, "every member synced", func() bool {
			for _, name := range []string{"east", "west", "central"} {
				if _, ok := src.Member(name); !ok {
					return false
				}
			}
			return true
		})
		before := read()
		var after map[string]counts
		testkit.Eventually(t, wait, "two more snapshots of every member", func() bool {
			after = read()
			for name, b := range before {
				if after[name].snapshots < b.snapshots+2 {
					return false
				}
			}
			return true
		})
		checked := 0
		for name, b := range before {
			a := after[name]
			if a.gen != b.gen {
				continue // an event meanwhile: a build is due
			}
			checked++
			if a.builds != b.builds {
				t.Errorf("%s: rebuilt %d times in %d snapshots without an event", name, a.builds-b.builds, a.snapshots-b.snapshots)
			}
		}
		if checked == 0 {
			t.Fatal("every member had events meanwhile; nothing was checked")
		}
	})

	t.Run("unexport", func(t *testing.T) {
		if err := west.MCS.MulticlusterV1beta1().ServiceExports("demo").Delete(t.Context(), "echo", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, wait, "west's export gone", func() bool {
			ex, ok := exportOf(rec.latest(), echo)
			return ok && len(ex.Clusters) == 1 && ex.Clusters[0] == "east"
		})
		if _, err := west.MCS.MulticlusterV1beta1().ServiceExports("demo").Create(t.Context(), &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Name: "echo"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, wait, "west's export back", func() bool {
			ex, ok := exportOf(rec.latest(), echo)
			return ok && len(ex.Clusters) == 2
		})
	})

	t.Run("stale keeps endpoints", func(t *testing.T) {
		mark := rec.mark()
		if err := west.StopAPIServer(); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, wait, "west stale", func() bool {
			cs := rec.latest()
			c, ok := cs.Cluster("west")
			return ok && c.Stale
		})
		if got := testutil.ToFloat64(metrics.state.WithLabelValues("west", "stale")); got != 1 {
			t.Errorf("cluster_state{west,stale} = %v", got)
		}
		if err := west.StartAPIServer(); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, wait, "west synced again", func() bool {
			cs := rec.latest()
			c, ok := cs.Cluster("west")
			return ok && !c.Stale
		})
		for i, cs := range rec.since(mark) {
			if n := endpointsOf(cs, "west", echo); n != 1 {
				t.Fatalf("ClusterSet %d during the outage has %d west endpoints: a gap", i, n)
			}
		}
	})

	t.Run("rotation has no gap", func(t *testing.T) {
		mark := rec.mark()
		rotated := memberConfig(west, "net-west")
		rotated.Origin = "rotated"
		if err := src.Set(rotated); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, wait, "rotation done", func() bool {
			for _, m := range src.Members() {
				if m.Name == "west" {
					return !m.Rotating && m.Origin == "rotated"
				}
			}
			return false
		})
		for i, cs := range rec.since(mark) {
			if n := endpointsOf(cs, "west", echo); n != 1 {
				t.Fatalf("ClusterSet %d during rotation has %d west endpoints", i, n)
			}
		}
	})

	t.Run("removal releases watchers", func(t *testing.T) {
		// Baseline: the goroutines of a Source without west. Measure it by
		// removing west, then adding it back and removing it again.
		src.Remove("west")
		testkit.Eventually(t, wait, "west gone", func() bool { return endpointsOf(rec.latest(), "west", echo) == -1 })
		baseline := settledGoroutines()
		if err := src.Set(memberConfig(west, "net-west")); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, wait, "west back", func() bool { return endpointsOf(rec.latest(), "west", echo) == 1 })
		with := runtime.NumGoroutine()
		src.Remove("west")
		testkit.Eventually(t, wait, "west gone again", func() bool { return endpointsOf(rec.latest(), "west", echo) == -1 })
		// A member runs about 70 goroutines; the other members' probes add a
		// transient one or two, hence the slack.
		testkit.Eventually(t, wait, "goroutines back to the baseline", func() error {
			if n := runtime.NumGoroutine(); n > baseline+2 {
				var buf bytes.Buffer
				_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
				return fmt.Errorf("goroutines %d, not back to %d (were %d with west):\n%s", n, baseline, with, buf.String())
			}
			return nil
		})
		if err := src.Set(memberConfig(west, "net-west")); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, wait, "west back", func() bool { return endpointsOf(rec.latest(), "west", echo) == 1 })
	})

	t.Run("a new replica waits for every member", func(t *testing.T) {
		if err := west.StopAPIServer(); err != nil {
			t.Fatal(err)
		}
		rec2 := &recorder{}
		replica := NewSource(SourceOptions{OnUpdate: rec2.update})
		for _, m := range []MemberConfig{memberConfig(east, "net-east"), memberConfig(west, "net-west"), memberConfig(central, "net-central")} {
			if err := replica.Set(m); err != nil {
				t.Fatal(err)
			}
		}
		ctx2, cancel2 := context.WithCancel(context.Background())
		done2 := make(chan error)
		go func() { done2 <- replica.Run(ctx2) }()
		defer func() { cancel2(); <-done2 }()
		// East and central sync; the replica must still publish nothing.
		testkit.Eventually(t, wait, "east and central synced in the replica", func() bool {
			n := 0
			for _, m := range replica.Members() {
				if m.State == Synced {
					n++
				}
			}
			return n == 2
		})
		time.Sleep(time.Second)
		if rec2.latest() != nil || replica.Ready() {
			t.Fatal("a replica published a ClusterSet without west")
		}
		if err := west.StartAPIServer(); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, wait, "the replica publishes with west", func() bool { return endpointsOf(rec2.latest(), "west", echo) == 1 })
	})
}

// runSource runs a Source until the test ends.
func runSource(t *testing.T, src *Source) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- src.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// TestClusterIDAndStaleTTL: a member that publishes its id in the
// ClusterProperty cluster.clusterset.k8s.io is known by it; and with a TTL,
// a member unreachable for longer loses its endpoints (and gets them back).
func TestClusterIDAndStaleTTL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	c := kubetest.Start(t, "west")[0]
	seed(t, c, "demo", "echo", true, "10.1.1.1")
	installClusterProperty(t, c, "west-published-id")

	rec := &recorder{}
	m := NewMetrics(prometheus.NewRegistry())
	src := NewSource(SourceOptions{OnUpdate: rec.update, Metrics: m, StaleTTL: time.Second})
	if err := src.Set(memberConfig(c, "net-west")); err != nil {
		t.Fatal(err)
	}
	runSource(t, src)
	echo := discovery.ServiceKey{Namespace: "demo", Name: "echo"}
	testkit.Eventually(t, wait, "the cluster known by its published id", func() bool {
		return endpointsOf(rec.latest(), "west-published-id", echo) == 1
	})
	if err := c.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, wait, "endpoints expired after the TTL", func() bool {
		return endpointsOf(rec.latest(), "west-published-id", echo) == 0
	})
	if testutil.ToFloat64(m.expiredC.WithLabelValues("west")) == 0 {
		t.Error("stale_expired_total not counted")
	}
	if err := c.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, wait, "endpoints back", func() bool {
		return endpointsOf(rec.latest(), "west-published-id", echo) == 1
	})
}

// installClusterProperty installs a minimal about.k8s.io ClusterProperty CRD
// (the about-api module is not available here) and the id property.
func installClusterProperty(t *testing.T, c *kubetest.Cluster, id string) {
	t.Helper()
	ctx := t.Context()
	ext, err := apiextclient.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	preserve := true
	crd := &apiextv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "clusterproperties.about.k8s.io", Annotations: map[string]string{
			"api-approved.kubernetes.io": "https://github.com/kubernetes/enhancements/pull/3084"}},
		Spec: apiextv1.CustomResourceDefinitionSpec{
			Group: "about.k8s.io", Scope: apiextv1.ClusterScoped,
			Names: apiextv1.CustomResourceDefinitionNames{Plural: "clusterproperties", Singular: "clusterproperty", Kind: "ClusterProperty", ListKind: "ClusterPropertyList"},
			Versions: []apiextv1.CustomResourceDefinitionVersion{{Name: "v1alpha1", Served: true, Storage: true,
				Schema: &apiextv1.CustomResourceValidation{OpenAPIV3Schema: &apiextv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: &preserve}}}},
		},
	}
	if _, err := ext.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "about.k8s.io/v1alpha1", "kind": "ClusterProperty",
		"metadata": map[string]any{"name": ClusterIDProperty}, "spec": map[string]any{"value": id},
	}}
	testkit.Eventually(t, wait, "ClusterProperty created", func() bool {
		_, err := dyn.Resource(ClusterPropertyGVR).Create(ctx, obj, metav1.CreateOptions{})
		return err == nil
	})
}

// settledGoroutines waits for the goroutine count to stop falling.
func settledGoroutines() int {
	n := runtime.NumGoroutine()
	for range 20 {
		time.Sleep(100 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m >= n {
			return m
		}
		n = m
	}
	return n
}

func exportOf(cs *discovery.ClusterSet, k discovery.ServiceKey) (*discovery.ExportedService, bool) {
	if cs == nil {
		return nil, false
	}
	return cs.Export(k)
}
