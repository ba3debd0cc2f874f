// This file reads the routes: section of the policy file (route.go holds
// its model): per host, label subsets and ordered HTTP route rules.

package policyfile

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/internal/yamlnode"
)

// Field names of the routes: section.
var (
	hostRoutesFields  = []string{"host", "subsets", "rules"}
	routeRuleFields   = []string{"name", "match", "to", "timeout", "retries", "headers"}
	routeMatchFields  = []string{"path", "headers", "from"}
	stringMatchFields = []string{"exact", "prefix", "regex"}
	headerMatchFields = []string{"exact", "prefix", "regex", "present"}
	fromFields        = []string{"cluster", "locality"}
	destinationFields = []string{"service", "subset", "cluster", "weight"}
	rewriteFields     = []string{"add", "remove"}
)

// Limits of the routes: section, as limits.go's: a list past its bound is
// reported at the list and none of it is read.
const (
	// MaxRouteHosts is the most hosts with routes: one per host of a
	// 10,000-service mesh.
	MaxRouteHosts = MaxRules
	// MaxRouteRules is the most rules of a host: each is tried in order
	// for every request (Envoy and gRPC alike).
	MaxRouteRules = 100
	// MaxSubsets is the most label subsets of a host; each is an Envoy
	// cluster in every view that reaches the host.
	MaxSubsets = 32
	// MaxSubsetLabels is the most labels of a subset.
	MaxSubsetLabels = 16
	// MaxRouteHeaders is the most header conditions of a rule, and
	// MaxRewrites the most headers it adds, or removes.
	MaxRouteHeaders = 16
	MaxRewrites     = 16
	// MaxDestinations is the most destinations of a rule: weights of at
	// least 1 add up to 100.
	MaxDestinations = routesTotal
	// MaxRegexLength bounds a regular expression (RE2 runs in time linear
	// in the input, its compiled size grows with the pattern).
	MaxRegexLength = 1024
)

var (
	routeHostsBound   = yamlnode.Bound{Max: MaxRouteHosts, What: "hosts"}
	routeRulesBound   = yamlnode.Bound{Max: MaxRouteRules, What: "rules"}
	subsetsBound      = yamlnode.Bound{Max: MaxSubsets, What: "subsets"}
	routeHeadersBound = yamlnode.Bound{Max: MaxRouteHeaders, What: "headers"}
	rewritesBound     = yamlnode.Bound{Max: MaxRewrites, What: "headers"}
	destinationsBound = yamlnode.Bound{Max: MaxDestinations, What: "destinations"}
)

// routesTotal is what a rule's destination weights add up to.
const routesTotal = 100

// routeErrorPath starts the path of every problem in the routes: section
// (RouteErrors counts them).
const routeErrorPath = "routes"

// routes reads the routes: section into pol.
func (c *checker) routes(top *yamlnode.Object, pol *File) {
	p := c.p
	pol.routesByHost = map[string]*HostRoutes{}
	if n := top.Get("routes"); n != nil && n.Kind != yaml.SequenceNode && !yamlnode.IsNull(n) {
		top.Errorf("routes", "want a list of hosts with route rules, got %s", yamlnode.Describe(n))
		return
	}
	lines := map[string]int{}
	for i, item := range top.List("routes", routeHostsBound) {
		path := index(routeErrorPath, i)
		if h := yamlnode.Peek(item, "host"); h != "" {
			path = index(routeErrorPath, h)
		}
		o := p.Object(item, path, hostRoutesFields...)
		if o == nil {
			continue
		}
		hr, ok := c.hostRoutes(o, item)
		if hr.Host == "" {
			continue
		}
		if first := lines[hr.Host]; first != 0 {
			o.Errorf("host", "host %s has routes already (at line %d)", hr.Host, first)
			continue
		}
		lines[hr.Host] = item.Line
		if ok {
			pol.Routes = append(pol.Routes, hr)
		}
	}
	for i := range pol.Routes {
		pol.routesByHost[pol.Routes[i].Host] = &pol.Routes[i]
	}
}

