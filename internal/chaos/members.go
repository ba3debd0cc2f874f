package chaos

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/horizonmesh/horizon/discovery/kube"
	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
)

// Namespace holds every service the suite creates.
const Namespace = "demo"

// ServicePort is every seeded service's port (and its endpoints' port).
const ServicePort = 7070

// Member is one member cluster: a real kube-apiserver and what the suite
// seeded in it.
type Member struct {
	Name, Network string
	GatewayIP     string
	Cluster       *kubetest.Cluster
	Kubeconfig    string // admin kubeconfig file

	proxy *tcpProxy // with Options.Proxied: the path Horizon reaches the apiserver by

	index int
	mu    sync.Mutex
	eps   map[string]int // service -> endpoints in its slice
	pods  map[string]bool
}

// StartMembers starts n member clusters m0..m(n-1) with o, network net-mI,
// each with an east-west gateway at 198.51.100.(I+1).
func StartMembers(t testing.TB, n int, o kubetest.Options) []*Member {
	t.Helper()
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("m%d", i)
	}
	var out []*Member
	for i, c := range kubetest.StartWith(t, o, names...) {
		m := &Member{Name: c.Name, Network: "net-" + c.Name, GatewayIP: fmt.Sprintf("198.51.100.%d", i+1),
			Cluster: c, index: i, eps: map[string]int{}, pods: map[string]bool{}}
		m.Kubeconfig = filepath.Join(t.TempDir(), c.Name+".kubeconfig")
		if err := kubetest.WriteKubeconfig(m.Kubeconfig, c.Config); err != nil {
			t.Fatal(err)
		}
		if err := m.seedGateway(t.Context()); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// Hang makes the member's apiserver a hung TCP peer to Horizon
// (Options.Proxied only): connections stay open, no byte moves.
func (m *Member) Hang() { m.proxy.Freeze() }

// Unhang lets the bytes flow again.
func (m *Member) Unhang() { m.proxy.Thaw() }

// Cut resets every connection Horizon holds to the member's apiserver
// (Options.Proxied only); Horizon's clients dial again at once. Watches
// opened before a fault (RBAC revoked, etcd compacted) are not ended by the
// apiserver; a reset makes Horizon open them again and meet it.
func (m *Member) Cut() { m.proxy.Cut() }

// proxied points the member's kubeconfig at a TCP proxy in front of its
// apiserver (the server certificate is for 127.0.0.1, so TLS still checks).
func (m *Member) proxied(t testing.TB) {
	t.Helper()
	u, err := url.Parse(m.Cluster.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	p, err := newTCPProxy(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	m.proxy = p
	cfg := rest.CopyConfig(m.Cluster.Config)
	cfg.Host = "https://" + p.Addr()
	if err := kubetest.WriteKubeconfig(m.Kubeconfig, cfg); err != nil {
		t.Fatal(err)
	}
}

// MemberFlag is the member's `horizon serve --member` value.
func (m *Member) MemberFlag() string {
	return fmt.Sprintf("name=%s,network=%s,kubeconfig=%s", m.Name, m.Network, m.Kubeconfig)
}

func (m *Member) seedGateway(ctx context.Context) error {
	k := m.Cluster.Kube.CoreV1()
	for _, ns := range []string{"horizon-system", Namespace} {
		if _, err := k.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("member %s: namespace %s: %w", m.Name, ns, err)
		}
	}
	svc, err := k.Services("horizon-system").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "eastwest", Labels: map[string]string{kube.LabelGatewayNetwork: m.Network}},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Name: "tls", Port: 15443}}},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("member %s: gateway: %w", m.Name, err)
	}
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: m.GatewayIP}}
	if _, err := k.Services("horizon-system").UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("member %s: gateway status: %w", m.Name, err)
	}
	return nil
}

// EndpointAddr is endpoint e of service s in member m: 10.m.s.e (e < 250).
func (m *Member) EndpointAddr(s, e int) string { return fmt.Sprintf("10.%d.%d.%d", m.index, s, e+1) }

// ServiceName is the name of seeded service s.
func ServiceName(s int) string { return fmt.Sprintf("svc-%d", s) }

