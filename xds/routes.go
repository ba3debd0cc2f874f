package xds

import (
	"encoding/binary"
	"maps"
	"slices"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/policyfile"
)

// Route rules (the policy file's routes:) in a view.
//
// A host with rules gets one route per rule the view's proxy is selected by
// (from: is resolved here, per view: its cluster and locality), in file
// order, then the host's usual route to the whole service unless the last
// rule takes every request. Envoy and grpc-go both take the first route
// whose match holds
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/route/v3/route_components.proto#envoy-v3-api-field-config-route-v3-virtualhost-routes).
//
// A destination that is a subset (by labels, by member cluster, or both)
// has an EDS cluster of its own, named by discovery.SubsetClusterName
// (outbound_.8080_.v2_.echo.demo.svc.clusterset.local), whose assignment is
// loadAssignment's over the subset's endpoints alone: split horizon holds
// as for the whole service, remote endpoints reached only through their
// network's gateway, each gateway weighted by the subset's endpoints behind
// it. The cluster's SNI is its name, and the gateway routes that SNI to the
// subset's endpoints (gateway.Options.Subsets): the gateway's SNI names the
// subset.
//
// What grpc-go's xDS client does not do is left out of a proxyless view and
// noted (`horizon view` shows the notes): request header rewrites, the
// route timeout (sent as max_stream_duration instead, which grpc-go
// applies), per-try timeouts and retries on other than gRPC status codes.

// routedHosts prepares the route rules of a view: the rules of every host
// that selects the view's proxy, and the subset hosts their destinations
// name (t.subsets, rendered by subsetResources). hosts are the view's
// hosts and ports.
func (t *translator) routedHosts(hosts []*hostPort) {
	if t.policy.File == nil || len(t.policy.File.Routes) == 0 {
		return
	}
	t.byName = make(map[string]*hostPort, len(hosts))
	for _, h := range hosts {
		t.byName[h.name()] = h
	}
	for _, h := range hosts {
		hr := t.policy.File.RoutesFor(h.host)
		if hr == nil {
			continue
		}
		if t.group.Role == Sidecar && !h.port.IsHTTP() {
			t.notef("%s: route rules apply to HTTP ports; port %d is TCP and goes to the whole service", h.host, h.port.Port)
			continue
		}
		for i := range hr.Rules {
			r := &hr.Rules[i]
			if !r.From.Holds(t.group.Cluster, t.group.Locality) {
				continue
			}
			for _, d := range r.To {
				t.destination(h, d)
			}
		}
	}
}

// destination returns the host and port, or subset of it, a rule of host h
// sends a share to, and whether the view has it (a destination service
// without h's port, or not reachable from the view's cluster, is not).
func (t *translator) destination(h *hostPort, d policyfile.Destination) (*hostPort, bool) {
	target := h
	if d.Service != h.key {
		target = t.byName[discovery.ClusterName(discovery.Host(d.Service, h.scope), h.port.Port)]
		if target == nil {
			t.notef("%s: route destination %s has no port %d in this view; its share is left out", h.name(), d.Service, h.port.Port)
			return nil, false
		}
	}
	if d.Subset.IsZero() {
		return target, true
	}
	name := discovery.SubsetClusterName(target.host, target.port.Port, d.Subset)
	if s, ok := t.subsets[name]; ok {
		return s, true
	}
	s := *target
	s.cluster = name
	s.set = nil
	s.backends = nil
	n := 0
	for _, b := range target.backends {
		if d.Subset.Cluster != "" && b.cluster.Name != d.Subset.Cluster {
			continue
		}
		svc := *b.svc
		svc.Endpoints = nil
		for i := range b.svc.Endpoints {
			if e := &b.svc.Endpoints[i]; d.Subset.Has(b.cluster.Name, e) {
				svc.Endpoints = append(svc.Endpoints, *e)
			}
		}
		n += len(svc.Endpoints)
		s.backends = append(s.backends, backend{cluster: b.cluster, svc: &svc})
	}
	if n == 0 {
		t.notef("%s: subset %s has no endpoints", name, d.Subset)
	}
	if t.subsets == nil {
		t.subsets = map[string]*hostPort{}
	}
	t.subsets[name] = &s
	return &s, true
}