// hostRoutes reads one entry of routes:.
func (c *checker) hostRoutes(o *yamlnode.Object, item *yaml.Node) (HostRoutes, bool) {
	p := c.p
	nerrs := len(p.List)
	hr := HostRoutes{Line: item.Line}
	host := o.Str("host", true)
	if host == "" {
		return hr, false
	}
	k, scope, err := discovery.ParseHost(host)
	if err != nil || !discovery.IsDNSLabel(k.Namespace) || !discovery.IsDNSLabel(k.Name) {
		o.Errorf("host", "%q is not a service host <name>.<namespace>.svc.cluster.local or .svc.clusterset.local", host)
		return hr, false
	}
	hr.Host, hr.Service, hr.Scope = host, k, scope
	if first := c.routeHosts[host]; first != 0 {
		return hr, false // reported by routes
	}
	if c.routeHosts == nil {
		c.routeHosts = map[string]int{}
	}
	c.routeHosts[host] = item.Line
	if !c.topo.hasService(k) {
		o.Errorf("host", "unknown service %s: no cluster has it", k)
	}

	// subsets
	o.Entries("subsets", subsetsBound, func(kn *yaml.Node, name string, v *yaml.Node) {
		spath := index(join(o.Where(), "subsets"), name)
		switch {
		case !discovery.IsDNSLabel(name):
			p.Errorf(kn, spath, "subset name %q is not a DNS label (it is part of a cluster name and SNI)", name)
			return
		case name == discovery.AllSubset:
			p.Errorf(kn, spath, "%q is reserved (a cluster share of every endpoint)", name)
			return
		}
		s := NamedSubset{Name: name, Line: kn.Line, Labels: map[string]string{}}
		if v.Kind != yaml.MappingNode || len(v.Content) == 0 {
			p.Errorf(v, spath, "want the labels its endpoints carry, like {version: v2}, got %s", yamlnode.Describe(v))
			return
		}
		if len(v.Content)/2 > MaxSubsetLabels {
			p.Errorf(v, spath, "%d labels, at most %d", len(v.Content)/2, MaxSubsetLabels)
			return
		}
		for i := 0; i+1 < len(v.Content); i += 2 {
			lk, lv := v.Content[i], v.Content[i+1]
			key, ok1 := p.ScalarString(lk, spath, "")
			val, ok2 := p.ScalarString(lv, index(spath, key), "")
			switch {
			case !ok1 || !ok2:
			case !discovery.IsLabelKey(key):
				p.Errorf(lk, index(spath, key), "%q is not a label name", key)
			case func() bool { _, dup := s.Labels[key]; return dup }():
				p.Errorf(lk, index(spath, key), "label %s given twice", key)
			default:
				s.Labels[key] = val
			}
		}
		for _, other := range hr.Subsets {
			if equalLabels(other.Labels, s.Labels) {
				p.Errorf(kn, spath, "same labels as subset %s (line %d)", other.Name, other.Line)
				return
			}
		}
		hr.Subsets = append(hr.Subsets, s)
	})
	slices.SortFunc(hr.Subsets, func(a, b NamedSubset) int { return strings.Compare(a.Name, b.Name) })

	// rules
	if n, ok := o.Set("rules"); !ok || n.Kind == yaml.SequenceNode && len(n.Content) == 0 {
		o.Errorf("rules", "want at least one route rule")
	}
	names := map[string]int{}
	var catchAll *RouteRule
	var seen []RouteRule // every rule whose match was read, for the order checks
	for i, item := range o.List("rules", routeRulesBound) {
		rpath := index(join(o.Where(), "rules"), i)
		if n := yamlnode.Peek(item, "name"); n != "" {
			rpath = index(join(o.Where(), "rules"), n)
		}
		ro := p.Object(item, rpath, routeRuleFields...)
		if ro == nil {
			continue
		}
		r, matchOK, ok := c.routeRule(ro, &hr, i)
		if first := names[r.Name]; first != 0 {
			ro.Errorf("name", "rule %s is named already (at line %d)", r.Name, first)
			continue
		}
		names[r.Name] = r.Line
		if !matchOK {
			continue
		}
		// First match wins (Envoy evaluates routes in order), so a rule
		// after one that takes every request, or one with the same match
		// as an earlier rule, never takes any.
		if catchAll != nil {
			p.Errorf(item, rpath, "unreachable: rule %s (line %d) before it takes every request", catchAll.Name, catchAll.Line)
			continue
		}
		if prev := sameMatch(seen, &r); prev != nil {
			p.Errorf(item, rpath, "unreachable: rule %s (line %d) before it has the same match", prev.Name, prev.Line)
			continue
		}
		seen = append(seen, r)
		if r.CatchAll() {
			catchAll = &seen[len(seen)-1]
		}
		if ok {
			hr.Rules = append(hr.Rules, r)
		}
	}
	return hr, len(p.List) == nerrs
}

