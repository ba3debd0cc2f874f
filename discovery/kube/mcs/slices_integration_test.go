package mcs_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/kube"
	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
	"github.com/horizonmesh/horizon/discovery/kube/mcs"
	"github.com/horizonmesh/horizon/internal/testkit"
)

// TestSlicesIntegration runs the Kubernetes source and one controller
// against three real member clusters on two networks (east and central on
// net-a, west on net-b): MCS EndpointSlices appear in every importing
// member with the endpoints of its network, a one-endpoint change is one
// write per importing member, slices Horizon does not manage are left alone,
// an orphan is collected at start-up, and the unexport deletes the slices.
func TestSlicesIntegration(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three API servers")
	}
	leaks := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leaks) })

	clusters := kubetest.Start(t, "east", "west", "central")
	east, west, central := clusters[0], clusters[1], clusters[2]
	network := map[string]string{"east": "net-a", "central": "net-a", "west": "net-b"}
	ctx := context.Background()
	for _, c := range clusters {
		mustCreate(t, errOf(c.Kube.CoreV1().Namespaces().Create(ctx, namespace("demo"), metav1.CreateOptions{})))
	}

	// Before the controller starts: an orphan of Horizon's (its service is
	// not exported) and a slice of another controller's with the labels of
	// the slices Horizon will write.
	orphan := mcsSlice("gone-east-ipv4-0", "gone", "east", mcs.ControllerName, "10.9.0.1")
	mustCreate(t, errOf(central.Kube.DiscoveryV1().EndpointSlices("demo").Create(ctx, orphan, metav1.CreateOptions{})))
	other, err := central.Kube.DiscoveryV1().EndpointSlices("demo").Create(ctx, mcsSlice("echo-other", "echo", "east", "mcs-controller.example.com", "10.9.0.2"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	var log *slog.Logger
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	var latest atomic.Pointer[discovery.ClusterSet]
	var ctrl atomic.Pointer[mcs.Controller]
	src := kube.NewSource(kube.SourceOptions{Logger: log, OnUpdate: func(cs *discovery.ClusterSet) {
		latest.Store(cs)
		if c := ctrl.Load(); c != nil {
			c.Notify()
		}
	}})
	for _, c := range clusters {
		if err := src.Set(kube.MemberConfig{Name: c.Name, Network: network[c.Name], Rest: c.Config}); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	c, err := mcs.New(mcs.Config{
		Members: func() []mcs.Member {
			var out []mcs.Member
			for _, m := range src.SyncedMembers() {
				out = append(out, m)
			}
			return out
		},
		ClusterSet: latest.Load,
		Resync:     time.Second,
		Logger:     log,
		Metrics:    mcs.NewMetrics(reg),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctrl.Store(c)
	runCtx, stop := context.WithCancel(ctx)
	srcDone, ctrlDone := make(chan error, 1), make(chan error, 1)
	go func() { srcDone <- src.Run(runCtx) }()
	go func() { ctrlDone <- c.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-ctrlDone; err != nil {
			t.Error(err)
		}
		<-srcDone
	})

	step(t, "orphan collected at start-up", func(t *testing.T) {
		testkit.Eventually(t, 20*time.Second, "the orphan deleted", func() error {
			_, err := central.Kube.DiscoveryV1().EndpointSlices("demo").Get(ctx, orphan.Name, metav1.GetOptions{})
			if !apierrors.IsNotFound(err) {
				return fmt.Errorf("orphan: %v", err)
			}
			return nil
		})
	})

	step(t, "slices in every importing member", func(t *testing.T) {
		for _, sc := range []struct {
			c   *kubetest.Cluster
			eps []discoveryv1.Endpoint
		}{
			{east, []discoveryv1.Endpoint{
				{Addresses: []string{"10.1.0.1"}, Hostname: ptr("web-0"), Zone: ptr("zone-a")},
				{Addresses: []string{"10.1.0.2"}, Hostname: ptr("web-1"), Zone: ptr("zone-b")},
				{Addresses: []string{"10.1.0.3"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(false), Serving: ptr(true), Terminating: ptr(true)}},
			}},
			{west, []discoveryv1.Endpoint{{Addresses: []string{"10.2.0.1"}}, {Addresses: []string{"10.2.0.2"}}}},
		} {
			mustCreate(t, errOf(sc.c.Kube.CoreV1().Services("demo").Create(ctx, svc("echo", corev1.ServicePort{Name: "http", Port: 80}), metav1.CreateOptions{})))
			mustCreate(t, errOf(sc.c.Kube.DiscoveryV1().EndpointSlices("demo").Create(ctx, &discoveryv1.EndpointSlice{
				ObjectMeta:  metav1.ObjectMeta{Name: "echo-abcde", Labels: map[string]string{discoveryv1.LabelServiceName: "echo"}},
				AddressType: discoveryv1.AddressTypeIPv4,
				Endpoints:   sc.eps,
				Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080)), Protocol: ptr(corev1.ProtocolTCP)}},
			}, metav1.CreateOptions{})))
			mustCreate(t, errOf(sc.c.MCS.MulticlusterV1beta1().ServiceExports("demo").Create(ctx, svcExport("echo"), metav1.CreateOptions{})))
		}
		eastSlice := "echo-east-ipv4-0: 10.1.0.1(web-0,zone-a,ready),10.1.0.2(web-1,zone-b,ready),10.1.0.3(serving,terminating)"
		want := map[string][]string{
			"east":    {eastSlice},
			"central": {eastSlice},
			"west":    {"echo-west-ipv4-0: 10.2.0.1(ready),10.2.0.2(ready)"},
		}
		testkit.Eventually(t, 20*time.Second, "MCS slices", func() error {
			for _, c := range clusters {
				got, err := horizonSlices(ctx, c, "echo")
				if err != nil {
					return err
				}
				if !slices.Equal(got, want[c.Name]) {
					return fmt.Errorf("%s: slices %q, want %q", c.Name, got, want[c.Name])
				}
			}
			return nil
		})
		// Split horizon, on the ServiceImports.
		testkit.Eventually(t, 10*time.Second, "left-out annotations", func() error {
			for name, want := range map[*kubetest.Cluster]string{east: "2", central: "2", west: "3"} {
				im, err := name.MCS.MulticlusterV1beta1().ServiceImports("demo").Get(ctx, "echo", metav1.GetOptions{})
				if err != nil {
					return err
				}
				if got := im.Annotations[mcs.AnnotationEndpointsLeftOut]; got != want {
					return fmt.Errorf("%s: %s=%q, want %q", name.Name, mcs.AnnotationEndpointsLeftOut, got, want)
				}
				if r := im.Annotations[mcs.AnnotationEndpointsLeftOutReason]; !strings.Contains(r, "network") {
					return fmt.Errorf("%s: reason %q", name.Name, r)
				}
			}
			return nil
		})
		if n := metric(t, reg, "horizon_mcs_endpoints_left_out", map[string]string{"cluster": "central"}); n != 2 {
			t.Errorf("horizon_mcs_endpoints_left_out{cluster=central} = %v, want 2", n)
		}
		// Labels, ports and the address type of one slice in full.
		es, err := central.Kube.DiscoveryV1().EndpointSlices("demo").Get(ctx, "echo-east-ipv4-0", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range map[string]string{
			"multicluster.kubernetes.io/service-name":   "echo",
			"multicluster.kubernetes.io/source-cluster": "east",
			"endpointslice.kubernetes.io/managed-by":    "mcs-controller.horizon.io",
			"app.kubernetes.io/managed-by":              "horizon",
		} {
			if es.Labels[k] != v {
				t.Errorf("label %s=%q, want %q", k, es.Labels[k], v)
			}
		}
		if _, ok := es.Labels[discoveryv1.LabelServiceName]; ok {
			t.Error("an MCS slice carries kubernetes.io/service-name")
		}
		if es.AddressType != discoveryv1.AddressTypeIPv4 || len(es.Ports) != 1 || *es.Ports[0].Name != "http" || *es.Ports[0].Port != 8080 {
			t.Errorf("address type %s, ports %v", es.AddressType, es.Ports)
		}
	})

	step(t, "one endpoint change, one write per importing member", func(t *testing.T) {
		// Let the rounds settle, then count.
		time.Sleep(2 * time.Second)
		before := map[string]float64{}
		for _, c := range clusters {
			before[c.Name] = sliceWrites(t, reg, c.Name)
		}
		lags := histogramCount(t, reg, "horizon_mcs_endpointslice_lag_seconds")
		es, err := east.Kube.DiscoveryV1().EndpointSlices("demo").Get(ctx, "echo-abcde", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		es.Endpoints[1].Conditions.Ready = ptr(false)
		if _, err := east.Kube.DiscoveryV1().EndpointSlices("demo").Update(ctx, es, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		want := "echo-east-ipv4-0: 10.1.0.1(web-0,zone-a,ready),10.1.0.2(web-1,zone-b),10.1.0.3(serving,terminating)"
		testkit.Eventually(t, 10*time.Second, "the change in east and central", func() error {
			for _, c := range []*kubetest.Cluster{east, central} {
				got, err := horizonSlices(ctx, c, "echo")
				if err != nil {
					return err
				}
				if !slices.Equal(got, []string{want}) {
					return fmt.Errorf("%s: %q", c.Name, got)
				}
			}
			return nil
		})
		time.Sleep(3 * time.Second) // a few more rounds: nothing more is written
		for c, n := range map[string]float64{"east": 1, "central": 1, "west": 0} {
			if got := sliceWrites(t, reg, c) - before[c]; got != n {
				t.Errorf("%s: %v slice writes for a one-endpoint change, want %v", c, got, n)
			}
		}
		if histogramCount(t, reg, "horizon_mcs_endpointslice_lag_seconds") <= lags {
			t.Error("horizon_mcs_endpointslice_lag_seconds observed nothing")
		}
	})

	step(t, "a member that is down holds up no other", func(t *testing.T) {
		if err := central.StopAPIServer(); err != nil {
			t.Fatal(err)
		}
		es, err := east.Kube.DiscoveryV1().EndpointSlices("demo").Get(ctx, "echo-abcde", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		es.Endpoints[1].Conditions.Ready = ptr(true)
		if _, err := east.Kube.DiscoveryV1().EndpointSlices("demo").Update(ctx, es, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		want := []string{"echo-east-ipv4-0: 10.1.0.1(web-0,zone-a,ready),10.1.0.2(web-1,zone-b,ready),10.1.0.3(serving,terminating)"}
		testkit.Eventually(t, 10*time.Second, "east updated, central's write failed", func() error {
			got, err := horizonSlices(ctx, east, "echo")
			if err != nil {
				return err
			}
			if !slices.Equal(got, want) {
				return fmt.Errorf("east: %q", got)
			}
			if metric(t, reg, "horizon_mcs_endpointslice_writes_total", map[string]string{"cluster": "central", "result": "failed"}) == 0 {
				return fmt.Errorf("no failed write counted for central")
			}
			return nil
		})
		if err := central.StartAPIServer(); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, 30*time.Second, "central updated once back", func() error {
			got, err := horizonSlices(ctx, central, "echo")
			if err != nil {
				return err
			}
			if !slices.Equal(got, want) {
				return fmt.Errorf("central: %q", got)
			}
			return nil
		})
	})

	step(t, "unexport deletes the slices", func(t *testing.T) {
		begin := time.Now()
		for _, c := range []*kubetest.Cluster{east, west} {
			if err := c.MCS.MulticlusterV1beta1().ServiceExports("demo").Delete(ctx, "echo", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		testkit.Eventually(t, 10*time.Second, "no MCS slices", func() error {
			for _, c := range clusters {
				got, err := horizonSlices(ctx, c, "echo")
				if err != nil {
					return err
				}
				if len(got) != 0 {
					return fmt.Errorf("%s: %q", c.Name, got)
				}
			}
			return nil
		})
		t.Logf("slices gone %v after the unexport", time.Since(begin).Round(time.Millisecond))
		if n := metric(t, reg, "horizon_mcs_endpointslice_writes_total", map[string]string{"result": "deleted"}); n < 4 {
			t.Errorf("%v deletes counted, want at least 4 (3 slices and the orphan)", n)
		}
	})

	step(t, "orphan collected on resync", func(t *testing.T) {
		// Nothing in the ClusterSet changes: only a resync finds it.
		late := mcsSlice("late-west-ipv4-0", "late", "west", mcs.ControllerName, "10.9.0.3")
		mustCreate(t, errOf(east.Kube.DiscoveryV1().EndpointSlices("demo").Create(ctx, late, metav1.CreateOptions{})))
		testkit.Eventually(t, 10*time.Second, "the orphan deleted", func() error {
			_, err := east.Kube.DiscoveryV1().EndpointSlices("demo").Get(ctx, late.Name, metav1.GetOptions{})
			if !apierrors.IsNotFound(err) {
				return fmt.Errorf("orphan: %v", err)
			}
			return nil
		})
	})

	step(t, "unmanaged slice untouched", func(t *testing.T) {
		now, err := central.Kube.DiscoveryV1().EndpointSlices("demo").Get(ctx, other.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if now.ResourceVersion != other.ResourceVersion {
			t.Errorf("the other controller's slice changed: resourceVersion %s -> %s", other.ResourceVersion, now.ResourceVersion)
		}
	})
}

// mcsSlice is an MCS EndpointSlice managed by controller.
func mcsSlice(name, service, source, controller, addr string) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			mcs.LabelServiceName: service, mcs.LabelSourceCluster: source, discoveryv1.LabelManagedBy: controller,
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{addr}}},
	}
}

// horizonSlices renders the member's MCS slices of a service managed by
// Horizon, sorted: "name: address(hostname,zone,conditions),...".
func horizonSlices(ctx context.Context, c *kubetest.Cluster, service string) ([]string, error) {
	list, err := c.Kube.DiscoveryV1().EndpointSlices("demo").List(ctx, metav1.ListOptions{
		LabelSelector: mcs.LabelServiceName + "=" + service + "," + discoveryv1.LabelManagedBy + "=" + mcs.ControllerName,
	})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, es := range list.Items {
		var eps []string
		for _, e := range es.Endpoints {
			var attrs []string
			for _, p := range []*string{e.Hostname, e.Zone} {
				if p != nil {
					attrs = append(attrs, *p)
				}
			}
			for name, p := range map[string]*bool{"ready": e.Conditions.Ready, "serving": e.Conditions.Serving, "terminating": e.Conditions.Terminating} {
				if p != nil && *p && (name == "ready" || !*e.Conditions.Ready) {
					attrs = append(attrs, name)
				}
			}
			slices.Sort(attrs[min(len(attrs), countNonNil(e.Hostname, e.Zone)):])
			eps = append(eps, fmt.Sprintf("%s(%s)", strings.Join(e.Addresses, "/"), strings.Join(attrs, ",")))
		}
		out = append(out, es.Name+": "+strings.Join(eps, ","))
	}
	slices.Sort(out)
	return out, nil
}

func countNonNil(ps ...*string) int {
	n := 0
	for _, p := range ps {
		if p != nil {
			n++
		}
	}
	return n
}

func sliceWrites(t *testing.T, reg *prometheus.Registry, cluster string) float64 {
	t.Helper()
	n := 0.0
	for _, r := range []string{"created", "updated", "deleted"} {
		n += metric(t, reg, "horizon_mcs_endpointslice_writes_total", map[string]string{"cluster": cluster, "result": r})
	}
	return n
}

func histogramCount(t *testing.T, reg *prometheus.Registry, name string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				return m.GetHistogram().GetSampleCount()
			}
		}
	}
	return 0
}
