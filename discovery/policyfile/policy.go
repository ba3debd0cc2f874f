package policyfile

import (
	"slices"
	"strings"
	"time"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/internal/yamlnode"
)

// Error is one problem found in a policy file, in the format both input
// files share: "file:line:col: path: message", the path like
// services[demo/echo].locality.failover[0].to[1]. Parse returns every Error
// it finds, joined with errors.Join.
type Error = yamlnode.Error

// File is a checked policy file: mesh-wide defaults and the rules per
// service, each already merged into the settings a service gets. It is
// immutable; Lookup is safe for concurrent use.
type File struct {
	// Name is the file the policy was read from.
	Name string
	// Version is a content hash of the effective settings: an edit of
	// comments or layout keeps it, so it never causes a push.
	Version string
	// Defaults are the settings of every service without a rule: the
	// built-in ones with the file's defaults: block merged in.
	Defaults Settings
	// Rules are the file's service rules, in file order.
	Rules []Rule
	// Routes are the HTTP route rules per host (routes:), in file order;
	// RoutesFor looks one up.
	Routes []HostRoutes
	// Warnings are things worth knowing that do not reject the file, such
	// as a rule for a service no cluster has (yet).
	Warnings []*Error

	byService map[discovery.ServiceKey]Settings
	byHost    map[string]Settings
	// routesByHost indexes Routes.
	routesByHost map[string]*HostRoutes
}

// Match names what a rule applies to: a service in every scope, or one host
// name (one scope) of a service.
type Match struct {
	Service discovery.ServiceKey
	Host    string // "" for a match by service
	// Alias is the alias the file matched, when it matched one: Host is
	// the host it stands for (aliases.go).
	Alias string
}

// String renders the match as the file writes it: ns/name, a host or an
// alias.
func (m Match) String() string {
	if m.Alias != "" {
		return m.Alias
	}
	if m.Host != "" {
		return m.Host
	}
	return m.Service.String()
}

// Rule is one entry of services: what it matches, and the effective settings
// of what it matches (defaults, then the service's rule, then the host's).
type Rule struct {
	Match    Match
	Line     int
	Settings Settings
}

// Settings are the traffic settings of one service: what rendering reads.
// Every field is set (built-in defaults fill what the file leaves out).
// Settings share slices and maps with the Policy: do not modify them.
type Settings struct {
	// ConnectTimeout of upstream connections (Envoy connect_timeout).
	ConnectTimeout time.Duration
	// OverprovisioningFactor is the failover threshold, in percent (Envoy's
	// ClusterLoadAssignment.Policy.overprovisioning_factor): a priority keeps
	// all its traffic while healthy × factor / 100 ≥ 100 % of its endpoints.
	// 100 fails over as soon as one endpoint is unhealthy; 140 (Envoy's
	// default) at 71.4 % healthy. Range 100-1000.
	OverprovisioningFactor uint32
	Locality               LocalityLB
	// OutlierDetection is nil when off.
	OutlierDetection *OutlierDetection
	// Retries is nil when the service is not retried.
	Retries *Retries
	// Clusters weighs or pins the member clusters a service's traffic goes to.
	Clusters ClusterTraffic
	// NotReady is what the service's not-ready endpoints become in EDS; the
	// zero value keeps them, UNHEALTHY.
	NotReady NotReady
}

// NotReady is what a not-ready endpoint (an EndpointSlice condition ready:
// false that is not serving-and-terminating) becomes in a proxy's EDS.
type NotReady uint8

// Not-ready endpoint modes (notReadyEndpoints in the file).
const (
	// NotReadyUnhealthy keeps them, with health status UNHEALTHY (a gateway
	// entry standing only for such endpoints too). Envoy counts them in the
	// size of their priority and locality, so a priority's load moves to the
	// next one gradually, as its ready share × overprovisioning factor falls
	// below 100 % (1 ready of 30 keeps 140 × 1/30 ≈ 4.7 % of the load), and
	// the ready ones are never flooded. gRPC ignores UNHEALTHY endpoints and
	// fails over per priority instead: all of a priority's load stays while
	// one endpoint of it is ready.
	NotReadyUnhealthy NotReady = iota
	// NotReadyOmit leaves them out: a priority's ready endpoints look like
	// all of it, so one ready pod of 30 takes all of the priority's load.
	NotReadyOmit
)

