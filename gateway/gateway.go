// Package gateway renders the configuration of a network's east-west gateway:
// the Envoy that other networks reach this network's pods through. It passes
// mutual TLS through untouched, routing each connection by its SNI (the name
// discovery.ClusterName gives a service port) to an EDS cluster of the
// network's own mesh endpoints of that port, and only for exported services.
//
// Translate is pure, like xds.Translate, and this package never imports xds:
// xds asks it for a gateway view's resources.
//
// # What lives under gateway/
//
// This package and gateway/health are control plane, stages of Horizon's
// pipeline: Translate renders a gateway view (for Envoy gateways and
// Horizon's own alike), and health sits between the sources and the xDS
// server, withdrawing the gateways that stop answering. gateway/proxy is data
// plane: Horizon's own gateway (`horizon gateway`), its xDS client
// (gateway/proxy/ads) and its TLS forwarding by SNI (gateway/proxy/sni).
package gateway

import (
	"cmp"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsinspector "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/horizonmesh/horizon/discovery"
)

// Defaults of Options.
const (
	DefaultPort           = 15443
	DefaultConnectTimeout = 10 * time.Second
	// DefaultBufferLimitBytes bounds the read and write buffers of each
	// connection through the gateway, in and out: Envoy's guidance for an
	// edge proxy is 32 KiB for listeners and clusters, against its 1 MiB
	// default (https://www.envoyproxy.io/docs/envoy/latest/configuration/best_practices/edge).
	DefaultBufferLimitBytes = 32 << 10
)

// Options shape a gateway's configuration. The zero value is usable.
type Options struct {
	// Port the gateway listens on for TLS from other networks; 0 means
	// DefaultPort.
	Port uint32
	// ConnectTimeout of connections to the network's pods; 0 means
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// BufferLimitBytes is the per-connection buffer limit of the listener
	// and the clusters (Envoy's per_connection_buffer_limit_bytes, a soft
	// limit on each connection's read and write buffers); 0 means
	// DefaultBufferLimitBytes.
	BufferLimitBytes uint32
	// Subsets are the subsets of each service that route rules send to
	// (policyfile.File.GatewaySubsets): for each, the gateway routes the
	// subset's SNI (discovery.SubsetClusterName of the service's
	// clusterset.local host) to the subset's endpoints in the network
	// alone. The gateway's SNI names the subset; nothing else does.
	Subsets map[discovery.ServiceKey][]discovery.Subset
}

func (o Options) port() uint32 {
	if o.Port == 0 {
		return DefaultPort
	}
	return o.Port
}

func (o Options) bufferLimit() *wrapperspb.UInt32Value {
	if o.BufferLimitBytes == 0 {
		return wrapperspb.UInt32(DefaultBufferLimitBytes)
	}
	return wrapperspb.UInt32(o.BufferLimitBytes)
}

func (o Options) connectTimeout() time.Duration {
	if o.ConnectTimeout <= 0 {
		return DefaultConnectTimeout
	}
	return o.ConnectTimeout
}

// Resources is a gateway's configuration, each list sorted by name: at most
// one listener (none when nothing can be routed), and one EDS cluster and one
// ClusterLoadAssignment per SNI the listener routes.
type Resources struct {
	Listeners []*listener.Listener
	Clusters  []*cluster.Cluster
	Endpoints []*endpoint.ClusterLoadAssignment
	// Notes explain what the gateway leaves out and why, for debug pages.
	Notes []string
}

// ListenerName is the name of the gateway's listener on a port.
func ListenerName(port uint32) string { return "gateway-" + strconv.Itoa(int(port)) }

