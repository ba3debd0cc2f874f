// Package kube is Horizon's Kubernetes source: one watcher per member cluster
// (Services, EndpointSlices, ServiceExports, ServiceImports, Pods, Nodes,
// Namespaces and gateway Services), and a Source that merges the members'
// state into ClusterSet snapshots. Informer callbacks never block; events are
// coalesced. ReaderRules (rbac.go) are the RBAC rules a member cluster grants
// Horizon for all of it.
package kube

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/horizonmesh/horizon/discovery"
)

// Labels and annotations Horizon reads (README, "Kubernetes").
const (
	// LabelGatewayNetwork marks a Service as the east-west gateway of the
	// network its value names.
	LabelGatewayNetwork = "networking.horizon.io/gateway-network"
	// LabelGatewayPort overrides the port other networks use to reach the
	// gateway (default: the Service port named "tls", else 15443, else the first).
	LabelGatewayPort = "networking.horizon.io/gateway-port"
	// AnnotationPeerAddresses on a gateway Service names the addresses that
	// particular networks reach the gateway at instead of its own (say a
	// private address for peers on the same private network):
	// "west=10.20.0.5, north=10.30.0.5:8443", comma-separated
	// network=address[:port] entries, the port defaulting to the gateway's.
	// discovery.Cluster.GatewaysFor picks them for those networks' proxies.
	AnnotationPeerAddresses = "networking.horizon.io/peer-addresses"
	// LabelTLSMode on a Pod says its sidecar accepts mutual TLS ("mtls").
	LabelTLSMode = "security.horizon.io/tlsMode"
	// TLSModeMTLS is LabelTLSMode's value for a sidecar that accepts mTLS.
	TLSModeMTLS = "mtls"

	// LabelManagedBy marks the ServiceImports Horizon's MCS controller writes.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByHorizon is LabelManagedBy's value on them.
	ManagedByHorizon = "horizon"

	// LabelMCSServiceName names the ServiceImport of an MCS EndpointSlice
	// (KEP-1645); LabelMCSSourceCluster the cluster its endpoints are in.
	// The source skips these slices: they hold imported endpoints.
	LabelMCSServiceName   = "multicluster.kubernetes.io/service-name"
	LabelMCSSourceCluster = "multicluster.kubernetes.io/source-cluster"

	labelServiceName = discoveryv1.LabelServiceName
	labelRegion      = corev1.LabelTopologyRegion
	labelZone        = corev1.LabelTopologyZone
)

// DefaultGatewayPort is the port of an east-west gateway when its Service
// does not say otherwise.
const DefaultGatewayPort = 15443

// Problem is an object Horizon skipped, or part of one, and why. Problems are
// logged with the object's name and counted; they never stop the rest.
type Problem struct {
	Kind      string // Service, EndpointSlice, ServiceExport, ...
	Namespace string
	Name      string
	Reason    string // a short, bounded token for metrics
	Message   string
}

func (p Problem) String() string {
	if p.Namespace == "" {
		return fmt.Sprintf("%s %s: %s", p.Kind, p.Name, p.Message)
	}
	return fmt.Sprintf("%s %s/%s: %s", p.Kind, p.Namespace, p.Name, p.Message)
}

// PodInfo is the little Horizon keeps of a Pod.
type PodInfo struct {
	Namespace, Name string
	ServiceAccount  string
	MTLS            bool
	Labels          map[string]string
}

// Objects is one member cluster's state, as its informers hold it.
type Objects struct {
	Services []*corev1.Service
	Slices   []*discoveryv1.EndpointSlice
	Exports  []*mcsv1beta1.ServiceExport
	Imports  []*mcsv1beta1.ServiceImport
	Pods     map[string]*PodInfo // namespace/name -> pod
	Nodes    map[string]*corev1.Node
	// Resolved maps gateway host names to their current addresses.
	Resolved map[string][]string
}