// subsetResources renders the EDS cluster and assignment of every subset
// the view's routes send to, the cluster with build (sidecarCluster or
// proxylessCluster).
func (t *translator) subsetResources(build func(*hostPort) *cluster.Cluster) {
	for _, name := range slices.Sorted(maps.Keys(t.subsets)) {
		s := t.subsets[name]
		t.out.Clusters = append(t.out.Clusters, build(s))
		t.out.Endpoints = append(t.out.Endpoints, t.loadAssignment(s))
	}
}

// routed reports whether a host has route rules in the policy (its
// rendering then reads other hosts: see appendRouteInputs).
func (t *translator) routed(h *hostPort) bool {
	return t.policy.File != nil && t.policy.File.RoutesFor(h.host) != nil
}

// appendRouteInputs appends to a digest's bytes what the routes of host h
// read of the view beyond h itself and the policy: the cluster name of
// every destination of a rule that selects the view's proxy (its length,
// then itself), and whether the view has it (1 or 0). A subset's cluster
// name follows from its host's and the rule; the subset's endpoints are in
// its own assignment, not in the route. A sidecar's route configuration of
// a port, and a proxyless host's route, are remembered with these in their
// digest (translator.port, translator.hostDigest).
func (t *translator) appendRouteInputs(b []byte, h *hostPort) []byte {
	if t.policy.File == nil {
		return b
	}
	hr := t.policy.File.RoutesFor(h.host)
	if hr == nil {
		return b
	}
	for i := range hr.Rules {
		r := &hr.Rules[i]
		if !r.From.Holds(t.group.Cluster, t.group.Locality) {
			continue
		}
		for _, d := range r.To {
			if d.Service == h.key {
				continue // h itself
			}
			name := discovery.ClusterName(discovery.Host(d.Service, h.scope), h.port.Port)
			b = binary.AppendUvarint(b, uint64(len(name)))
			b = append(b, name...)
			if t.byName[name] != nil {
				b = append(b, 1)
			} else {
				b = append(b, 0)
			}
		}
	}
	return b
}

// ruleRoutes renders the view's rules of host h followed by fallback, the
// host's route to the whole service (left out after a rule that takes
// every request). proxyless selects grpc-go's subset.
func (t *translator) ruleRoutes(h *hostPort, fallback *route.Route, proxyless bool) []*route.Route {
	hr := t.policy.File.RoutesFor(h.host)
	if hr == nil {
		return []*route.Route{fallback}
	}
	set := t.settings(h)
	var out []*route.Route
	for i := range hr.Rules {
		r := &hr.Rules[i]
		if !r.From.Holds(t.group.Cluster, t.group.Locality) {
			continue
		}
		rt := t.ruleRoute(h, r, set, proxyless)
		if rt == nil {
			continue
		}
		out = append(out, rt)
		if r.CatchAll() {
			return out
		}
	}
	return append(out, fallback)
}