// Translate renders the gateway configuration of a network: a TLS listener on
// 0.0.0.0 with one filter chain per exported service port that has mutual-TLS
// endpoints in the network (in any of its clusters), matching that port's SNI
// and passing the connection through to an EDS cluster of the same name,
// whose assignment lists those endpoints at their target ports (ready ones,
// and serving-but-terminating ones as DRAINING, as xds does for local
// endpoints).
//
// A service that is not exported, a port whose endpoints in the network all
// refuse mutual TLS, or a port with no usable endpoint in the network gets
// nothing, and there is no catch-all chain: Envoy closes a connection whose
// SNI it does not know. The listener and the clusters bound each
// connection's buffers (Options.BufferLimitBytes). Every resource passes
// Check.
func Translate(cs *discovery.ClusterSet, network string, opts Options) (Resources, error) {
	if !slices.Contains(cs.Networks(), network) {
		return Resources{}, fmt.Errorf("gateway of network %q: no cluster is on that network", network)
	}
	if opts.Port > 65535 {
		return Resources{}, fmt.Errorf("gateway of network %q: port %d out of range 1-65535", network, opts.Port)
	}
	t := &translator{cs: cs, network: network, opts: opts, noted: map[string]bool{}}
	var chains []*listener.FilterChain
	for i := range cs.Exports {
		ex := &cs.Exports[i]
		if !t.exportedHere(ex) {
			continue
		}
		for _, p := range ex.Ports {
			if p.Protocol != "TCP" {
				t.notef("%s port %d/%s: not proxied", ex.Key, p.Port, p.Protocol)
				continue
			}
			host := discovery.Host(ex.Key, discovery.ClusterSetWide)
			for _, sub := range append([]discovery.Subset{{}}, opts.Subsets[ex.Key]...) {
				name := discovery.SubsetClusterName(host, p.Port, sub)
				cla := t.loadAssignment(name, ex, p.Port, sub)
				if len(cla.GetEndpoints()) == 0 {
					continue
				}
				t.out.Clusters = append(t.out.Clusters, t.edsCluster(name))
				t.out.Endpoints = append(t.out.Endpoints, cla)
				chains = append(chains, passthroughChain(name))
			}
		}
	}
	if len(chains) > 0 {
		t.out.Listeners = append(t.out.Listeners, t.listener(chains))
	} else {
		t.notef("network %s: no exported service port has mutual-TLS endpoints here; the gateway has no listener", network)
	}
	slices.SortFunc(t.out.Clusters, func(a, b *cluster.Cluster) int { return cmp.Compare(a.GetName(), b.GetName()) })
	slices.SortFunc(t.out.Endpoints, func(a, b *endpoint.ClusterLoadAssignment) int {
		return cmp.Compare(a.GetClusterName(), b.GetClusterName())
	})
	slices.Sort(t.out.Notes)
	if err := Check(&t.out); err != nil {
		return Resources{}, fmt.Errorf("gateway of network %q: %w", network, err)
	}
	return t.out, nil
}

type translator struct {
	cs      *discovery.ClusterSet
	network string
	opts    Options
	out     Resources
	noted   map[string]bool
}

func (t *translator) notef(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if !t.noted[msg] {
		t.noted[msg] = true
		t.out.Notes = append(t.out.Notes, msg)
	}
}

// exportedHere reports whether a cluster of the gateway's network exports the service.
func (t *translator) exportedHere(ex *discovery.ExportedService) bool {
	return slices.ContainsFunc(ex.Clusters, func(name string) bool {
		c, ok := t.cs.Cluster(name)
		return ok && c.Network == t.network
	})
}

func (t *translator) listener(chains []*listener.FilterChain) *listener.Listener {
	slices.SortFunc(chains, func(a, b *listener.FilterChain) int { return cmp.Compare(a.GetName(), b.GetName()) })
	port := t.opts.port()
	return &listener.Listener{
		Name:    ListenerName(port),
		Address: socketAddress("0.0.0.0", port),
		ListenerFilters: []*listener.ListenerFilter{{
			Name:       wellknown.TLSInspector,
			ConfigType: &listener.ListenerFilter_TypedConfig{TypedConfig: mustAny(&tlsinspector.TlsInspector{})},
		}},
		FilterChains:                  chains,
		TrafficDirection:              core.TrafficDirection_INBOUND,
		PerConnectionBufferLimitBytes: t.opts.bufferLimit(),
	}
}

// passthroughChain matches one SNI and hands the still-encrypted connection
// to the cluster of the same name: the gateway never terminates the mutual
// TLS between the two sidecars.
func passthroughChain(name string) *listener.FilterChain {
	return &listener.FilterChain{
		Name:             name,
		FilterChainMatch: &listener.FilterChainMatch{ServerNames: []string{name}},
		Filters: []*listener.Filter{{
			Name: wellknown.TCPProxy,
			ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(&tcpproxy.TcpProxy{
				StatPrefix:       name,
				ClusterSpecifier: &tcpproxy.TcpProxy_Cluster{Cluster: name},
			})},
		}},
	}
}

var adsSource = &core.ConfigSource{
	ResourceApiVersion:    core.ApiVersion_V3,
	ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}},
}