// Build converts one member's objects into its part of the ClusterSet. It is
// pure: the member's watchers call it with their caches' contents.
func Build(cfg MemberConfig, o Objects) (discovery.Cluster, []Problem) {
	var problems []Problem
	problem := func(kind, ns, name, reason, format string, args ...any) {
		problems = append(problems, Problem{Kind: kind, Namespace: ns, Name: name, Reason: reason, Message: fmt.Sprintf(format, args...)})
	}
	c := discovery.Cluster{Name: cfg.Name, Network: cfg.Network, Locality: cfg.Locality}

	for _, im := range o.Imports {
		if im.Labels[LabelManagedBy] != ManagedByHorizon || len(im.Spec.IPs) == 0 {
			continue
		}
		if c.ImportIPs == nil {
			c.ImportIPs = map[discovery.ServiceKey][]string{}
		}
		ips := slices.Clone(im.Spec.IPs)
		slices.Sort(ips)
		c.ImportIPs[discovery.ServiceKey{Namespace: im.Namespace, Name: im.Name}] = ips
	}
	exports := map[discovery.ServiceKey]*mcsv1beta1.ServiceExport{}
	for _, ex := range o.Exports {
		exports[discovery.ServiceKey{Namespace: ex.Namespace, Name: ex.Name}] = ex
	}
	slicesBySvc := map[discovery.ServiceKey][]*discoveryv1.EndpointSlice{}
	for _, s := range o.Slices {
		name := s.Labels[labelServiceName]
		if name == "" && s.Labels[LabelMCSServiceName] != "" {
			continue // an MCS slice of a ServiceImport, not of a Service
		}
		if name == "" {
			problem("EndpointSlice", s.Namespace, s.Name, "missing_service_label", "no %s label; skipped", labelServiceName)
			continue
		}
		if s.AddressType == discoveryv1.AddressTypeFQDN {
			problem("EndpointSlice", s.Namespace, s.Name, "fqdn", "address type FQDN is not supported; skipped")
			continue
		}
		k := discovery.ServiceKey{Namespace: s.Namespace, Name: name}
		slicesBySvc[k] = append(slicesBySvc[k], s)
	}

	for _, svc := range o.Services {
		if svc.Spec.Type == corev1.ServiceTypeExternalName {
			continue // never routed; an export of it is reported invalid
		}
		if network := svc.Labels[LabelGatewayNetwork]; network != "" {
			c.Gateways = append(c.Gateways, gateways(cfg, svc, network, o, problem)...)
		}
		k := discovery.ServiceKey{Namespace: svc.Namespace, Name: svc.Name}
		ds := discovery.Service{
			Namespace:       svc.Namespace,
			Name:            svc.Name,
			Type:            discovery.ClusterSetIP,
			SessionAffinity: string(svc.Spec.SessionAffinity),
		}
		if svc.Spec.ClusterIP == corev1.ClusterIPNone {
			ds.Type = discovery.Headless
		} else if _, err := netip.ParseAddr(svc.Spec.ClusterIP); err == nil {
			ds.ClusterIP = svc.Spec.ClusterIP
		}
		if ex, ok := exports[k]; ok {
			ds.Exported = true
			ds.ExportedAt = ex.CreationTimestamp.Time
		}
		seenPorts := map[string]bool{}
		for _, p := range svc.Spec.Ports {
			port := discovery.Port{Name: p.Name, Port: uint32(p.Port), Protocol: string(p.Protocol)}
			if port.Protocol == "" {
				port.Protocol = "TCP"
			}
			key := strconv.Itoa(int(p.Port)) + "/" + port.Protocol
			if p.Port <= 0 || p.Port > 65535 || seenPorts[key] {
				problem("Service", svc.Namespace, svc.Name, "bad_port", "port %d/%s is out of range or repeated; skipped", p.Port, port.Protocol)
				continue
			}
			seenPorts[key] = true
			if p.AppProtocol != nil {
				port.AppProtocol = *p.AppProtocol
			}
			if p.TargetPort.IntValue() > 0 && p.TargetPort.IntValue() <= 65535 {
				port.TargetPort = uint32(p.TargetPort.IntValue())
			}
			ds.Ports = append(ds.Ports, port)
		}
		ds.Endpoints = endpoints(cfg, k, slicesBySvc[k], o, problem)
		ds.Aliases = serviceAliases(svc, problem)
		c.Services = append(c.Services, ds)
	}
	slices.SortFunc(c.Services, func(a, b discovery.Service) int { return a.Key().Compare(b.Key()) })
	slices.SortFunc(c.Gateways, discovery.CompareGateways)

	c.Gateways = slices.Compact(c.Gateways)
	return c, problems
}

type problemFunc func(kind, ns, name, reason, format string, args ...any)

