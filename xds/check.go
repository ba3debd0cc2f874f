package xds

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/horizonmesh/horizon/discovery"
)

type validator interface{ ValidateAll() error }

// Check is the gate every view passes before it is published: each resource
// passes its proto validation, names are unique, every reference resolves
// (listener → route → cluster → assignment), and every assignment keeps the
// split-horizon invariants for the view's network.
func Check(r *Resources, cs *discovery.ClusterSet, g Group) error { return check(r, cs, g, nil) }

// check is Check skipping what a render reused from a checked one: reused
// messages were validated when first rendered (memo.go).
func check(r *Resources, cs *discovery.ClusterSet, g Group, reused map[types.Resource]bool) error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	for _, typeURL := range TypeURLs {
		seen := map[string]bool{}
		for _, res := range r.ByType(typeURL) {
			name := ResourceName(res)
			if seen[name] {
				fail("%s %q: defined twice", ShortType(typeURL), name)
			}
			seen[name] = true
			if reused[res] {
				continue // validated when it was first rendered (memo.go)
			}
			if err := validate(res); err != nil {
				fail("%s %q: %w", ShortType(typeURL), name, err)
			}
		}
	}

	clusters := map[string]*cluster.Cluster{}
	for _, c := range r.Clusters {
		clusters[c.GetName()] = c
	}
	assignments := map[string]*endpoint.ClusterLoadAssignment{}
	for _, cla := range r.Endpoints {
		assignments[cla.GetClusterName()] = cla
	}
	routes := map[string]bool{}
	for _, rc := range r.Routes {
		routes[rc.GetName()] = true
		for _, vh := range rc.GetVirtualHosts() {
			for _, rt := range vh.GetRoutes() {
				for _, c := range routeClusters(rt) { // a cluster or weighted clusters
					if clusters[c] == nil {
						fail("route %q: virtual host %q: unknown cluster %q", rc.GetName(), vh.GetName(), c)
					}
				}
			}
		}
	}
	for _, c := range r.Clusters {
		checkInlineCluster(c, fail)
		if c.GetType() == cluster.Cluster_EDS {
			name := c.GetEdsClusterConfig().GetServiceName()
			if name == "" {
				name = c.GetName()
			}
			cla := assignments[name]
			if cla == nil {
				fail("cluster %q: no ClusterLoadAssignment %q", c.GetName(), name)
				continue
			}
			if why := localityWeightsMatter(cla); why != "" && c.GetCommonLbConfig().GetLocalityWeightedLbConfig() == nil {
				fail("cluster %q: %s, but the cluster does not enable locality weighted load balancing (common_lb_config.locality_weighted_lb_config), so Envoy would ignore the locality weights", c.GetName(), why)
			}
		}
	}
	for _, l := range r.Listeners {
		checkListener(l, routes, clusters, fail)
	}

	gateways, pods := addressBook(cs, g)
	for _, cla := range r.Endpoints {
		if clusters[cla.GetClusterName()] == nil {
			fail("assignment %q: no cluster uses it", cla.GetClusterName())
		}
		if reused[cla] {
			// Rendered before from the same backends (memo.go), whose
			// addresses are all still in the address book: it was checked then.
			continue
		}
		errs = append(errs, checkAssignment(cla, gateways, pods, r.fixedWeights[cla.GetClusterName()])...)
	}
	return errors.Join(errs...)
}

// validate runs a resource's proto validation (ValidateAll). A route
// configuration is validated as validRoutes says, which is faster and
// equivalent.
func validate(res types.Resource) error {
	if rc, ok := res.(*route.RouteConfiguration); ok {
		if validRoutes(rc) {
			return nil
		}
		return rc.ValidateAll() // the error, in go-control-plane's words
	}
	if v, ok := res.(validator); ok {
		return v.ValidateAll()
	}
	return nil
}

