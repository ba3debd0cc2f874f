package kube

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/horizonmesh/horizon/bench/gen"
	"github.com/horizonmesh/horizon/bench/load"
	"github.com/horizonmesh/horizon/discovery"
	kubesrc "github.com/horizonmesh/horizon/discovery/kube"
	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
)

// The objects a scenario writes into each member cluster mirror bench/gen's
// topology, so that the fleet's proxies (which claim gen's names in their
// node metadata) land in views that exist: cluster n<i>-c0 on network
// net-<i>, in region-<i> with zones region-<i>a and region-<i>b, services
// svc-<j> in namespace ns-0 with one HTTP port (80 -> 8080). Unlike gen,
// every cluster holds E endpoints of every service (gen deals E over the
// whole ClusterSet). Addresses are data only, nothing dials them:
// endpoints of cluster i are in 10.(64+i).0.0/16, its two gateways are
// 172.16.i.1 and 172.16.i.2, and the API servers allocate the services'
// virtual IPs (envtest's range is 10.0.0.0/24).

const (
	gatewayNamespace  = "horizon-system"
	gatewayName       = "eastwest"
	gatewaysPerMember = 2
	servicePort       = 80
	targetPort        = 8080
	// Limits of the address plan above.
	maxClusters  = 64
	maxServices  = 250     // virtual IPs in 10.0.0.0/24, less the kubernetes and gateway Services
	maxEndpoints = 1 << 16 // services × endpoints, per cluster
)

// member is one member cluster of a scenario and where it sits.
type member struct {
	index    int
	name     string
	network  string
	locality discovery.Locality // zone a of the cluster's region
	cluster  *kubetest.Cluster
}

func newMember(i int, c *kubetest.Cluster) member {
	return member{index: i, name: gen.ClusterName(i, 0), network: gen.NetworkName(i), locality: gen.Locality(i, 0), cluster: c}
}

// config is how the Source reaches the member.
func (m member) config() kubesrc.MemberConfig {
	return kubesrc.MemberConfig{Name: m.name, Network: m.network, Locality: m.locality, Rest: m.cluster.Config, Origin: "bench"}
}

// nodeName is the Node of zone z (0 or 1) of the member.
func nodeName(z int) string { return "node-" + string(rune('a'+z)) }

// endpointAddress is the address of endpoint e of service s in member i.
func endpointAddress(i, s, e, perService int) string {
	n := s*perService + e
	return netip.AddrFrom4([4]byte{10, byte(64 + i), byte(n >> 8), byte(n)}).String()
}

// gatewayAddress is the address of gateway g of member i.
func gatewayAddress(i, g int) string {
	return netip.AddrFrom4([4]byte{172, 16, byte(i), byte(1 + g)}).String()
}

// seed writes one member's objects: the namespaces; a Node per zone with
// the topology labels; the east-west gateway Service (a load balancer with
// the member's gateway addresses); and for every service its Service,
// ServiceExport, one Pod per endpoint (whose sidecar accepts mutual TLS,
// one service account per service: without them the endpoints would stay
// on their network) and one EndpointSlice of ready endpoints, each naming
// its Pod, Node and zone. envtest runs no controllers, so nothing else
// writes. The first headless services are headless (no cluster IP); the
// xDS scenario has none, the MCS scenario one, for CoreDNS. It returns the
// EndpointSlices as created, by service.
func seed(ctx context.Context, m member, services, endpoints, headless int) ([]*discoveryv1.EndpointSlice, error) {
	kc := m.cluster.Kube
	ns := gen.NamespaceName(0)
	for _, name := range []string{ns, gatewayNamespace} {
		if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("member %s: namespace %s: %w", m.name, name, err)
		}
	}
	for z := range 2 {
		loc := gen.Locality(m.index, z)
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName(z), Labels: map[string]string{
			corev1.LabelTopologyRegion: loc.Region, corev1.LabelTopologyZone: loc.Zone,
		}}}
		if _, err := kc.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("member %s: node: %w", m.name, err)
		}
	}
	gw, err := kc.CoreV1().Services(gatewayNamespace).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: gatewayName, Labels: map[string]string{kubesrc.LabelGatewayNetwork: m.network}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer,
			Ports: []corev1.ServicePort{{Name: "tls", Port: gen.GatewayPort}}},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("member %s: gateway: %w", m.name, err)
	}
	for g := range gatewaysPerMember {
		gw.Status.LoadBalancer.Ingress = append(gw.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: gatewayAddress(m.index, g)})
	}
	if _, err := kc.CoreV1().Services(gatewayNamespace).UpdateStatus(ctx, gw, metav1.UpdateOptions{}); err != nil {
		return nil, fmt.Errorf("member %s: gateway status: %w", m.name, err)
	}

	out := make([]*discoveryv1.EndpointSlice, services)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for s := range services {
		g.Go(func() error {
			slice, err := seedService(gctx, m, ns, s, endpoints, s < headless)
			out[s] = slice
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// seedService writes one service of a member: Service, Pods,
// EndpointSlice, ServiceExport.
func seedService(ctx context.Context, m member, ns string, s, endpoints int, headless bool) (*discoveryv1.EndpointSlice, error) {
	kc := m.cluster.Kube
	name := gen.ServiceName(s)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{
			Name: "http", Port: servicePort, TargetPort: intstr.FromInt32(targetPort), AppProtocol: ptr.To("http"),
		}}},
	}
	if headless {
		svc.Spec.ClusterIP = corev1.ClusterIPNone
	}
	if _, err := kc.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("member %s: service %s: %w", m.name, name, err)
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name + "-0", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](targetPort), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for e := range endpoints {
		pod := name + "-" + strconv.Itoa(e)
		if _, err := kc.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: pod, Labels: map[string]string{"app": name, kubesrc.LabelTLSMode: kubesrc.TLSModeMTLS}},
			Spec:       corev1.PodSpec{ServiceAccountName: name, NodeName: nodeName(e % 2), Containers: []corev1.Container{{Name: "app", Image: "app"}}},
		}, metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("member %s: pod %s: %w", m.name, pod, err)
		}
		// The e-th endpoint alternates between the zones, as in gen.
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{endpointAddress(m.index, s, e, endpoints)},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
			NodeName:   ptr.To(nodeName(e % 2)),
			Zone:       ptr.To(gen.Locality(m.index, e%2).Zone),
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: pod},
		})
	}
	created, err := kc.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("member %s: endpointslice %s: %w", m.name, slice.Name, err)
	}
	if _, err := m.cluster.MCS.MulticlusterV1beta1().ServiceExports(ns).Create(ctx, &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("member %s: serviceexport %s: %w", m.name, name, err)
	}
	return created, nil
}

