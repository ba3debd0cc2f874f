package kube

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
	"github.com/horizonmesh/horizon/internal/testkit"
)

// TestMalformedEndpointSlicesOnRealAPIServer writes malformed EndpointSlices
// to a real kube-apiserver. Those it refuses never reach Horizon (the
// conversion layer still handles them: testdata/convert/badinput.yaml);
// those it accepts are each a problem naming the slice, counted in
// horizon_kube_invalid_objects, and never take away the endpoints Horizon
// already knew.
func TestMalformedEndpointSlicesOnRealAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	c := kubetest.Start(t, "east")[0]
	seed(t, c, "demo", "echo", true, "10.0.1.1", "10.0.1.2")
	echo := discovery.ServiceKey{Namespace: "demo", Name: "echo"}
	_, rec, m, logs := watchEast(t, c)
	testkit.Eventually(t, wait, "echo's endpoints", func() bool { return endpointsOf(rec.latest(), "east", echo) == 2 })

	slice := func(name string, at discoveryv1.AddressType, port int32, addrs ...string) *discoveryv1.EndpointSlice {
		s := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: "echo"}},
			AddressType: at,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("grpc"), Port: ptr.To(port)}},
		}
		for _, a := range addrs {
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}})
		}
		return s
	}
	wantProblems := map[string]float64{}
	for _, tc := range []struct {
		slice  *discoveryv1.EndpointSlice
		reason string // the problem's reason when the apiserver accepts it; "" when it refuses it
	}{
		{slice("echo-fqdn", discoveryv1.AddressTypeFQDN, 7070, "db.example.com"), "fqdn"},
		{slice("echo-dup", discoveryv1.AddressTypeIPv4, 7070, "10.0.1.1"), "duplicate_endpoint"},
		{slice("echo-bad-ip", discoveryv1.AddressTypeIPv4, 7070, "not-an-ip"), ""},
		{slice("echo-mixed", discoveryv1.AddressTypeIPv4, 7070, "2001:db8::1"), ""},
		{slice("echo-v6-in-v4", discoveryv1.AddressTypeIPv6, 7070, "10.0.1.9"), ""},
		{slice("echo-port-0", discoveryv1.AddressTypeIPv4, 0, "10.0.1.3"), "bad_port"},
		{slice("echo-port-70000", discoveryv1.AddressTypeIPv4, 70000, "10.0.1.4"), "bad_port"},
	} {
		_, err := c.Kube.DiscoveryV1().EndpointSlices("demo").Create(t.Context(), tc.slice, metav1.CreateOptions{})
		if tc.reason == "" {
			if !apierrors.IsInvalid(err) {
				t.Errorf("%s: the apiserver answered %v, want Invalid (if it now accepts it, give the case its problem reason)", tc.slice.Name, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.slice.Name, err)
		}
		// Two cases share bad_port: wait for this one's own count and line.
		wantProblems[tc.reason]++
		testkit.Eventually(t, wait, tc.slice.Name+" counted", func() bool {
			return testutil.ToFloat64(m.invalid.WithLabelValues("east", "EndpointSlice", tc.reason)) >= wantProblems[tc.reason]
		})
		testkit.Eventually(t, wait, tc.slice.Name+" named in the log", func() error {
			if !strings.Contains(logs.String(), "namespace=demo name="+tc.slice.Name+" reason="+tc.reason) {
				return fmt.Errorf("no log names it:\n%s", logs.String())
			}
			return nil
		})
	}
	// A slice with nil ready (and nothing else) is ready: one endpoint more.
	if _, err := c.Kube.DiscoveryV1().EndpointSlices("demo").Create(t.Context(), slice("echo-nil-ready", discoveryv1.AddressTypeIPv4, 7070, "10.0.1.5"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, wait, "the nil-ready endpoint, ready", func() bool {
		c, ok := rec.latest().Cluster("east")
		if !ok {
			return false
		}
		svc, _ := c.Service(echo)
		for _, ep := range svc.Endpoints {
			if ep.Address == "10.0.1.5" {
				return ep.Ready && !ep.Terminating
			}
		}
		return false
	})
	if got := testutil.ToFloat64(m.invalid.WithLabelValues("east", "EndpointSlice", "bad_port")); got != 2 {
		t.Errorf("bad_port problems %v, want 2 (port 0 and port 70000)", got)
	}
	for _, cs := range rec.since(0) {
		if n := endpointsOf(cs, "east", echo); n < 2 {
			t.Fatalf("a ClusterSet held %d of echo's endpoints: a malformed slice took away known ones", n)
		}
	}
}

// TestMemberAPIVersions: a member whose ServiceExports are served at an older
// (v1alpha1) or newer (v1) version of the MCS API than the v1beta1 Horizon
// reads. The member waits, with a problem naming the resource and the
// versions the member serves, logged and counted; once the member serves
// v1beta1, it syncs and the problem goes.
func TestMemberAPIVersions(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	c := kubetest.Start(t, "east")[0]
	ext, err := apiextclient.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	crds := ext.ApiextensionsV1().CustomResourceDefinitions()
	const name = "serviceexports.multicluster.x-k8s.io"
	orig, err := crds.Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// replace swaps the ServiceExport CRD for one that serves only version v.
	replace := func(v string) {
		t.Helper()
		if err := crds.Delete(t.Context(), name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, wait, "CRD deleted", func() bool {
			_, err := crds.Get(t.Context(), name, metav1.GetOptions{})
			return apierrors.IsNotFound(err)
		})
		crd := &apiextv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: orig.Annotations}, Spec: *orig.Spec.DeepCopy()}
		crd.Spec.Versions = crd.Spec.Versions[:1]
		crd.Spec.Versions[0].Name, crd.Spec.Versions[0].Served, crd.Spec.Versions[0].Storage = v, true, true
		if _, err := crds.Create(t.Context(), crd, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, wait, "CRD established at "+v, func() bool {
			got, err := crds.Get(t.Context(), name, metav1.GetOptions{})
			if err != nil {
				return false
			}
			for _, cond := range got.Status.Conditions {
				if cond.Type == apiextv1.Established && cond.Status == apiextv1.ConditionTrue {
					return true
				}
			}
			return false
		})
	}
	replace("v1alpha1")

	src, _, m, logs := watchEast(t, c)
	notServed := func() float64 {
		return testutil.ToFloat64(m.invalid.WithLabelValues("east", "APIResource", ReasonAPINotServed))
	}
	for _, v := range []string{"v1alpha1", "v1"} {
		if v != "v1alpha1" {
			replace(v)
		}
		want := "does not serve serviceexports at multicluster.x-k8s.io/v1beta1 (it serves serviceexports at " + v + ")"
		testkit.Eventually(t, wait, "the problem logged for "+v, func() error {
			if strings.Contains(logs.String(), want) {
				return nil
			}
			return fmt.Errorf("no %q in the log:\n%s", want, logs.String())
		})
		if got := notServed(); got != 1 {
			t.Errorf("%s: horizon_kube_invalid_objects{kind=APIResource,reason=%s} = %v, want 1", v, ReasonAPINotServed, got)
		}
		if src.Ready() {
			t.Errorf("%s: the source published without the member's ServiceExports", v)
		}
	}
	// The member now serves v1beta1: it syncs, the problem goes.
	if err := crds.Delete(t.Context(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, wait, "CRD deleted", func() bool {
		_, err := crds.Get(t.Context(), name, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	if _, err := crds.Create(t.Context(), &apiextv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: orig.Annotations}, Spec: orig.Spec}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, time.Minute, "the member syncs", src.Ready)
	testkit.Eventually(t, wait, "the problem cleared", func() bool { return notServed() == 0 })
}

// TestMemberWithoutEndpointSlicesV1: a member that does not serve
// EndpointSlices at discovery.k8s.io/v1 (before Kubernetes 1.21 only
// v1beta1 existed, which 1.25 removed; this apiserver has it turned off).
// The member waits with a problem naming the resource; nothing is published
// without it.
func TestMemberWithoutEndpointSlicesV1(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	c := kubetest.StartWith(t, kubetest.Options{RuntimeConfig: "discovery.k8s.io/v1=false"}, "east")[0]
	src, _, m, logs := watchEast(t, c)
	want := "does not serve endpointslices at discovery.k8s.io/v1 (it serves endpointslices at no version)"
	testkit.Eventually(t, wait, "the problem logged", func() error {
		if strings.Contains(logs.String(), want) {
			return nil
		}
		return fmt.Errorf("no %q in the log:\n%s", want, logs.String())
	})
	if got := testutil.ToFloat64(m.invalid.WithLabelValues("east", "APIResource", ReasonAPINotServed)); got != 1 {
		t.Errorf("horizon_kube_invalid_objects{kind=APIResource,reason=%s} = %v, want 1", ReasonAPINotServed, got)
	}
	if src.Ready() {
		t.Error("the source published without the member's EndpointSlices")
	}
}

// watchEast runs a Source on cluster c as member east (network net-east)
// and returns it, what it publishes, its metrics and its log.
func watchEast(t *testing.T, c *kubetest.Cluster) (*Source, *recorder, *Metrics, *testkit.Buffer) {
	t.Helper()
	rec := &recorder{}
	m := NewMetrics(prometheus.NewRegistry())
	logs := &testkit.Buffer{}
	src := NewSource(SourceOptions{OnUpdate: rec.update, Metrics: m, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err := src.Set(memberConfig(c, "net-east")); err != nil {
		t.Fatal(err)
	}
	runSource(t, src)
	return src, rec, m, logs
}
