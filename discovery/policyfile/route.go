package policyfile

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/horizonmesh/horizon/discovery"
)

// HostRoutes are the HTTP route rules of one host (routes: in the file):
// requests to the host take the first rule, in file order, whose match
// holds; a request no rule matches goes to the whole service, as without
// rules. Rules are rendered for Envoy sidecars (RDS) and proxyless gRPC.
type HostRoutes struct {
	// Host is the service host the rules apply to, and Service and Scope
	// its parts.
	Host    string
	Service discovery.ServiceKey
	Scope   discovery.Scope
	Line    int
	// Subsets are the label subsets destinations name, sorted by name.
	Subsets []NamedSubset
	Rules   []RouteRule
}

// NamedSubset is a subset of the host's service by endpoint labels
// (Istio's DestinationRule subsets).
type NamedSubset struct {
	Name   string
	Labels map[string]string
	Line   int
}

// RouteRule is one rule of a host: what requests it takes and where it
// sends them.
type RouteRule struct {
	// Name is the rule's name, or "#N" (its 1-based position) when the
	// file gives none.
	Name string
	Line int
	// Path is nil for any path.
	Path *StringMatch
	// Headers must all hold (file order).
	Headers []HeaderMatch
	// From limits the rule to proxies of some clusters and localities; the
	// zero value is every proxy.
	From FromMatch
	// To are the weighted destinations; their weights add up to 100.
	To []Destination
	// Timeout of the whole request (0: none, Envoy's default is off here
	// as for every route Horizon renders).
	Timeout time.Duration
	// Retries is nil when the rule gives none (or attempts: 0): its
	// requests are then retried as the host's settings say, unless
	// RetriesOff.
	Retries *Retries
	// RetriesOff is set by retries: {attempts: 0}: the rule's requests are
	// not retried, whatever the host's settings say.
	RetriesOff bool
	// AddHeaders are request headers set (replacing any of the same
	// name), sorted by name; RemoveHeaders are removed, sorted.
	AddHeaders    []HeaderValue
	RemoveHeaders []string
}

// MatchKind is how a string is compared.
type MatchKind uint8

// Match kinds.
const (
	MatchExact MatchKind = iota
	MatchPrefix
	MatchRegex
	// MatchPresent: a header is present, whatever its value.
	MatchPresent
)

var matchKindNames = [...]string{MatchExact: "exact", MatchPrefix: "prefix", MatchRegex: "regex", MatchPresent: "present"}

func (k MatchKind) String() string { return matchKindNames[k] }