func equalLabels(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// sameMatch returns an earlier rule whose match is the same as r's.
func sameMatch(rules []RouteRule, r *RouteRule) *RouteRule {
	key := matchKey(r)
	for i := range rules {
		if matchKey(&rules[i]) == key {
			return &rules[i]
		}
	}
	return nil
}

// matchKey renders a rule's match canonically.
func matchKey(r *RouteRule) string {
	var b strings.Builder
	if r.Path != nil {
		b.WriteString("path " + r.Path.String())
	}
	hs := slices.Clone(r.Headers)
	slices.SortFunc(hs, func(a, b HeaderMatch) int { return strings.Compare(a.Name+a.String(), b.Name+b.String()) })
	for _, h := range hs {
		b.WriteString("\n" + h.String())
	}
	b.WriteString("\nfrom " + strings.Join(r.From.Clusters, ","))
	for _, l := range r.From.Localities {
		b.WriteString(" " + l.String())
	}
	return b.String()
}

// routeRule reads one rule of a host; i is its position. matchOK says
// whether its match was read without a problem, ok whether all of it was.
func (c *checker) routeRule(o *yamlnode.Object, hr *HostRoutes, i int) (r RouteRule, matchOK, ok bool) {
	p := c.p
	nerrs := len(p.List)
	r = RouteRule{Name: "#" + strconv.Itoa(i+1), Line: o.Node().Line}
	if name := o.Str("name", false); name != "" {
		if !discovery.IsDNSLabel(name) {
			o.Errorf("name", "%q is not a DNS label", name)
		}
		r.Name = name
	}
	if n, ok := o.Set("match"); ok {
		if mo := p.Object(n, join(o.Where(), "match"), routeMatchFields...); mo != nil {
			c.routeMatch(mo, &r)
		}
	}
	matchOK = len(p.List) == nerrs
	c.destinations(o, hr, &r)
	if d, ok := duration(o, "timeout"); ok {
		r.Timeout = d
	}
	if n, ok := o.Set("retries"); ok {
		if ro := p.Object(n, join(o.Where(), "retries"), retriesFields...); ro != nil {
			if v, ok := c.retries(ro); ok {
				r.Retries, r.RetriesOff = v, v == nil
			}
		}
	}
	if n, ok := o.Set("headers"); ok {
		if ho := p.Object(n, join(o.Where(), "headers"), rewriteFields...); ho != nil {
			c.rewrites(ho, &r)
		}
	}
	return r, matchOK, len(p.List) == nerrs
}

// routeMatch reads a rule's match.
func (c *checker) routeMatch(o *yamlnode.Object, r *RouteRule) {
	p := c.p
	if n, ok := o.Set("path"); ok {
		if po := p.Object(n, join(o.Where(), "path"), stringMatchFields...); po != nil {
			if m, ok := c.stringMatch(po, false); ok {
				if m.Kind != MatchRegex && !strings.HasPrefix(m.Value, "/") {
					p.Errorf(n, join(o.Where(), "path"), "%q: a path starts with /", m.Value)
				}
				r.Path = &m
			}
		}
	}
	o.Entries("headers", routeHeadersBound, func(k *yaml.Node, name string, v *yaml.Node) {
		hpath := index(join(o.Where(), "headers"), name)
		if !validHeaderName(name) {
			p.Errorf(k, hpath, "%q is not a lower-case header name", name)
			return
		}
		ho := p.Object(v, hpath, headerMatchFields...)
		if ho == nil {
			return
		}
		m, ok := c.stringMatch(ho, true)
		if ok {
			r.Headers = append(r.Headers, HeaderMatch{Name: name, StringMatch: m})
		}
	})
	if n, ok := o.Set("from"); ok {
		fo := p.Object(n, join(o.Where(), "from"), fromFields...)
		if fo == nil {
			return
		}
		if len(fo.Node().Content) == 0 {
			p.Errorf(n, join(o.Where(), "from"), "empty: want cluster, locality or both")
		}
		if name := fo.Str("cluster", false); name != "" {
			if _, ok := c.topo.cluster(name); !ok {
				fo.Errorf("cluster", "unknown cluster %q (known: %s)", name, strings.Join(c.topo.clusterNames(), ", "))
			} else {
				r.From.Clusters = []string{name}
			}
		}
		if ln, ok := fo.Set("locality"); ok {
			if pat, ok := c.pattern(ln, join(fo.Where(), "locality")); ok {
				r.From.Localities = []Pattern{pat}
			}
		}
	}
}

// validHeaderName reports whether s is a lower-case HTTP header name (an
// RFC 9110 token): gRPC metadata keys and HTTP/2 header names are lower-case.
func validHeaderName(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch >= 'a' && ch <= 'z', ch >= '0' && ch <= '9', strings.IndexByte("!#$%&'*+-.^_`|~", ch) >= 0:
		default:
			return false
		}
	}
	return true
}

