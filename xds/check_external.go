package xds

import (
	"net/netip"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"

	"github.com/horizonmesh/horizon/discovery"
)

// checkInlineCluster checks a cluster that carries its endpoints itself
// (an external service's: STATIC, STRICT_DNS, LOGICAL_DNS) against Envoy's
// documented semantics of those types
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/service_discovery):
// a load_assignment for the cluster, with IP addresses for STATIC and
// host names for the DNS types, exactly one endpoint for LOGICAL_DNS
// ("only a single host", a cluster with more is rejected); every health
// check with a timeout, an interval, both thresholds and a checker
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/health_check.proto);
// and originated TLS that verifies the server (a trusted CA and a SNI).
func checkInlineCluster(c *cluster.Cluster, fail func(string, ...any)) {
	name := c.GetName()
	switch c.GetType() {
	case cluster.Cluster_STATIC, cluster.Cluster_STRICT_DNS, cluster.Cluster_LOGICAL_DNS:
	default:
		return
	}
	la := c.GetLoadAssignment()
	if la == nil || la.GetClusterName() != name {
		fail("cluster %q: %s without a load_assignment of its own name", name, c.GetType())
		return
	}
	n := 0
	for _, lle := range la.GetEndpoints() {
		for _, lb := range lle.GetLbEndpoints() {
			n++
			addr := lb.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()
			_, err := netip.ParseAddr(addr)
			switch {
			case c.GetType() == cluster.Cluster_STATIC && err != nil:
				fail("cluster %q: STATIC endpoint %q is not an IP address", name, addr)
			case c.GetType() != cluster.Cluster_STATIC && (err == nil || !discovery.IsDNSName(addr)):
				fail("cluster %q: %s endpoint %q is not a host name", name, c.GetType(), addr)
			}
		}
	}
	switch {
	case n == 0:
		fail("cluster %q: %s with no endpoint", name, c.GetType())
	case n > 1 && c.GetType() == cluster.Cluster_LOGICAL_DNS:
		fail("cluster %q: LOGICAL_DNS with %d endpoints; Envoy takes exactly one", name, n)
	}
	for i, hc := range c.GetHealthChecks() {
		if hc.GetTimeout().AsDuration() <= 0 || hc.GetInterval().AsDuration() <= 0 ||
			hc.GetHealthyThreshold().GetValue() == 0 || hc.GetUnhealthyThreshold().GetValue() == 0 || hc.GetHealthChecker() == nil {
			fail("cluster %q: health check %d needs a timeout, an interval, both thresholds and a checker", name, i)
		}
	}
	if ts := c.GetTransportSocket(); ts.GetName() == wellknown.TransportSocketTLS {
		var tls tlsv3.UpstreamTlsContext
		if err := unmarshal(ts.GetTypedConfig().GetValue(), &tls); err != nil {
			fail("cluster %q: transport socket: %v", name, err)
			return
		}
		if tls.GetSni() == "" || tls.GetCommonTlsContext().GetValidationContext().GetTrustedCa() == nil {
			fail("cluster %q: originated TLS without a SNI or a trusted CA: the server would not be verified", name)
		}
	}
}

// addExternalAddresses adds the addresses a view's assignments may hold for
// external services to the view's address book (their IP addresses and
// the addresses Horizon resolved for their names), for the services the
// view's network reaches.
func addExternalAddresses(cs *discovery.ClusterSet, network string, book map[string]bool) {
	for i := range cs.External {
		e := &cs.External[i]
		if !e.ReachableFrom(network) {
			continue
		}
		for _, ep := range e.Endpoints {
			if e.Resolution == discovery.ResolveStatic {
				book[ep.Address] = true
			}
		}
		for _, addrs := range e.Resolved {
			for _, a := range addrs {
				book[a] = true
			}
		}
	}
}