// MarshalText renders the kind as the file writes it.
func (k MatchKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// StringMatch compares a string: exactly, by prefix, or by an RE2 regular
// expression that must match the whole string (Envoy's safe_regex, and Go's
// regexp, which grpc-go uses).
type StringMatch struct {
	Kind  MatchKind
	Value string
	re    *regexp.Regexp
}

// Matches reports whether s matches.
func (m *StringMatch) Matches(s string) bool {
	switch m.Kind {
	case MatchExact:
		return s == m.Value
	case MatchPrefix:
		return strings.HasPrefix(s, m.Value)
	case MatchRegex:
		return m.re.MatchString(s)
	}
	return true
}

func (m *StringMatch) String() string { return m.Kind.String() + " " + fmt.Sprintf("%q", m.Value) }

// HeaderMatch is a condition on one request header (lower-case name).
type HeaderMatch struct {
	Name string
	StringMatch
}

// Holds reports whether the headers (lower-case names) satisfy the match.
func (h *HeaderMatch) Holds(headers map[string]string) bool {
	v, ok := headers[h.Name]
	if !ok {
		return false
	}
	return h.Kind == MatchPresent || h.Matches(v)
}

func (h *HeaderMatch) String() string {
	if h.Kind == MatchPresent {
		return "header " + h.Name + " present"
	}
	return "header " + h.Name + " " + h.StringMatch.String()
}

// FromMatch selects source proxies: in one of Clusters (any when empty)
// and in a locality one of Localities matches (any when empty).
type FromMatch struct {
	Clusters   []string  // sorted
	Localities []Pattern // file order
}

// IsZero reports whether every proxy matches.
func (f FromMatch) IsZero() bool { return len(f.Clusters) == 0 && len(f.Localities) == 0 }

// Holds reports whether a proxy of a cluster and locality is selected.
func (f FromMatch) Holds(cluster string, loc discovery.Locality) bool {
	if len(f.Clusters) > 0 && !containsString(f.Clusters, cluster) {
		return false
	}
	if len(f.Localities) == 0 {
		return true
	}
	for _, p := range f.Localities {
		if p.Matches(loc) {
			return true
		}
	}
	return false
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Destination is where a share of a rule's requests goes: a service (the
// host's own unless Service is set, reached in the host's scope), or a
// subset of it (by labels, by member cluster, or both).
type Destination struct {
	Service discovery.ServiceKey
	Subset  discovery.Subset
	Weight  uint32
}

// HeaderValue is a request header a rule sets.
type HeaderValue struct {
	Name, Value string
}

// CatchAll reports whether the rule takes every request of every proxy
// that reaches it.
func (r *RouteRule) CatchAll() bool {
	return (r.Path == nil || r.Path.Kind == MatchPrefix && r.Path.Value == "/") && len(r.Headers) == 0 && r.From.IsZero()
}

// Request is what a route rule looks at: the request's path and headers
// (lower-case names), and the source proxy's cluster and locality.
type Request struct {
	Path     string
	Headers  map[string]string
	Cluster  string
	Locality discovery.Locality
}

// Why says whether a rule takes a request, and why not: the first
// condition that fails, or "" when it takes it.
func (r *RouteRule) Why(req Request) string {
	if !r.From.Holds(req.Cluster, req.Locality) {
		return fmt.Sprintf("from: the source proxy (cluster %s, locality %s) is not selected", req.Cluster, localityText(req.Locality))
	}
	if r.Path != nil && !r.Path.Matches(req.Path) {
		return fmt.Sprintf("path %q does not match %s", req.Path, r.Path)
	}
	for i := range r.Headers {
		if h := &r.Headers[i]; !h.Holds(req.Headers) {
			if v, ok := req.Headers[h.Name]; ok {
				return fmt.Sprintf("%s does not hold (value %q)", h, v)
			}
			return fmt.Sprintf("%s does not hold (header absent)", h)
		}
	}
	return ""
}

// localityText writes a locality as region/zone/subZone, without empty
// trailing levels ("none" for none).
func localityText(l discovery.Locality) string {
	parts := []string{l.Region, l.Zone, l.SubZone}
	for len(parts) > 0 && parts[len(parts)-1] == "" {
		parts = parts[:len(parts)-1]
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "/")
}

// Select returns the index of the rule a request takes, -1 for none (the
// whole service), and why each rule before it did not take it.
func (h *HostRoutes) Select(req Request) (int, []string) {
	var why []string
	for i := range h.Rules {
		w := h.Rules[i].Why(req)
		if w == "" {
			return i, why
		}
		why = append(why, fmt.Sprintf("rule %s (line %d): %s", h.Rules[i].Name, h.Rules[i].Line, w))
	}
	return -1, why
}

// Subset returns the named subset.
func (h *HostRoutes) Subset(name string) (NamedSubset, bool) {
	for _, s := range h.Subsets {
		if s.Name == name {
			return s, true
		}
	}
	return NamedSubset{}, false
}

// RoutesFor returns the route rules of a host, nil when it has none.
func (p *File) RoutesFor(host string) *HostRoutes {
	if p == nil {
		return nil
	}
	return p.routesByHost[host]
}

// EachRouteLocality calls f with every locality pattern a route rule's
// from: names: what a proxy's locality can change in its view through
// routes (xds.ViewKeys).
func (p *File) EachRouteLocality(f func(Pattern)) {
	for i := range p.Routes {
		for j := range p.Routes[i].Rules {
			for _, l := range p.Routes[i].Rules[j].From.Localities {
				f(l)
			}
		}
	}
}

// GatewaySubsets returns, per service, the subsets the routes of its
// clusterset.local hosts send to: what a network's east-west gateway routes
// by SNI (cluster.local hosts never cross networks). Sorted by segment.
func (p *File) GatewaySubsets() map[discovery.ServiceKey][]discovery.Subset {
	if p == nil {
		return nil
	}
	out := map[discovery.ServiceKey][]discovery.Subset{}
	seen := map[discovery.ServiceKey]map[string]bool{}
	for i := range p.Routes {
		hr := &p.Routes[i]
		if hr.Scope != discovery.ClusterSetWide {
			continue
		}
		for _, r := range hr.Rules {
			for _, d := range r.To {
				if d.Subset.IsZero() {
					continue
				}
				if seen[d.Service] == nil {
					seen[d.Service] = map[string]bool{}
				}
				if seen[d.Service][d.Subset.Segment()] {
					continue
				}
				seen[d.Service][d.Subset.Segment()] = true
				out[d.Service] = append(out[d.Service], d.Subset)
			}
		}
	}
	for k := range out {
		sortSubsets(out[k])
	}
	return out
}

func sortSubsets(s []discovery.Subset) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j].Segment() < s[j-1].Segment(); j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}