// AddService creates service s with endpoints ready endpoints (pods with
// mutual TLS) and, if export, its ServiceExport.
func (m *Member) AddService(ctx context.Context, s, endpoints int, export bool) error {
	name := ServiceName(s)
	if _, err := m.Cluster.Kube.CoreV1().Services(Namespace).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "grpc", Port: ServicePort, AppProtocol: ptr.To("grpc")}}},
	}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("member %s: service %s: %w", m.Name, name, err)
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name + "-x", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("grpc"), Port: ptr.To[int32](ServicePort)}},
	}
	if _, err := m.Cluster.Kube.DiscoveryV1().EndpointSlices(Namespace).Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("member %s: endpointslice %s: %w", m.Name, slice.Name, err)
	}
	if err := m.Scale(ctx, s, endpoints); err != nil {
		return err
	}
	if export {
		return m.Export(ctx, s)
	}
	return nil
}

// Export creates service s's ServiceExport.
func (m *Member) Export(ctx context.Context, s int) error {
	_, err := m.Cluster.MCS.MulticlusterV1beta1().ServiceExports(Namespace).Create(ctx,
		&mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Name: ServiceName(s)}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("member %s: export %s: %w", m.Name, ServiceName(s), err)
	}
	return nil
}

// Endpoints is how many endpoints service s has (as last Scaled).
func (m *Member) Endpoints(s int) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.eps[ServiceName(s)]
}

// Scale sets service s's slice to endpoints 0..n-1 (EndpointAddr), each
// backed by a pod with mutual TLS. The caller records removals in a Ledger
// first when n shrinks.
func (m *Member) Scale(ctx context.Context, s, n int) error {
	name := ServiceName(s)
	var eps []discoveryv1.Endpoint
	for e := range n {
		pod := fmt.Sprintf("%s-%d", name, e)
		m.mu.Lock()
		have := m.pods[pod]
		m.mu.Unlock()
		if !have {
			if _, err := m.Cluster.Kube.CoreV1().Pods(Namespace).Create(ctx, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: pod, Labels: map[string]string{kube.LabelTLSMode: kube.TLSModeMTLS}},
				Spec:       corev1.PodSpec{ServiceAccountName: name, Containers: []corev1.Container{{Name: "app", Image: "app"}}},
			}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("member %s: pod %s: %w", m.Name, pod, err)
			}
			m.mu.Lock()
			m.pods[pod] = true
			m.mu.Unlock()
		}
		eps = append(eps, discoveryv1.Endpoint{
			Addresses:  []string{m.EndpointAddr(s, e)},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: Namespace, Name: pod},
		})
	}
	slices := m.Cluster.Kube.DiscoveryV1().EndpointSlices(Namespace)
	sl, err := slices.Get(ctx, name+"-x", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("member %s: endpointslice %s-x: %w", m.Name, name, err)
	}
	sl.Endpoints = eps
	if _, err := slices.Update(ctx, sl, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("member %s: endpointslice %s-x: %w", m.Name, name, err)
	}
	m.mu.Lock()
	m.eps[name] = n
	m.mu.Unlock()
	return nil
}

// Objects is what the oracle reads of one member: its API objects as its
// apiserver lists them.
type Objects struct {
	Member, Network string
	Services        []corev1.Service
	Slices          []discoveryv1.EndpointSlice
	Exports         []mcsv1beta1.ServiceExport
	Gateways        []corev1.Service // Services labelled as a network's east-west gateway, any namespace
	Pods            []corev1.Pod
}

// List reads the member's objects from its apiserver.
func (m *Member) List(ctx context.Context) (Objects, error) {
	o := Objects{Member: m.Name, Network: m.Network}
	k := m.Cluster.Kube
	svcs, err := k.CoreV1().Services(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return o, fmt.Errorf("member %s: list services: %w", m.Name, err)
	}
	for _, s := range svcs.Items {
		if _, ok := s.Labels[kube.LabelGatewayNetwork]; ok {
			o.Gateways = append(o.Gateways, s)
		} else {
			o.Services = append(o.Services, s)
		}
	}
	sl, err := k.DiscoveryV1().EndpointSlices(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return o, fmt.Errorf("member %s: list endpointslices: %w", m.Name, err)
	}
	o.Slices = sl.Items
	ex, err := m.Cluster.MCS.MulticlusterV1beta1().ServiceExports(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return o, fmt.Errorf("member %s: list serviceexports: %w", m.Name, err)
	}
	o.Exports = ex.Items
	pods, err := k.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return o, fmt.Errorf("member %s: list pods: %w", m.Name, err)
	}
	o.Pods = pods.Items
	return o, nil
}