// ruleRoute renders one rule, nil when none of its destinations is in the
// view (noted).
func (t *translator) ruleRoute(h *hostPort, r *policyfile.RouteRule, set *policyfile.Settings, proxyless bool) *route.Route {
	var clusters []*route.WeightedCluster_ClusterWeight
	for _, d := range r.To {
		dh, ok := t.destination(h, d)
		if !ok {
			continue
		}
		clusters = append(clusters, &route.WeightedCluster_ClusterWeight{Name: dh.name(), Weight: wrapperspb.UInt32(d.Weight)})
	}
	if len(clusters) == 0 {
		t.notef("%s: route rule %s (line %d) has no destination in this view and is left out", h.host, r.Name, r.Line)
		return nil
	}
	action := &route.RouteAction{Timeout: zeroDuration}
	if len(clusters) == 1 {
		action.ClusterSpecifier = &route.RouteAction_Cluster{Cluster: clusters[0].GetName()}
	} else {
		// weighted_clusters: each cluster gets weight/sum of the
		// requests; total_weight is deprecated and left out, so the sum
		// of the weights is the total
		// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/route/v3/route_components.proto#envoy-v3-api-msg-config-route-v3-weightedcluster).
		action.ClusterSpecifier = &route.RouteAction_WeightedClusters{WeightedClusters: &route.WeightedCluster{Clusters: clusters}}
	}
	retries := r.Retries
	if retries == nil && !r.RetriesOff {
		retries = set.Retries // the host's
	}
	rt := &route.Route{Name: r.Name, Match: routeMatch(r), Action: &route.Route_Route{Route: action}}
	if proxyless {
		if r.Timeout > 0 {
			// grpc-go reads the request deadline from max_stream_duration,
			// not from timeout (gRFC A31).
			action.MaxStreamDuration = &route.RouteAction_MaxStreamDuration{MaxStreamDuration: durationpb.New(r.Timeout)}
		}
		action.RetryPolicy = t.proxylessRetries(h, retries)
		if len(r.AddHeaders) > 0 || len(r.RemoveHeaders) > 0 {
			t.notef("%s: route rule %s: proxyless gRPC does not rewrite request headers; its headers: add/remove are not applied", h.host, r.Name)
		}
		return rt
	}
	if r.Timeout > 0 {
		action.Timeout = durationpb.New(r.Timeout)
	}
	action.RetryPolicy = t.parts.sidecarRetries(retries)
	for _, hv := range r.AddHeaders {
		rt.RequestHeadersToAdd = append(rt.RequestHeadersToAdd, &core.HeaderValueOption{
			Header:       &core.HeaderValue{Key: hv.Name, Value: hv.Value},
			AppendAction: core.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		})
	}
	rt.RequestHeadersToRemove = slices.Clone(r.RemoveHeaders)
	return rt
}

// routeMatch renders a rule's path and header conditions (from: was
// resolved by selecting the rule for the view).
func routeMatch(r *policyfile.RouteRule) *route.RouteMatch {
	m := &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}}
	if p := r.Path; p != nil {
		switch p.Kind {
		case policyfile.MatchExact:
			m.PathSpecifier = &route.RouteMatch_Path{Path: p.Value}
		case policyfile.MatchPrefix:
			m.PathSpecifier = &route.RouteMatch_Prefix{Prefix: p.Value}
		case policyfile.MatchRegex:
			// safe_regex matches the whole path (RE2), as the file's regex does.
			m.PathSpecifier = &route.RouteMatch_SafeRegex{SafeRegex: &matcher.RegexMatcher{Regex: p.Value}}
		}
	}
	for _, h := range r.Headers {
		hm := &route.HeaderMatcher{Name: h.Name}
		switch h.Kind {
		case policyfile.MatchPresent:
			hm.HeaderMatchSpecifier = &route.HeaderMatcher_PresentMatch{PresentMatch: true}
		default:
			hm.HeaderMatchSpecifier = &route.HeaderMatcher_StringMatch{StringMatch: stringMatcher(h.StringMatch)}
		}
		m.Headers = append(m.Headers, hm)
	}
	return m
}

func stringMatcher(s policyfile.StringMatch) *matcher.StringMatcher {
	switch s.Kind {
	case policyfile.MatchPrefix:
		return &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Prefix{Prefix: s.Value}}
	case policyfile.MatchRegex:
		return &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_SafeRegex{SafeRegex: &matcher.RegexMatcher{Regex: s.Value}}}
	}
	return &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: s.Value}}
}

// routeClusters lists the clusters a route sends to: its cluster, or its
// weighted clusters (Check resolves them).
func routeClusters(rt *route.Route) []string {
	a := rt.GetRoute()
	if c := a.GetCluster(); c != "" {
		return []string{c}
	}
	var out []string
	for _, wc := range a.GetWeightedClusters().GetClusters() {
		out = append(out, wc.GetName())
	}
	return out
}