// stringMatch reads exactly one of exact, prefix, regex (and, for a
// header, present: true).
func (c *checker) stringMatch(o *yamlnode.Object, header bool) (StringMatch, bool) {
	var found []string
	for _, k := range headerMatchFields {
		if _, ok := o.Set(k); ok {
			found = append(found, k)
		}
	}
	want := "exact, prefix or regex"
	if header {
		want = "exact, prefix, regex or present: true"
	}
	if len(found) != 1 {
		c.p.Errorf(o.Node(), o.Where(), "want one of %s, got %d", want, len(found))
		return StringMatch{}, false
	}
	switch k := found[0]; k {
	case "present":
		if !o.Bool("present", false) {
			o.Errorf("present", "only present: true is supported (a header's absence is not matched)")
			return StringMatch{}, false
		}
		return StringMatch{Kind: MatchPresent}, true
	default:
		v := o.Str(k, true)
		if v == "" {
			return StringMatch{}, false
		}
		m := StringMatch{Kind: MatchExact, Value: v}
		switch k {
		case "prefix":
			m.Kind = MatchPrefix
		case "regex":
			m.Kind = MatchRegex
			if len(v) > MaxRegexLength {
				o.Errorf(k, "regular expression of %d bytes, at most %d", len(v), MaxRegexLength)
				return StringMatch{}, false
			}
			if _, err := regexp.Compile(v); err != nil {
				o.Errorf(k, "not an RE2 regular expression: %v", err)
				return StringMatch{}, false
			}
			re, err := regexp.Compile("^(?:" + v + ")$") // the whole value, as Envoy and gRPC match it
			if err != nil {
				o.Errorf(k, "not an RE2 regular expression: %v", err)
				return StringMatch{}, false
			}
			m.re = re
		}
		return m, true
	}
}

// destinations reads a rule's to: list.
func (c *checker) destinations(o *yamlnode.Object, hr *HostRoutes, r *RouteRule) {
	p := c.p
	n, ok := o.Set("to")
	if !ok || n.Kind == yaml.SequenceNode && len(n.Content) == 0 {
		o.Errorf("to", "want at least one destination")
		return
	}
	items := o.List("to", destinationsBound)
	total, bad := 0, false
	seen := map[string]int{}
	for i, item := range items {
		dpath := index(join(o.Where(), "to"), i)
		do := p.Object(item, dpath, destinationFields...)
		if do == nil {
			bad = true
			continue
		}
		d := Destination{Service: hr.Service, Weight: routesTotal}
		if svc := do.Str("service", false); svc != "" {
			ns, name, ok := strings.Cut(svc, "/")
			switch {
			case !ok || !discovery.IsDNSLabel(ns) || !discovery.IsDNSLabel(name):
				do.Errorf("service", "%q is not <namespace>/<name> (each a DNS label)", svc)
				bad = true
			case !c.topo.hasService(discovery.ServiceKey{Namespace: ns, Name: name}):
				do.Errorf("service", "unknown service %s: no cluster has it", svc)
				bad = true
			default:
				d.Service = discovery.ServiceKey{Namespace: ns, Name: name}
			}
		}
		if name := do.Str("subset", false); name != "" {
			s, ok := hr.Subset(name)
			switch {
			case d.Service != hr.Service:
				do.Errorf("subset", "subsets are of %s, the host's service; %s has none here", hr.Service, d.Service)
				bad = true
			case !ok:
				known := make([]string, 0, len(hr.Subsets))
				for _, s := range hr.Subsets {
					known = append(known, s.Name)
				}
				if len(known) == 0 {
					do.Errorf("subset", "unknown subset %q: the host declares no subsets", name)
				} else {
					do.Errorf("subset", "unknown subset %q (known: %s)", name, strings.Join(known, ", "))
				}
				bad = true
			default:
				d.Subset.Name, d.Subset.Labels = s.Name, s.Labels
			}
		}
		if name := do.Str("cluster", false); name != "" {
			tc, ok := c.topo.cluster(name)
			switch {
			case !ok:
				do.Errorf("cluster", "unknown cluster %q (known: %s)", name, strings.Join(c.topo.clusterNames(), ", "))
				bad = true
			case hr.Scope == discovery.ClusterLocal:
				do.Errorf("cluster", "%s reaches the caller's own cluster only; route a clusterset.local host to a cluster's share", hr.Host)
				bad = true
			case !slices.ContainsFunc(tc.Services, func(k discovery.ServiceKey) bool { return k == d.Service }):
				do.Errorf("cluster", "cluster %s has no service %s", name, d.Service)
				bad = true
			default:
				d.Subset.Cluster = name
			}
		}
		if wn, ok := do.Set("weight"); ok {
			w, ok := p.integer(wn, join(dpath, "weight"), 1, routesTotal)
			if !ok {
				bad = true
			}
			d.Weight = uint32(w)
		} else if len(items) > 1 {
			do.Errorf("weight", "missing: a rule with several destinations weighs each (adding up to %d)", routesTotal)
			bad = true
		}
		key := d.Service.String() + " " + d.Subset.Segment()
		if d.Subset.IsZero() {
			key = d.Service.String()
		}
		if first := seen[key]; first != 0 {
			p.Errorf(item, dpath, "same destination as line %d: merge their weights", first)
			bad = true
		}
		seen[key] = item.Line
		total += int(d.Weight)
		r.To = append(r.To, d)
	}
	if !bad && len(items) > 0 && total != routesTotal {
		p.Errorf(n, join(o.Where(), "to"), "weights add up to %d, want %d", total, routesTotal)
	}
}

