package xds

import (
	"cmp"
	"hash/fnv"
	"net/netip"
	"slices"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/horizonmesh/horizon/discovery"
)

// backend is one cluster's share of a service: the cluster and its own
// definition (which holds its endpoints and target ports).
type backend struct {
	cluster *discovery.Cluster
	svc     *discovery.Service
}

// lbEndpoint is an endpoint on its way into a ClusterLoadAssignment.
type lbEndpoint struct {
	address  string
	port     uint32
	weight   uint32
	draining bool
	mtls     bool
	locality discovery.Locality
	priority int // before compaction
}

// loadAssignment builds the split-horizon ClusterLoadAssignment of one Envoy
// cluster (a service port in a scope) for a view on network g.Network:
//
//   - endpoints on the view's network appear directly, as pod address and
//     target port;
//   - endpoints on any other network are replaced by their cluster's gateway
//     addresses, each weighted by the ready endpoints behind it, spread evenly
//     over the cluster's gateways and carrying the cluster's locality; an
//     address shared by several clusters appears once, with the summed weight,
//     at the best priority among them;
//   - endpoints that do not accept mutual TLS never cross a network, and a
//     network without a gateway contributes nothing to other networks;
//   - not-ready endpoints are left out; serving-but-terminating ones drain.
//
// Priorities follow the policy and are made contiguous; every locality is
// weighted by the sum of its endpoints' weights.
func (t *translator) loadAssignment(name string, port uint32, backends []backend) *endpoint.ClusterLoadAssignment {
	var eps []lbEndpoint
	type gwShare struct {
		lbEndpoint
		ready bool
	}
	gateways := map[string]*gwShare{} // "addr:port" -> aggregated share
	for _, b := range backends {
		svcPort, ok := b.svc.Port(port)
		if !ok {
			continue // this cluster's definition lacks the port (a younger, conflicting export)
		}
		if b.cluster.Network == t.group.Network {
			for i := range b.svc.Endpoints {
				e := &b.svc.Endpoints[i]
				if !e.Usable() {
					continue
				}
				eps = append(eps, lbEndpoint{
					address: e.Address, port: e.TargetPort(svcPort), weight: 1,
					draining: e.Draining(), mtls: e.MTLS, locality: e.Locality,
					priority: t.policy.priority(t.group.Locality, e.Locality),
				})
			}
			continue
		}
		var ready, draining uint32
		for i := range b.svc.Endpoints {
			e := &b.svc.Endpoints[i]
			switch {
			case !e.MTLS:
				t.notef("%s: endpoint %s in cluster %s does not accept mutual TLS and stays on network %s", name, e.Address, b.cluster.Name, b.cluster.Network)
			case e.Ready:
				ready++
			case e.Draining():
				draining++
			}
		}
		if ready+draining == 0 {
			continue
		}
		gws := t.usableGateways(b.cluster)
		if len(gws) == 0 {
			t.notef("%s: network %s has no usable gateway; %d endpoints in cluster %s are unreachable from network %s", name, b.cluster.Network, ready+draining, b.cluster.Name, t.group.Network)
			continue
		}
		// A gateway is weighted by the ready endpoints behind it; when only
		// draining ones remain it drains too, weighted by those.
		behind := ready
		if behind == 0 {
			behind = draining
		}
		weights := spread(behind, len(gws), name)
		prio := t.policy.priority(t.group.Locality, b.cluster.Locality)
		for i, gw := range gws {
			if weights[i] == 0 {
				continue
			}
			key := gw.String()
			s, ok := gateways[key]
			if !ok {
				s = &gwShare{lbEndpoint: lbEndpoint{address: gw.Address, port: gw.Port, mtls: true, locality: b.cluster.Locality, priority: prio}}
				gateways[key] = s
			}
			s.weight += weights[i]
			s.ready = s.ready || ready > 0
			if prio < s.priority || (prio == s.priority && compareLocality(b.cluster.Locality, s.locality) < 0) {
				s.priority, s.locality = prio, b.cluster.Locality
			}
		}
	}
	for _, s := range gateways {
		s.draining = !s.ready
		eps = append(eps, s.lbEndpoint)
	}
	return t.assemble(name, eps)
}