var notReadyNames = [...]string{NotReadyUnhealthy: "unhealthy", NotReadyOmit: "omit"}

func (n NotReady) String() string { return notReadyNames[n] }

// MarshalText renders the mode as the file writes it (debug pages, hashing).
func (n NotReady) MarshalText() ([]byte, error) { return []byte(n.String()), nil }

// LocalityLB is locality-aware load balancing (Istio's localityLbSetting):
// how endpoints are ranked into priorities, or spread by weight, as seen from
// a proxy's locality.
type LocalityLB struct {
	// Enabled false puts every endpoint in one priority, weighted by count.
	Enabled bool
	// FailoverPriority is the ordered list of attributes a proxy and an
	// endpoint are compared on; see Priority.
	FailoverPriority []Key
	// Failover orders the other regions for proxies in a region, sorted by From.
	Failover []Failover
	// Distribute gives fixed weights to localities for proxies in matching
	// localities, in file order.
	Distribute []Distribute
	// FailoverPriorityGiven is set when the block names failoverPriority
	// itself rather than inheriting the built-in [region, zone]. Together
	// with distribute it says how to fail over past the shares; see
	// RanksUnshared.
	FailoverPriorityGiven bool
}

// RanksUnshared reports whether, for a proxy in locality l whose distribute
// entry gives no share to some localities, those localities still get
// traffic once the shared ones cannot take it: when the block also says how
// to fail over (failoverPriority, or a failover entry for l's region), the
// shares' localities form priority 0 with the distribute weights and every
// other locality follows, ranked by failoverPriority and failover; otherwise
// (Istio's distribute) they are left out.
func (l LocalityLB) RanksUnshared(proxy discovery.Locality) bool {
	if l.FailoverPriorityGiven {
		return true
	}
	_, ok := l.FailoverFor(proxy.Region)
	return ok
}

// Key is an attribute of failoverPriority: one of the topology keys below,
// or the name of an endpoint label.
type Key string

// Topology keys of failoverPriority. Istio's well-known label names
// (topology.kubernetes.io/region, ..., topology.istio.io/network) are read as
// these.
const (
	KeyRegion  Key = "region"
	KeyZone    Key = "zone"
	KeySubZone Key = "subZone"
	KeyCluster Key = "cluster"
	KeyNetwork Key = "network"
)

// IsLabel reports whether the key names an endpoint label rather than a
// topology attribute.
func (k Key) IsLabel() bool {
	switch k {
	case KeyRegion, KeyZone, KeySubZone, KeyCluster, KeyNetwork:
		return false
	}
	return true
}

// Failover says, for proxies in region From, which regions to try, in order,
// once their own region cannot take the traffic.
type Failover struct {
	From string
	To   []string
}

// Distribute fixes how much of the traffic of proxies in From goes to each
// locality; localities no share matches get none.
type Distribute struct {
	From Pattern
	To   []Share // sorted by pattern
}

// Share is a weight, in percent, given to the localities a pattern matches.
// The shares of one Distribute add up to 100.
type Share struct {
	To     Pattern
	Weight uint32
}

// Pattern matches localities: region, region/zone or region/zone/subZone,
// where a trailing "*" (or a missing level) matches any. "*" alone matches
// every locality. An empty field matches anything.
type Pattern struct {
	Region, Zone, SubZone string
}

// Matches reports whether the locality is in the pattern.
func (p Pattern) Matches(l discovery.Locality) bool {
	return (p.Region == "" || p.Region == l.Region) &&
		(p.Zone == "" || p.Zone == l.Zone) &&
		(p.SubZone == "" || p.SubZone == l.SubZone)
}

// Depth is how many levels the pattern fixes: 0 for "*", 3 for a sub-zone.
func (p Pattern) Depth() int {
	switch {
	case p.SubZone != "":
		return 3
	case p.Zone != "":
		return 2
	case p.Region != "":
		return 1
	}
	return 0
}

