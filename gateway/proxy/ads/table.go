package ads

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"

	"github.com/horizonmesh/horizon/gateway/proxy/sni"
)

// edsServiceNames are the assignment names the clusters need, sorted.
func edsServiceNames(clusters map[string]*clusterv3.Cluster) []string {
	var names []string
	for _, c := range clusters {
		if c.GetType() == clusterv3.Cluster_EDS {
			names = append(names, edsName(c))
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

func edsName(c *clusterv3.Cluster) string {
	if n := c.GetEdsClusterConfig().GetServiceName(); n != "" {
		return n
	}
	return c.GetName()
}

// listenerRoutes reads a listener's SNI → cluster routes: every filter chain
// that matches server names and ends in a tcp_proxy to one cluster. Chains
// without server names or without tcp_proxy route nothing here; a tcp_proxy
// that cannot be read, weighted clusters, or one name matched by two chains
// make the listener unusable.
func listenerRoutes(l *listener.Listener) (map[string]string, error) {
	routes := map[string]string{}
	for i, fc := range l.GetFilterChains() {
		names := fc.GetFilterChainMatch().GetServerNames()
		if len(names) == 0 {
			continue
		}
		var target string
		for _, f := range fc.GetFilters() {
			tc := f.GetTypedConfig()
			if f.GetName() != wellknown.TCPProxy && (tc == nil || !strings.HasSuffix(tc.GetTypeUrl(), "tcp_proxy.v3.TcpProxy")) {
				continue
			}
			var tp tcpproxy.TcpProxy
			if tc == nil {
				return nil, fmt.Errorf("listener %q: filter chain %d: tcp_proxy without typed config", l.GetName(), i)
			}
			if err := tc.UnmarshalTo(&tp); err != nil {
				return nil, fmt.Errorf("listener %q: filter chain %d: tcp_proxy: %w", l.GetName(), i, err)
			}
			if tp.GetCluster() == "" {
				return nil, fmt.Errorf("listener %q: filter chain %d: tcp_proxy without a single cluster (weighted clusters are not supported)", l.GetName(), i)
			}
			target = tp.GetCluster()
			break
		}
		if target == "" {
			continue
		}
		for _, n := range names {
			n = strings.ToLower(n)
			if strings.HasPrefix(n, "*") {
				continue // wildcards: the table matches exact names only
			}
			if prev, ok := routes[n]; ok && prev != target {
				return nil, fmt.Errorf("listener %q: server name %q matched by two filter chains", l.GetName(), n)
			}
			routes[n] = target
		}
	}
	return routes, nil
}

// gatewayTable is the routing table of the accepted resources, pure: for each
// server name a listener routes, the usable endpoints of its cluster. When
// listeners disagree on a name, the first listener by name wins. Names whose
// cluster is unknown or has no usable endpoint are left out (refused as
// unknown_sni until their endpoints arrive).
func gatewayTable(listeners map[string]*listener.Listener, clusters map[string]*clusterv3.Cluster, assignments map[string]*endpoint.ClusterLoadAssignment) sni.Table {
	table := sni.Table{}
	for _, name := range slices.Sorted(maps.Keys(listeners)) {
		routes, err := listenerRoutes(listeners[name])
		if err != nil {
			continue // not accepted in the first place
		}
		for server, clusterName := range routes {
			if _, ok := table[server]; ok {
				continue
			}
			c, ok := clusters[clusterName]
			if !ok {
				continue
			}
			var cla *endpoint.ClusterLoadAssignment
			switch c.GetType() {
			case clusterv3.Cluster_EDS:
				cla = assignments[edsName(c)]
			case clusterv3.Cluster_STATIC, clusterv3.Cluster_STRICT_DNS, clusterv3.Cluster_LOGICAL_DNS:
				cla = c.GetLoadAssignment()
			}
			if addrs := usableEndpoints(cla); len(addrs) > 0 {
				table[server] = addrs
			}
		}
	}
	return table
}

// usableEndpoints are the addresses of the healthy or unknown-health
// endpoints of the assignment's best priority that has any, in order,
// without duplicates. Weights are not used: the gateway balances round robin.
func usableEndpoints(cla *endpoint.ClusterLoadAssignment) []string {
	byPriority := map[uint32][]string{}
	for _, le := range cla.GetEndpoints() {
		for _, lb := range le.GetLbEndpoints() {
			switch lb.GetHealthStatus() {
			case core.HealthStatus_UNKNOWN, core.HealthStatus_HEALTHY:
			default:
				continue
			}
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			port, ok := sa.GetPortSpecifier().(*core.SocketAddress_PortValue)
			if sa == nil || !ok || sa.GetAddress() == "" {
				continue
			}
			addr := net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(port.PortValue)))
			p := le.GetPriority()
			if !slices.Contains(byPriority[p], addr) {
				byPriority[p] = append(byPriority[p], addr)
			}
		}
	}
	if len(byPriority) == 0 {
		return nil
	}
	return byPriority[slices.Min(slices.Collect(maps.Keys(byPriority)))]
}