// usableGateways returns the cluster's gateways that a proxy can be sent to:
// those with an IP address (hostnames are resolved by the source).
func (t *translator) usableGateways(c *discovery.Cluster) []discovery.Gateway {
	out := make([]discovery.Gateway, 0, len(c.Gateways))
	for _, g := range c.Gateways {
		if _, err := netip.ParseAddr(g.Address); err != nil {
			t.notef("cluster %s: gateway %s is not an IP address and is skipped", c.Name, g)
			continue
		}
		out = append(out, g)
	}
	return out
}

// spread divides n endpoints evenly over k gateways. When n is not a multiple
// of k the remainder goes to consecutive gateways starting at an offset derived
// from the Envoy cluster name, so that small services do not all pile onto the
// first gateway. Gateways may get 0 when n < k.
func spread(n uint32, k int, name string) []uint32 {
	out := make([]uint32, k)
	base, rem := n/uint32(k), int(n%uint32(k))
	h := fnv.New32a()
	h.Write([]byte(name))
	start := int(h.Sum32() % uint32(k))
	for i := range out {
		out[i] = base
	}
	for i := 0; i < rem; i++ {
		out[(start+i)%k]++
	}
	return out
}

var mtlsMetadata = &core.Metadata{FilterMetadata: map[string]*structpb.Struct{
	transportSocketMatchKey: {Fields: map[string]*structpb.Value{tlsModeKey: structpb.NewStringValue(tlsModeMTLS)}},
}}

// assemble groups endpoints by (priority, locality), compacts priorities and
// sorts everything so that equal input gives byte-equal output.
func (t *translator) assemble(name string, eps []lbEndpoint) *endpoint.ClusterLoadAssignment {
	slices.SortFunc(eps, func(a, b lbEndpoint) int {
		return cmp.Or(cmp.Compare(a.priority, b.priority), compareLocality(a.locality, b.locality),
			cmp.Compare(a.address, b.address), cmp.Compare(a.port, b.port))
	})
	cla := &endpoint.ClusterLoadAssignment{ClusterName: name}
	var cur *endpoint.LocalityLbEndpoints
	var curPrio int
	var curLoc discovery.Locality
	level := uint32(0)
	for i, e := range eps {
		if cur == nil || e.priority != curPrio || e.locality != curLoc {
			if cur != nil && e.priority != curPrio {
				level++
			}
			cur = &endpoint.LocalityLbEndpoints{
				Locality:            &core.Locality{Region: e.locality.Region, Zone: e.locality.Zone, SubZone: e.locality.SubZone},
				Priority:            level,
				LoadBalancingWeight: wrapperspb.UInt32(0),
			}
			cla.Endpoints = append(cla.Endpoints, cur)
			curPrio, curLoc = e.priority, e.locality
		}
		if i > 0 && eps[i-1].address == e.address && eps[i-1].port == e.port && eps[i-1].priority == e.priority && eps[i-1].locality == e.locality {
			continue // defensive: one address once per assignment
		}
		health := core.HealthStatus_HEALTHY
		if e.draining {
			health = core.HealthStatus_DRAINING
		}
		lb := &endpoint.LbEndpoint{
			HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{
				Address: socketAddress(e.address, e.port),
			}},
			HealthStatus:        health,
			LoadBalancingWeight: wrapperspb.UInt32(e.weight),
		}
		if e.mtls && t.group.Role == Sidecar {
			lb.Metadata = mtlsMetadata
		}
		cur.LbEndpoints = append(cur.LbEndpoints, lb)
		cur.LoadBalancingWeight.Value += e.weight
	}
	return cla
}

func compareLocality(a, b discovery.Locality) int {
	return cmp.Or(cmp.Compare(a.Region, b.Region), cmp.Compare(a.Zone, b.Zone), cmp.Compare(a.SubZone, b.SubZone))
}

func socketAddress(addr string, port uint32) *core.Address {
	return &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
		Protocol:      core.SocketAddress_TCP,
		Address:       addr,
		PortSpecifier: &core.SocketAddress_PortValue{PortValue: port},
	}}}
}
