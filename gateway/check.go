package gateway

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
)

// Check is what every gateway configuration Translate returns satisfies:
// each resource passes its proto validation; names are unique; every filter
// chain matches SNIs no other chain matches and passes TCP through to a
// cluster that exists; every EDS cluster has exactly one assignment and every
// assignment a cluster; every locality and endpoint has a weight, the
// locality's being the sum of its endpoints'; and no address appears twice in
// an assignment; and every listener and cluster bounds its connections'
// buffers.
func Check(r *Resources) error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	type validator interface{ ValidateAll() error }
	validate := func(kind, name string, v validator) {
		if err := v.ValidateAll(); err != nil {
			fail("%s %q: %w", kind, name, err)
		}
	}

	listeners := map[string]bool{}
	for _, l := range r.Listeners {
		validate("listener", l.GetName(), l)
		if listeners[l.GetName()] {
			fail("listener %q: defined twice", l.GetName())
		}
		listeners[l.GetName()] = true
		if l.GetPerConnectionBufferLimitBytes().GetValue() == 0 {
			fail("listener %q: no per-connection buffer limit", l.GetName())
		}
	}
	clusters := map[string]*cluster.Cluster{}
	for _, c := range r.Clusters {
		validate("cluster", c.GetName(), c)
		if clusters[c.GetName()] != nil {
			fail("cluster %q: defined twice", c.GetName())
		}
		clusters[c.GetName()] = c
		if c.GetPerConnectionBufferLimitBytes().GetValue() == 0 {
			fail("cluster %q: no per-connection buffer limit", c.GetName())
		}
	}
	assignments := map[string]int{}
	for _, cla := range r.Endpoints {
		name := cla.GetClusterName()
		validate("assignment", name, cla)
		assignments[name]++
		if clusters[name] == nil {
			fail("assignment %q: no cluster uses it", name)
		}
		errs = append(errs, checkAssignment(name, cla.GetEndpoints())...)
	}
	for _, c := range r.Clusters {
		if c.GetType() != cluster.Cluster_EDS {
			continue
		}
		name := c.GetEdsClusterConfig().GetServiceName()
		if name == "" {
			name = c.GetName()
		}
		if n := assignments[name]; n != 1 {
			fail("cluster %q: %d ClusterLoadAssignments %q, want exactly one", c.GetName(), n, name)
		}
	}

	for _, l := range r.Listeners {
		snis := map[string]string{} // server name -> chain
		for _, fc := range l.GetFilterChains() {
			where := fmt.Sprintf("listener %q: filter chain %q", l.GetName(), fc.GetName())
			if len(fc.GetFilterChainMatch().GetServerNames()) == 0 {
				fail("%s: matches no server name (a catch-all)", where)
			}
			for _, sni := range fc.GetFilterChainMatch().GetServerNames() {
				if other, dup := snis[sni]; dup {
					fail("%s: server name %q is matched by filter chain %q too", where, sni, other)
				}
				snis[sni] = fc.GetName()
			}
			if len(fc.GetFilters()) != 1 {
				fail("%s: %d filters, want one tcp_proxy", where, len(fc.GetFilters()))
				continue
			}
			var tp tcpproxy.TcpProxy
			if err := fc.GetFilters()[0].GetTypedConfig().UnmarshalTo(&tp); err != nil {
				fail("%s: %w", where, err)
				continue
			}
			if c := tp.GetCluster(); clusters[c] == nil {
				fail("%s: unknown cluster %q", where, c)
			}
		}
		if l.GetDefaultFilterChain() != nil {
			fail("listener %q: has a default filter chain; an unknown SNI must find none", l.GetName())
		}
	}
	return errors.Join(errs...)
}

func checkAssignment(name string, localities []*endpoint.LocalityLbEndpoints) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("assignment %q: "+format, append([]any{name}, args...)...))
	}
	seen := map[string]bool{}
	for _, lle := range localities {
		if lle.GetLoadBalancingWeight().GetValue() == 0 {
			fail("locality %v has no weight", lle.GetLocality())
		}
		sum := uint32(0)
		for _, lb := range lle.GetLbEndpoints() {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			addr := net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))
			if seen[addr] {
				fail("address %s appears twice", addr)
			}
			seen[addr] = true
			w := lb.GetLoadBalancingWeight().GetValue()
			if w == 0 {
				fail("endpoint %s has no weight", addr)
			}
			sum += w
		}
		if sum != lle.GetLoadBalancingWeight().GetValue() {
			fail("locality %v weight %d, but its endpoints weigh %d", lle.GetLocality(), lle.GetLoadBalancingWeight().GetValue(), sum)
		}
	}
	return errs
}