// validRoutes reports whether rc.ValidateAll() finds nothing, without the
// regular expression go-control-plane's validation matches every virtual
// host domain against (^[^\x00\n\r]*$, once per domain: most of the cost
// of validating a sidecar's routes). The generated validation checks each
// field on its own, and a route configuration's virtual hosts one by one,
// so rc passes it exactly when
//
//   - a shallow copy of rc without its virtual hosts passes it, and
//   - every virtual host's domains pass their rules (at least one domain,
//     none containing NUL, LF or CR: validDomain), and a copy of the virtual
//     host with one valid domain in place of its own passes it.
//
// TestValidRoutesMatchesValidateAll and FuzzValidRoutes hold it to
// ValidateAll.
func validRoutes(rc *route.RouteConfiguration) bool {
	if rc == nil {
		return true
	}
	rest := shallowCopy(rc)
	rest.VirtualHosts = nil
	if rest.ValidateAll() != nil {
		return false
	}
	var standIn route.VirtualHost // reused from host to host
	for _, vh := range rc.GetVirtualHosts() {
		if vh == nil {
			continue // valid, as ValidateAll of a nil message
		}
		if len(vh.GetDomains()) == 0 {
			return false
		}
		for _, d := range vh.GetDomains() {
			if !validDomain(d) {
				return false
			}
		}
		copyVirtualHost(&standIn, vh)
		standIn.Domains = standInDomains
		if standIn.ValidateAll() != nil {
			return false
		}
	}
	return true
}

// copyVirtualHost sets every field of dst to src's (sub-messages, lists and
// maps shared, not copied). TestCopyVirtualHostCopiesEveryField fails when
// go-control-plane's VirtualHost gains a field this does not copy.
func copyVirtualHost(dst, src *route.VirtualHost) {
	dst.Name = src.Name
	dst.Domains = src.Domains
	dst.Routes = src.Routes
	dst.Matcher = src.Matcher
	dst.RequireTls = src.RequireTls
	dst.VirtualClusters = src.VirtualClusters
	dst.RateLimits = src.RateLimits
	dst.RequestHeadersToAdd = src.RequestHeadersToAdd
	dst.RequestHeadersToRemove = src.RequestHeadersToRemove
	dst.ResponseHeadersToAdd = src.ResponseHeadersToAdd
	dst.ResponseHeadersToRemove = src.ResponseHeadersToRemove
	dst.Cors = src.Cors
	dst.TypedPerFilterConfig = src.TypedPerFilterConfig
	dst.IncludeRequestAttemptCount = src.IncludeRequestAttemptCount
	dst.IncludeAttemptCountInResponse = src.IncludeAttemptCountInResponse
	dst.RetryPolicy = src.RetryPolicy
	dst.RetryPolicyTypedConfig = src.RetryPolicyTypedConfig
	dst.HedgePolicy = src.HedgePolicy
	dst.IncludeIsTimeoutRetryHeader = src.IncludeIsTimeoutRetryHeader
	dst.PerRequestBufferLimitBytes = src.PerRequestBufferLimitBytes
	dst.RequestBodyBufferLimit = src.RequestBodyBufferLimit
	dst.RequestMirrorPolicies = src.RequestMirrorPolicies
	dst.Metadata = src.Metadata
	dst.RouteSpecifiers = src.RouteSpecifiers
}

// standInDomains is a domain list that passes a virtual host's rules.
var standInDomains = []string{"*"}

// validDomain reports whether a virtual host domain matches go-control-plane's
// pattern for it, ^[^\x00\n\r]*$: whether it holds none of the bytes NUL,
// LF and CR. (Go's regexp reads invalid UTF-8 as U+FFFD, which the class
// admits, and those three bytes are never part of a multi-byte sequence, so
// a byte scan decides the same.) TestValidDomain and FuzzValidDomain hold it
// to the pattern.
func validDomain(d string) bool { return !strings.ContainsAny(d, "\x00\n\r") }

// shallowCopy returns a new message of m's type whose populated fields hold
// m's values (sub-messages and lists shared, not copied), for validation.
func shallowCopy[M proto.Message](m M) M {
	src := m.ProtoReflect()
	dst := src.New()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		dst.Set(fd, v)
		return true
	})
	return dst.Interface().(M)
}

