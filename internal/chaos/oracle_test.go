package chaos

import (
	"maps"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

// member builds one member's objects: service echo with the given
// endpoints (address -> mTLS), exported or not, and its network's gateway.
func member(name, network, gw string, export bool, eps map[string]bool) Objects {
	o := Objects{Member: name, Network: network}
	o.Services = []corev1.Service{{ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: "demo"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "grpc", Port: 7070}}}}}
	sl := discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "echo-x", Namespace: "demo", Labels: map[string]string{"kubernetes.io/service-name": "echo"}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("grpc"), Port: ptr.To[int32](7070)}}}
	for a, mtls := range eps {
		o.Pods = append(o.Pods, corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: a, Namespace: "demo", Labels: map[string]string{"security.horizon.io/tlsMode": map[bool]string{true: "mtls", false: "disabled"}[mtls]}}})
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, TargetRef: &corev1.ObjectReference{Namespace: "demo", Name: a}})
	}
	o.Slices = []discoveryv1.EndpointSlice{sl}
	if export {
		o.Exports = []mcsv1beta1.ServiceExport{{ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: "demo"}}}
	}
	g := corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "eastwest", Namespace: "horizon-system", Labels: map[string]string{"networking.horizon.io/gateway-network": network}},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "tls", Port: 15443}}}}
	g.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: gw}}
	o.Gateways = []corev1.Service{g}
	return o
}

// The oracle's rules, on the README's own example (kube_e2e_test's
// TestE2EKubernetesMembers checks the server against the same table).
func TestOracle(t *testing.T) {
	east := member("east", "net-east", "198.51.100.1", true, map[string]bool{"10.0.1.1": true, "10.0.1.2": true, "10.0.1.3": false})
	west := member("west", "net-west", "198.51.100.2", true, map[string]bool{"10.1.1.1": true})
	central := member("central", "net-central", "198.51.100.3", false, map[string]bool{"10.2.1.1": true})
	all := []Objects{east, west, central}
	name := ClusterSetName("echo", "demo", 7070)
	for _, tt := range []struct {
		network string
		want    map[string]uint32
	}{
		// Own network directly (mTLS or not); the other network's gateway
		// weighted by its mTLS endpoints; an unexported member nowhere.
		{"net-east", map[string]uint32{"10.0.1.1:7070": 1, "10.0.1.2:7070": 1, "10.0.1.3:7070": 1, "198.51.100.2:15443": 1}},
		{"net-west", map[string]uint32{"10.1.1.1:7070": 1, "198.51.100.1:15443": 2}},
		{"net-central", map[string]uint32{"198.51.100.1:15443": 2, "198.51.100.2:15443": 1}},
	} {
		got := Oracle(all, tt.network)
		if !maps.Equal(got[name], tt.want) || len(got) != 1 {
			t.Errorf("%s: got %v, want %s: %v", tt.network, got, name, tt.want)
		}
		if d := Diff(got, View{name: tt.want}); d != "" {
			t.Errorf("%s: Diff of equal views: %s", tt.network, d)
		}
	}
	if d := Diff(View{}, View{name: {"10.1.1.1:7070": 1}}); d == "" {
		t.Error("Diff of a missing endpoint is empty")
	}
}