// rewrites reads a rule's request header rewrites.
func (c *checker) rewrites(o *yamlnode.Object, r *RouteRule) {
	p := c.p
	check := func(kn *yaml.Node, path, name string) bool {
		switch {
		case !validHeaderName(name):
			p.Errorf(kn, path, "%q is not a lower-case header name", name)
		case name == "host" || strings.HasPrefix(name, "grpc-") || strings.HasPrefix(name, "x-envoy-"):
			p.Errorf(kn, path, "%s may not be rewritten (Envoy and gRPC reserve it)", name)
		default:
			return true
		}
		return false
	}
	o.Entries("add", rewritesBound, func(kn *yaml.Node, name string, v *yaml.Node) {
		path := index(join(o.Where(), "add"), name)
		val, ok := p.ScalarString(v, path, "")
		if ok && check(kn, path, name) {
			r.AddHeaders = append(r.AddHeaders, HeaderValue{Name: name, Value: val})
		}
	})
	slices.SortFunc(r.AddHeaders, func(a, b HeaderValue) int { return strings.Compare(a.Name, b.Name) })
	seen := map[string]int{}
	for i, item := range o.List("remove", rewritesBound) {
		path := index(join(o.Where(), "remove"), i)
		name, ok := p.ScalarString(item, path, "")
		switch {
		case !ok:
		case seen[name] != 0:
			p.Errorf(item, path, "%s listed twice (first at line %d)", name, seen[name])
		case check(item, path, name):
			seen[name] = item.Line
			r.RemoveHeaders = append(r.RemoveHeaders, name)
		}
	}
	slices.Sort(r.RemoveHeaders)
	for _, h := range r.AddHeaders {
		if seen[h.Name] != 0 {
			p.Errorf(o.Node(), o.Where(), "%s is both added and removed (line %d)", h.Name, seen[h.Name])
		}
	}
}

// RouteErrors counts the problems of a Parse error that are in the routes:
// section: what horizon_policy_route_errors reports.
func RouteErrors(err error) int {
	n := 0
	for _, e := range flatten(err) {
		var ye *Error
		if ok := asError(e, &ye); ok && (ye.Path == routeErrorPath || strings.HasPrefix(ye.Path, routeErrorPath+"[")) {
			n++
		}
	}
	return n
}

func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

func asError(err error, target **Error) bool {
	e, ok := err.(*Error)
	if ok {
		*target = e
	}
	return ok
}

// describeRoutes is the routes' part of the policy's fingerprint.
func describeRoutes(p *File) string {
	var b strings.Builder
	for _, hr := range p.Routes {
		fmt.Fprintf(&b, "%s\n", hr.Host)
		for _, s := range hr.Subsets {
			fmt.Fprintf(&b, " subset %s %v\n", s.Name, s.Labels)
		}
		for _, r := range hr.Rules {
			fmt.Fprintf(&b, " rule %s %s\n", r.Name, matchKey(&r))
			for _, d := range r.To {
				fmt.Fprintf(&b, "  to %s %s %v %d\n", d.Service, d.Subset.Segment(), d.Subset.Labels, d.Weight)
			}
			fmt.Fprintf(&b, "  %s %+v %v %v %v\n", r.Timeout, r.Retries, r.RetriesOff, r.AddHeaders, r.RemoveHeaders)
		}
	}
	return b.String()
}