func checkListener(l *listener.Listener, routes map[string]bool, clusters map[string]*cluster.Cluster, fail func(string, ...any)) {
	check := func(where string, m interface{ GetTypeUrl() string }, value []byte) {
		switch m.GetTypeUrl() {
		case "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager":
			var h hcm.HttpConnectionManager
			if err := unmarshal(value, &h); err != nil {
				fail("listener %q: %s: %w", l.GetName(), where, err)
				return
			}
			if rds := h.GetRds(); rds != nil && !routes[rds.GetRouteConfigName()] {
				fail("listener %q: %s: unknown route configuration %q", l.GetName(), where, rds.GetRouteConfigName())
			}
		case "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy":
			var tp tcpproxy.TcpProxy
			if err := unmarshal(value, &tp); err != nil {
				fail("listener %q: %s: %w", l.GetName(), where, err)
				return
			}
			if c := tp.GetCluster(); c != "" && clusters[c] == nil {
				fail("listener %q: %s: unknown cluster %q", l.GetName(), where, c)
			}
		}
	}
	if a := l.GetApiListener().GetApiListener(); a != nil {
		check("api_listener", a, a.GetValue())
	}
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			if tc := f.GetTypedConfig(); tc != nil {
				check("filter "+f.GetName(), tc, tc.GetValue())
			}
		}
	}
}

// localityWeightsMatter says why Envoy must honour an assignment's locality
// weights, or "" when they change nothing: several localities share a
// priority, or a locality carries an explicit weight. Envoy reads
// LocalityLbEndpoints.load_balancing_weight only under locality weighted load
// balancing and otherwise spreads a priority by host weight alone:
// https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/locality_weight
func localityWeightsMatter(cla *endpoint.ClusterLoadAssignment) string {
	perPriority := map[uint32]int{}
	for _, lle := range cla.GetEndpoints() {
		perPriority[lle.GetPriority()]++
		if n := perPriority[lle.GetPriority()]; n > 1 {
			return fmt.Sprintf("its assignment has %d localities in priority %d", n, lle.GetPriority())
		}
	}
	for _, lle := range cla.GetEndpoints() {
		if lle.GetLoadBalancingWeight() != nil {
			return fmt.Sprintf("its assignment weighs locality %s", localityOf(lle.GetLocality()))
		}
	}
	return ""
}

// addressBook lists, for a view's network, the gateway addresses every other
// network advertises to it and the pod addresses of its own.
func addressBook(cs *discovery.ClusterSet, g Group) (gateways, pods map[string]bool) {
	gateways, pods = map[string]bool{}, map[string]bool{}
	for i := range cs.Clusters {
		c := &cs.Clusters[i]
		if c.Network != g.Network {
			for _, gw := range c.GatewaysFor(g.Network) {
				gateways[gw.String()] = true
			}
			continue
		}
		for _, s := range c.Services {
			for _, e := range s.Endpoints {
				pods[e.Address] = true
			}
		}
	}
	addExternalAddresses(cs, g.Network, pods)
	return gateways, pods
}

// checkAssignment checks one assignment; fixed says the policy fixes its
// locality weights (distribute), which then need not be its endpoints' sums.
func checkAssignment(cla *endpoint.ClusterLoadAssignment, gateways, pods map[string]bool, fixed bool) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("assignment %q: "+format, append([]any{cla.GetClusterName()}, args...)...))
	}
	seen := map[string]bool{}
	priorities := map[uint32]bool{}
	maxPriority := uint32(0)
	for _, lle := range cla.GetEndpoints() {
		priorities[lle.GetPriority()] = true
		maxPriority = max(maxPriority, lle.GetPriority())
		if lle.GetLoadBalancingWeight().GetValue() == 0 {
			fail("locality %v has no weight", lle.GetLocality())
		}
		sum := uint32(0)
		for _, lb := range lle.GetLbEndpoints() {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			addr := sa.GetAddress()
			hostPort := net.JoinHostPort(addr, strconv.Itoa(int(sa.GetPortValue())))
			if seen[hostPort] {
				fail("address %s appears twice", hostPort)
			}
			seen[hostPort] = true
			w := lb.GetLoadBalancingWeight().GetValue()
			if w == 0 {
				fail("endpoint %s has no weight", hostPort)
			}
			sum += w
			if !pods[addr] && !gateways[hostPort] {
				fail("endpoint %s is neither a pod on the view's network nor a known gateway of another network", hostPort)
			}
		}
		if !fixed && sum != lle.GetLoadBalancingWeight().GetValue() {
			fail("locality %v weight %d, but its endpoints weigh %d", lle.GetLocality(), lle.GetLoadBalancingWeight().GetValue(), sum)
		}
	}
	if len(cla.GetEndpoints()) > 0 {
		for p := uint32(0); p <= maxPriority; p++ {
			if !priorities[p] {
				fail("priorities are not contiguous: %d is missing", p)
			}
		}
	}
	return errs
}