func (t *translator) edsCluster(name string) *cluster.Cluster {
	return &cluster.Cluster{
		Name:                          name,
		ClusterDiscoveryType:          &cluster.Cluster_Type{Type: cluster.Cluster_EDS},
		EdsClusterConfig:              &cluster.Cluster_EdsClusterConfig{EdsConfig: adsSource},
		ConnectTimeout:                durationpb.New(t.opts.connectTimeout()),
		LbPolicy:                      cluster.Cluster_ROUND_ROBIN,
		PerConnectionBufferLimitBytes: t.opts.bufferLimit(),
		// Envoy honours the localities' weights only with this set (xds
		// renders every EDS cluster so, and xds.Check insists):
		// https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/locality_weight
		CommonLbConfig: &cluster.Cluster_CommonLbConfig{LocalityConfigSpecifier: &cluster.Cluster_CommonLbConfig_LocalityWeightedLbConfig_{
			LocalityWeightedLbConfig: &cluster.Cluster_CommonLbConfig_LocalityWeightedLbConfig{},
		}},
	}
}

// lbEndpoint is an endpoint on its way into a ClusterLoadAssignment.
type lbEndpoint struct {
	address  string
	port     uint32
	draining bool
	locality discovery.Locality
}

// loadAssignment lists the network's endpoints of one exported service port:
// those of every exporting cluster on the network, at their target ports, as
// xds builds a proxy's local endpoints (usable ones only; a serving but
// terminating endpoint drains), but only those that accept mutual TLS: what
// arrives through the gateway is always mutual TLS. Each endpoint weighs 1 and
// each locality the number of its endpoints; there are no priorities (the
// caller's side chose this network already). A subset (not zero) keeps its
// endpoints alone.
func (t *translator) loadAssignment(name string, ex *discovery.ExportedService, port uint32, sub discovery.Subset) *endpoint.ClusterLoadAssignment {
	var eps []lbEndpoint
	from := map[string]string{} // "addr:port" -> cluster that listed it first
	for _, cn := range ex.Clusters {
		c, ok := t.cs.Cluster(cn)
		if !ok || c.Network != t.network {
			continue
		}
		svc, ok := c.Service(ex.Key)
		if !ok {
			continue
		}
		svcPort, ok := svc.Port(port)
		if !ok {
			continue // this cluster's definition lacks the port (a younger, conflicting export)
		}
		for i := range svc.Endpoints {
			e := &svc.Endpoints[i]
			switch {
			case !e.Usable() || !sub.Has(c.Name, e):
				continue
			case !e.MTLS:
				t.notef("%s: endpoint %s in cluster %s does not accept mutual TLS and is not reachable through the gateway", name, e.Address, c.Name)
				continue
			}
			lb := lbEndpoint{address: e.Address, port: e.TargetPort(svcPort), draining: e.Draining(), locality: e.Locality}
			key := net.JoinHostPort(lb.address, strconv.Itoa(int(lb.port)))
			if first, dup := from[key]; dup {
				t.notef("%s: endpoint %s is listed by clusters %s and %s; the gateway keeps the first", name, key, first, c.Name)
				continue
			}
			from[key] = c.Name
			eps = append(eps, lb)
		}
	}
	slices.SortFunc(eps, func(a, b lbEndpoint) int {
		return cmp.Or(a.locality.Compare(b.locality), cmp.Compare(a.address, b.address), cmp.Compare(a.port, b.port))
	})
	cla := &endpoint.ClusterLoadAssignment{ClusterName: name}
	var cur *endpoint.LocalityLbEndpoints
	for i, e := range eps {
		if i == 0 || e.locality != eps[i-1].locality {
			cur = &endpoint.LocalityLbEndpoints{
				Locality:            &core.Locality{Region: e.locality.Region, Zone: e.locality.Zone, SubZone: e.locality.SubZone},
				LoadBalancingWeight: wrapperspb.UInt32(0),
			}
			cla.Endpoints = append(cla.Endpoints, cur)
		}
		health := core.HealthStatus_HEALTHY
		if e.draining {
			health = core.HealthStatus_DRAINING
		}
		cur.LbEndpoints = append(cur.LbEndpoints, &endpoint.LbEndpoint{
			HostIdentifier:      &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{Address: socketAddress(e.address, e.port)}},
			HealthStatus:        health,
			LoadBalancingWeight: wrapperspb.UInt32(1),
		})
		cur.LoadBalancingWeight.Value++
	}
	return cla
}

func socketAddress(addr string, port uint32) *core.Address {
	return &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
		Protocol:      core.SocketAddress_TCP,
		Address:       addr,
		PortSpecifier: &core.SocketAddress_PortValue{PortValue: port},
	}}}
}

// mustAny wraps a message this package built; marshalling a well-formed
// message cannot fail.
func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic("gateway: marshal " + string(proto.MessageName(m)) + ": " + err.Error())
	}
	return a
}