// endpoints merges a service's EndpointSlices into its endpoints. An address
// listed in two slices (as during a slice migration) is kept once, preferring
// the ready copy.
func endpoints(cfg MemberConfig, k discovery.ServiceKey, ss []*discoveryv1.EndpointSlice, o Objects, problem problemFunc) []discovery.Endpoint {
	slices.SortFunc(ss, func(a, b *discoveryv1.EndpointSlice) int { return cmp.Compare(a.Name, b.Name) })
	byAddr := map[string]int{}
	var out []discovery.Endpoint
	for _, s := range ss {
		ports := map[string]uint32{}
		for _, p := range s.Ports {
			if p.Port == nil || *p.Port <= 0 || *p.Port > 65535 {
				problem("EndpointSlice", s.Namespace, s.Name, "bad_port", "port %q is missing or out of range; skipped", ptrString(p.Name))
				continue
			}
			ports[ptrString(p.Name)] = uint32(*p.Port)
		}
		for _, e := range s.Endpoints {
			if len(e.Addresses) == 0 {
				continue
			}
			addr, err := netip.ParseAddr(e.Addresses[0])
			if err != nil || addr.Zone() != "" {
				problem("EndpointSlice", s.Namespace, s.Name, "bad_address", "address %q is not an IP address; skipped", e.Addresses[0])
				continue
			}
			if (s.AddressType == discoveryv1.AddressTypeIPv4) != addr.Is4() {
				problem("EndpointSlice", s.Namespace, s.Name, "family_mismatch", "address %s is not of the slice's type %s; skipped", addr, s.AddressType)
				continue
			}
			ep := discovery.Endpoint{Address: addr.String(), Ports: ports, Locality: cfg.Locality}
			ep.Ready, ep.Serving, ep.Terminating = conditions(e.Conditions)
			if e.Hostname != nil {
				ep.Hostname = *e.Hostname
			}
			if e.NodeName != nil {
				if n, ok := o.Nodes[*e.NodeName]; ok {
					if r := n.Labels[labelRegion]; r != "" {
						ep.Locality = discovery.Locality{Region: r, Zone: n.Labels[labelZone]}
					}
				}
			}
			if e.Zone != nil && *e.Zone != "" {
				ep.Locality.Zone = *e.Zone
			}
			if ref := e.TargetRef; ref != nil && ref.Kind == "Pod" {
				if pod, ok := o.Pods[ref.Namespace+"/"+ref.Name]; ok {
					ep.ServiceAccount, ep.MTLS, ep.Labels = pod.ServiceAccount, pod.MTLS, pod.Labels
				}
			}
			if i, dup := byAddr[ep.Address]; dup {
				problem("EndpointSlice", s.Namespace, s.Name, "duplicate_endpoint", "address %s is also in another slice of %s; kept once", ep.Address, k)
				if !out[i].Ready && ep.Ready {
					out[i] = ep
				}
				continue
			}
			byAddr[ep.Address] = len(out)
			out = append(out, ep)
		}
	}
	slices.SortFunc(out, func(a, b discovery.Endpoint) int { return cmp.Compare(a.Address, b.Address) })
	return out
}

// conditions reads an endpoint's conditions, unset ones as the
// discovery.k8s.io/v1 API says (EndpointConditions): a nil terminating is
// false; a nil ready is true, but "an endpoint should be marked ready if it
// is serving and not terminating" (and before Kubernetes 1.26 "ready should
// never be true for terminating endpoints"), so a terminating endpoint with
// no ready condition is not ready; a nil serving is true, unless ready is
// set, which it then follows (the 1.20-1.25 wording: "defer to the ready
// condition"). A terminating endpoint that says nothing else drains.
func conditions(c discoveryv1.EndpointConditions) (ready, serving, terminating bool) {
	terminating = c.Terminating != nil && *c.Terminating
	ready = !terminating
	if c.Ready != nil {
		ready = *c.Ready
	}
	serving = c.Ready == nil || ready
	if c.Serving != nil {
		serving = *c.Serving
	}
	return ready, serving, terminating
}

// peerAddresses reads a gateway Service's AnnotationPeerAddresses: the
// addresses given to one network's proxies each. Bad entries are problems
// and skipped; the rest still count.
func peerAddresses(cfg MemberConfig, svc *corev1.Service, port uint32, problem problemFunc) []discovery.Gateway {
	v := svc.Annotations[AnnotationPeerAddresses]
	if v == "" {
		return nil
	}
	var out []discovery.Gateway
	for entry := range strings.SplitSeq(v, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		network, addr, ok := strings.Cut(entry, "=")
		network, addr = strings.TrimSpace(network), strings.TrimSpace(addr)
		g := discovery.Gateway{Address: addr, Port: port, ForNetwork: network}
		if ap, err := netip.ParseAddrPort(addr); err == nil && ap.Addr().Zone() == "" {
			g.Address, g.Port = ap.Addr().String(), uint32(ap.Port())
		} else if ip, isIP := gatewayIP(addr); isIP {
			g.Address = ip
		} else {
			ok = false
		}
		switch {
		case !ok || network == "" || g.Port == 0:
			problem("Service", svc.Namespace, svc.Name, "gateway_peer_address", "annotation %s: %q is not network=ip[:port]; skipped", AnnotationPeerAddresses, entry)
		case network == cfg.Network:
			problem("Service", svc.Namespace, svc.Name, "gateway_peer_address", "annotation %s: %q names the gateway's own network, whose proxies reach its pods directly; skipped", AnnotationPeerAddresses, entry)
		default:
			out = append(out, g)
		}
	}
	return out
}