// overlaps reports whether some locality matches both patterns. Patterns fix
// a prefix of levels, so that is when one's levels are a prefix of the other's.
func (p Pattern) overlaps(q Pattern) bool {
	return (p.Region == "" || q.Region == "" || p.Region == q.Region) &&
		(p.Zone == "" || q.Zone == "" || p.Zone == q.Zone) &&
		(p.SubZone == "" || q.SubZone == "" || p.SubZone == q.SubZone)
}

// String renders the pattern as the file writes it, canonically: "*",
// "us-east/*", "us-east/us-east-1a/*", "us-east/us-east-1a/rack-1".
func (p Pattern) String() string {
	parts := []string{p.Region, p.Zone, p.SubZone}[:p.Depth()]
	if len(parts) < 3 {
		parts = append(parts, "*")
	}
	return strings.Join(parts, "/")
}

func comparePatterns(a, b Pattern) int { return strings.Compare(a.String(), b.String()) }

// MarshalText renders the pattern as String does, for JSON (debug pages).
func (p Pattern) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// OutlierDetection ejects endpoints that keep failing (Envoy's
// outlier_detection; names as Istio's).
type OutlierDetection struct {
	// Consecutive5xxErrors ejects an endpoint after that many 5xx responses
	// (or connection failures) in a row; 0 disables this check.
	Consecutive5xxErrors uint32
	// ConsecutiveGatewayErrors ejects after that many 502, 503 or 504 in a
	// row; 0 disables this check.
	ConsecutiveGatewayErrors uint32
	// Interval between ejection sweeps.
	Interval time.Duration
	// BaseEjectionTime is the first ejection's length; it grows with each
	// ejection of the same endpoint.
	BaseEjectionTime time.Duration
	// MaxEjectionPercent bounds the share of a cluster's endpoints ejected at once.
	MaxEjectionPercent uint32
}

// Built-in outlier detection values, Envoy's, for fields a block leaves out.
const (
	defaultConsecutive5xx     = 5
	defaultOutlierInterval    = 10 * time.Second
	defaultBaseEjectionTime   = 30 * time.Second
	defaultMaxEjectionPercent = 10
	defaultConnectTimeout     = 10 * time.Second
	defaultOverprovisioning   = 140
	minOverprovisioningFactor = 100
	maxOverprovisioningFactor = 1000
	maxRetryAttempts          = 10
	maxClusterWeight          = 1000
	defaultClusterWeight      = 1
	distributeTotal           = 100
)

// Retries retries failed requests (Envoy's retry_policy).
type Retries struct {
	Attempts      uint32
	PerTryTimeout time.Duration // 0: the route's timeout
	// RetryOn are Envoy's retry conditions (x-envoy-retry-on and
	// x-envoy-retry-grpc-on), sorted.
	RetryOn []string
}

// defaultRetryOn is used when a retries block sets attempts without retryOn:
// failures that happen before a request reaches the application, safe for
// every method.
var defaultRetryOn = []string{"connect-failure", "refused-stream", "unavailable"}

// retryConditions are the conditions Envoy knows, HTTP then gRPC ones.
var retryConditions = []string{
	"5xx", "gateway-error", "reset", "reset-before-request", "connect-failure", "envoy-ratelimited",
	"retriable-4xx", "refused-stream", "retriable-status-codes", "retriable-headers",
	"http3-post-connect-failure",
	"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
}

// ClusterTraffic weighs and pins a service's member clusters.
type ClusterTraffic struct {
	// Weights multiply the weight of a cluster's endpoints; clusters not
	// listed weigh 1. 0 takes a cluster out of the service's traffic.
	Weights map[string]uint32
	// Pin, when not empty, sends the service's traffic to these clusters
	// only (sorted).
	Pin []string
}

// Weight returns the factor a cluster's endpoints are weighted by: 0 when it
// gets no traffic (not pinned, or weight 0).
func (c ClusterTraffic) Weight(cluster string) uint32 {
	if len(c.Pin) > 0 && !slices.Contains(c.Pin, cluster) {
		return 0
	}
	if w, ok := c.Weights[cluster]; ok {
		return w
	}
	return defaultClusterWeight
}