// checkSeeded reports what the ClusterSet lacks of what seed wrote: every
// member with its gateways and every service exported with all its
// endpoints ready, in mutual TLS, in the member's region.
func checkSeeded(cs *discovery.ClusterSet, members []member, services, endpoints int) error {
	if cs == nil {
		return fmt.Errorf("no ClusterSet")
	}
	for _, m := range members {
		c, ok := cs.Cluster(m.name)
		if !ok {
			return fmt.Errorf("cluster %s missing", m.name)
		}
		if c.Network != m.network || len(c.Gateways) != gatewaysPerMember {
			return fmt.Errorf("cluster %s: network %s, %d gateways; want %s, %d", m.name, c.Network, len(c.Gateways), m.network, gatewaysPerMember)
		}
		for s := range services {
			k := discovery.ServiceKey{Namespace: gen.NamespaceName(0), Name: gen.ServiceName(s)}
			svc, ok := c.Service(k)
			if !ok || !svc.Exported || len(svc.Endpoints) != endpoints {
				return fmt.Errorf("cluster %s: service %s missing, unexported or not all %d endpoints", m.name, k, endpoints)
			}
			for _, e := range svc.Endpoints {
				if !e.Ready || !e.MTLS || e.Locality.Region != m.locality.Region {
					return fmt.Errorf("cluster %s: service %s: endpoint %s: ready %v, mTLS %v, locality %s", m.name, k, e.Address, e.Ready, e.MTLS, e.Locality)
				}
			}
		}
	}
	return nil
}

// Change is one step of a scenario: one endpoint of one service in one
// member cluster gets the address load.MarkerAddress(Index), by an update
// of the service's EndpointSlice.
type Change struct {
	Index    int
	Cluster  string
	Network  string
	Service  discovery.ServiceKey
	Removed  string   // the address replaced by the marker
	Affected []string // networks whose proxies must ACK the marker

	member  int                        // index into the members
	service int                        // gen.ServiceName's index
	slice   *discoveryv1.EndpointSlice // the slice as the change writes it
}

// plan builds every change before anything is served: round-robin over
// the members of every network but the last (the control group, whose
// proxies must receive nothing; with one member, that one) and over the
// services, rotating over each slice's endpoints. A change replaces an
// address, so the endpoint count, and so the gateway weight every other
// network sees, stays the same: only the changed member's network is
// affected.
func plan(members []member, seeded [][]*discoveryv1.EndpointSlice, changes int) []Change {
	changing := max(1, len(members)-1)
	p := newPlanner(members, seeded)
	out := make([]Change, changes)
	for i := range out {
		mi := i % changing
		out[i] = p.next(i, mi, (i/changing)%len(seeded[mi]))
	}
	return out
}

// planner builds changes one after the other, each on the slice as the
// previous changes of the same (member, service) left it, rotating over its
// endpoints.
type planner struct {
	members []member
	seeded  [][]*discoveryv1.EndpointSlice
	cur     map[[2]int]*discoveryv1.EndpointSlice
	turns   map[[2]int]int
}

func newPlanner(members []member, seeded [][]*discoveryv1.EndpointSlice) *planner {
	return &planner{members: members, seeded: seeded, cur: map[[2]int]*discoveryv1.EndpointSlice{}, turns: map[[2]int]int{}}
}

// next is change i: in member mi, service s gets load.MarkerAddress(i) in
// place of one endpoint's address.
func (p *planner) next(i, mi, s int) Change {
	k := [2]int{mi, s}
	prev, ok := p.cur[k]
	if !ok {
		prev = p.seeded[mi][s]
	}
	next := prev.DeepCopy()
	slot := p.turns[k] % len(next.Endpoints)
	p.turns[k]++
	old := next.Endpoints[slot].Addresses[0]
	next.Endpoints[slot].Addresses = []string{load.MarkerAddress(i)}
	p.cur[k] = next
	m := p.members[mi]
	return Change{
		Index: i, Cluster: m.name, Network: m.network,
		Service: discovery.ServiceKey{Namespace: next.Namespace, Name: next.Labels[discoveryv1.LabelServiceName]},
		Removed: old, Affected: []string{m.network}, member: mi, service: s, slice: next,
	}
}

// holds reports whether cs has the change's marker among the changed
// service's endpoints in the changed cluster.
func holds(cs *discovery.ClusterSet, ch *Change) bool {
	if cs == nil {
		return false
	}
	c, ok := cs.Cluster(ch.Cluster)
	if !ok {
		return false
	}
	svc, ok := c.Service(ch.Service)
	if !ok {
		return false
	}
	marker := load.MarkerAddress(ch.Index)
	for _, e := range svc.Endpoints {
		if e.Address == marker {
			return true
		}
	}
	return false
}