// gateways returns the addresses other networks reach a gateway Service at:
// its load balancer's IPs (host names as resolved), or else its node port on
// every node's external (else internal) address.
func gateways(cfg MemberConfig, svc *corev1.Service, network string, o Objects, problem problemFunc) []discovery.Gateway {
	if network != cfg.Network {
		problem("Service", svc.Namespace, svc.Name, "gateway_network", "gateway for network %q in cluster %s on network %q; ignored", network, cfg.Name, cfg.Network)
		return nil
	}
	var sp *corev1.ServicePort
	for i := range svc.Spec.Ports {
		p := &svc.Spec.Ports[i]
		if !validPort(p.Port) {
			continue
		}
		if sp == nil || p.Name == "tls" || (p.Port == DefaultGatewayPort && sp.Name != "tls") {
			sp = p
		}
	}
	if sp == nil {
		problem("Service", svc.Namespace, svc.Name, "gateway_port", "gateway Service has no port in 1-65535; ignored")
		return nil
	}
	port := uint32(sp.Port)
	if v := svc.Labels[LabelGatewayPort]; v != "" {
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil || n == 0 {
			problem("Service", svc.Namespace, svc.Name, "gateway_port", "label %s=%q is not a port; using %d", LabelGatewayPort, v, port)
		} else {
			port = uint32(n)
		}
	}
	out := peerAddresses(cfg, svc, port, problem)
	// Addresses are checked here, not only by the apiserver: one bad
	// gateway address would make the whole ClusterSet invalid.
	add := func(what, a string) {
		if ip, ok := gatewayIP(a); ok {
			out = append(out, discovery.Gateway{Address: ip, Port: port})
		} else {
			problem("Service", svc.Namespace, svc.Name, "gateway_address", "%s %q is not an IP address; skipped", what, a)
		}
	}
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		switch {
		case ing.IP != "":
			add("load balancer address", ing.IP)
		case ing.Hostname != "":
			addrs, ok := o.Resolved[ing.Hostname]
			if !ok {
				problem("Service", svc.Namespace, svc.Name, "gateway_unresolved", "gateway host name %s is not resolved (yet)", ing.Hostname)
			}
			for _, a := range addrs {
				add("address of "+ing.Hostname, a)
			}
		}
	}
	hasDefault := slices.ContainsFunc(out, func(g discovery.Gateway) bool { return g.ForNetwork == "" })
	if hasDefault || sp.NodePort == 0 || !validPort(sp.NodePort) {
		if !hasDefault && sp.NodePort != 0 {
			problem("Service", svc.Namespace, svc.Name, "gateway_port", "node port %d is out of range 1-65535", sp.NodePort)
			return out
		}
		if !hasDefault {
			problem("Service", svc.Namespace, svc.Name, "gateway_address", "gateway Service has no load balancer address and no node port")
		}
		return out
	}
	if v := svc.Labels[LabelGatewayPort]; v == "" {
		port = uint32(sp.NodePort)
	}
	for _, n := range slices.Sorted(maps.Keys(o.Nodes)) {
		if a := nodeAddress(o.Nodes[n]); a != "" {
			add("address of node "+n, a)
		}
	}
	return out
}

func validPort(p int32) bool { return p >= 1 && p <= 65535 }

// gatewayIP returns a as a gateway address: an IP address in canonical
// form, without a zone.
func gatewayIP(a string) (string, bool) {
	ip, err := netip.ParseAddr(a)
	if err != nil || ip.Zone() != "" {
		return "", false
	}
	return ip.String(), true
}

func nodeAddress(n *corev1.Node) string {
	for _, want := range []corev1.NodeAddressType{corev1.NodeExternalIP, corev1.NodeInternalIP} {
		for _, a := range n.Status.Addresses {
			if a.Type == want {
				return a.Address
			}
		}
	}
	return ""
}

func ptrString(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