// builtin are the settings of a service when the file says nothing: today's
// behaviour (zone, then region, then the rest).
func builtin() Settings {
	return Settings{
		ConnectTimeout:         defaultConnectTimeout,
		OverprovisioningFactor: defaultOverprovisioning,
		Locality:               LocalityLB{Enabled: true, FailoverPriority: []Key{KeyRegion, KeyZone}},
	}
}

// Lookup returns the effective settings of a service as reached by a host
// name of the given scope: the host's rule, else the service's, else the
// defaults.
func (p *File) Lookup(k discovery.ServiceKey, scope discovery.Scope) Settings {
	if s, ok := p.byHost[discovery.Host(k, scope)]; ok {
		return s
	}
	return p.LookupService(k)
}

// LookupService returns the settings of a service's rule (not of its host
// rules), else the defaults.
func (p *File) LookupService(k discovery.ServiceKey) Settings {
	if s, ok := p.byService[k]; ok {
		return s
	}
	return p.Defaults
}

// LookupHost returns the effective settings for a host name: a service host
// as Lookup, anything else the defaults.
func (p *File) LookupHost(host string) Settings {
	k, scope, err := discovery.ParseHost(host)
	if err != nil {
		return p.Defaults
	}
	return p.Lookup(k, scope)
}

// Attributes describe a proxy or an endpoint for failoverPriority.
type Attributes struct {
	Locality discovery.Locality
	Cluster  string
	Network  string
	Labels   map[string]string
}

// Value is the attribute a key compares (a label's value for a label key).
func (a Attributes) Value(k Key) string { return a.value(k) }

func (a Attributes) value(k Key) string {
	switch k {
	case KeyRegion:
		return a.Locality.Region
	case KeyZone:
		return a.Locality.Zone
	case KeySubZone:
		return a.Locality.SubZone
	case KeyCluster:
		return a.Cluster
	case KeyNetwork:
		return a.Network
	}
	return a.Labels[string(k)]
}

// Priority ranks an endpoint as seen from a proxy; lower is preferred and the
// translator makes the levels in use contiguous. It is the number of
// failoverPriority keys left after the longest prefix on which both agree (an
// attribute both lack does not agree): with [region, zone], 0 is the same
// zone, 1 the same region, 2 elsewhere. When the proxy's region has a
// failover entry, endpoints in other regions are ranked further by it: the
// first region listed, then the next, then every region not listed. With
// locality load balancing disabled every endpoint is 0.
func (l LocalityLB) Priority(proxy, ep Attributes) int { return l.rank(proxy, ep, nil) }

// FailoverFor returns the failover entry of proxies in a region.
func (l LocalityLB) FailoverFor(region string) (Failover, bool) {
	i, ok := slices.BinarySearchFunc(l.Failover, region, func(f Failover, r string) int { return strings.Compare(f.From, r) })
	if !ok || region == "" {
		return Failover{}, false
	}
	return l.Failover[i], true
}

// DistributeFor returns the distribute entry of proxies in a locality: the
// most specific From that matches it.
func (l LocalityLB) DistributeFor(proxy discovery.Locality) (Distribute, bool) {
	best := -1
	for i, d := range l.Distribute {
		if d.From.Matches(proxy) && (best < 0 || d.From.Depth() > l.Distribute[best].From.Depth()) {
			best = i
		}
	}
	if best < 0 {
		return Distribute{}, false
	}
	return l.Distribute[best], true
}

// EachLocality calls f with the locality load balancing of every set of
// settings the file can give a host: the defaults' and every rule's as
// merged for its services and hosts. What a proxy's locality or labels can
// change in its view is bounded by these (xds.ViewKeys).
func (p *File) EachLocality(f func(LocalityLB)) {
	f(p.Defaults.Locality)
	for _, s := range p.byService {
		f(s.Locality)
	}
	for _, s := range p.byHost {
		f(s.Locality)
	}
}
