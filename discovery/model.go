// Package discovery holds Horizon's middle model: an immutable snapshot of a
// ClusterSet (clusters, their networks, gateways, services and endpoints) and the
// vocabulary (host names, SNI, Envoy cluster names, SPIFFE IDs) every other part
// of Horizon derives its output from. Sources (the local file, Kubernetes) build
// ClusterSets; translators read them. Its subpackages are Horizon's inputs: the
// sources (file, kube) and the policy file (policyfile). This package imports
// none of the others.
package discovery

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ServiceType is the MCS type of a service: ClusterSetIP (one virtual IP) or Headless.
type ServiceType string

// Service types, as MCS names them.
const (
	ClusterSetIP ServiceType = "ClusterSetIP"
	Headless     ServiceType = "Headless"
)

// Locality is where an endpoint or proxy runs.
type Locality struct {
	Region  string
	Zone    string
	SubZone string
}

// String renders the locality as region/zone/subzone.
func (l Locality) String() string { return l.Region + "/" + l.Zone + "/" + l.SubZone }

// Compare orders localities by region, zone, then sub-zone, as
// slices.SortFunc wants: the order of every locality Horizon outputs.
func (l Locality) Compare(o Locality) int {
	return cmp.Or(cmp.Compare(l.Region, o.Region), cmp.Compare(l.Zone, o.Zone), cmp.Compare(l.SubZone, o.SubZone))
}

// CompareGateways orders gateways by address, port, then the network they
// are advertised for.
func CompareGateways(a, b Gateway) int {
	return cmp.Or(cmp.Compare(a.Address, b.Address), cmp.Compare(a.Port, b.Port), cmp.Compare(a.ForNetwork, b.ForNetwork))
}

// Gateway is one address of a network's east-west gateway, as seen by the other networks.
type Gateway struct {
	Address string // IP address or DNS name
	Port    uint32
	// ForNetwork, when set, is the one network whose proxies are given this
	// address (say a private address for a peer on the same private
	// network); see Cluster.GatewaysFor.
	ForNetwork string
}

// String renders the gateway as host:port.
func (g Gateway) String() string { return net.JoinHostPort(g.Address, strconv.Itoa(int(g.Port))) }

// Cluster is one member cluster of the ClusterSet and the services it holds.
type Cluster struct {
	Name     string
	Network  string
	Locality Locality
	Gateways []Gateway // sorted by CompareGateways
	Services []Service // sorted by (Namespace, Name)
	// Stale is set by a source that lost contact with the cluster and serves
	// its last known state.
	Stale bool
	// ImportIPs are the ClusterSet IPs this cluster's ServiceImports carry,
	// by service (written by an MCS controller; empty for files).
	ImportIPs map[ServiceKey][]string
}

// GatewaysFor returns the gateway addresses proxies on network n are given
// for this cluster: those advertised for n alone (ForNetwork n) when there
// are any, else those advertised to every network (no ForNetwork). A network
// names which address its peers use this way, e.g. a private address for
// peers on the same private network and a public one for the rest.
func (c *Cluster) GatewaysFor(n string) []Gateway {
	own, def := 0, 0
	for _, g := range c.Gateways {
		switch g.ForNetwork {
		case n:
			own++
		case "":
			def++
		}
	}
	want := ""
	if own > 0 {
		want = n
	}
	if (want == "" && def == len(c.Gateways)) || (want != "" && own == len(c.Gateways)) {
		return c.Gateways
	}
	out := make([]Gateway, 0, max(own, def))
	for _, g := range c.Gateways {
		if g.ForNetwork == want {
			out = append(out, g)
		}
	}
	return out
}

// Clone returns a copy of the cluster that New may normalise (it sorts and
// fills in place) without touching c: every slice New writes is copied.
// Maps are shared; nothing writes them.
func (c Cluster) Clone() Cluster {
	out := c
	out.Gateways = slices.Clone(c.Gateways)
	out.Services = slices.Clone(c.Services)
	for i := range out.Services {
		s := &out.Services[i]
		s.Ports = slices.Clone(s.Ports)
		s.Endpoints = slices.Clone(s.Endpoints)
		s.Aliases = slices.Clone(s.Aliases)
		s.DroppedAliases = slices.Clone(s.DroppedAliases)
	}
	if c.ImportIPs != nil {
		out.ImportIPs = make(map[ServiceKey][]string, len(c.ImportIPs))
		for k, ips := range c.ImportIPs {
			out.ImportIPs[k] = slices.Clone(ips)
		}
	}
	return out
}

// ServiceKey names a service across the ClusterSet ("namespace sameness").
type ServiceKey struct {
	Namespace string
	Name      string
}

// String renders the key as namespace/name.
func (k ServiceKey) String() string { return k.Namespace + "/" + k.Name }

// MarshalText renders the key as namespace/name, so that maps keyed by it
// encode as JSON objects.
func (k ServiceKey) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads a key written by MarshalText.
func (k *ServiceKey) UnmarshalText(b []byte) error {
	ns, name, ok := strings.Cut(string(b), "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return fmt.Errorf("service key %q: want namespace/name", b)
	}
	*k = ServiceKey{Namespace: ns, Name: name}
	return nil
}

// Compare orders keys by namespace, then name.
func (k ServiceKey) Compare(o ServiceKey) int {
	return cmp.Or(cmp.Compare(k.Namespace, o.Namespace), cmp.Compare(k.Name, o.Name))
}

// Port is a service port.
type Port struct {
	Name        string
	Port        uint32
	TargetPort  uint32 // default target port of endpoints that do not name one
	Protocol    string // TCP, UDP or SCTP
	AppProtocol string // e.g. http, http2, grpc
}

// IsHTTP reports whether traffic on the port is HTTP (by appProtocol, or by the
// Istio-style port-name prefix when appProtocol is empty).
func (p Port) IsHTTP() bool {
	if p.Protocol != "" && p.Protocol != "TCP" {
		return false
	}
	switch strings.ToLower(p.AppProtocol) {
	case "http", "http2", "grpc", "h2c", "kubernetes.io/h2c", "grpc-web":
		return true
	case "":
	default:
		return false
	}
	name := strings.ToLower(p.Name)
	for _, prefix := range []string{"http", "grpc", "h2c"} {
		if name == prefix || strings.HasPrefix(name, prefix+"-") || strings.HasPrefix(name, prefix+"2") {
			return true
		}
	}
	return false
}

// IsHTTP2 reports whether the port carries HTTP/2 (gRPC, h2c).
func (p Port) IsHTTP2() bool {
	switch strings.ToLower(p.AppProtocol) {
	case "http2", "grpc", "h2c", "kubernetes.io/h2c":
		return true
	case "":
		n := strings.ToLower(p.Name)
		return strings.HasPrefix(n, "grpc") || strings.HasPrefix(n, "http2") || strings.HasPrefix(n, "h2c")
	}
	return false
}

// Service is one cluster's definition of a service and its endpoints.
type Service struct {
	Namespace string
	Name      string
	Type      ServiceType
	ClusterIP string // optional virtual IP inside its cluster
	// SessionAffinity is the Service's session affinity (None or ClientIP).
	SessionAffinity string
	Exported        bool
	// ExportedAt orders conflicting exports: the oldest export wins (MCS).
	ExportedAt time.Time
	Ports      []Port     // sorted by Port
	Endpoints  []Endpoint // sorted by (Address)
	// Aliases are extra host names of the service (aliases.go), sorted.
	Aliases []string
	// DroppedAliases are aliases the source dropped from Aliases because
	// another service claims them (Kubernetes; aliases.go), sorted.
	DroppedAliases []string
}

// Key returns the service's ClusterSet-wide key.
func (s *Service) Key() ServiceKey { return ServiceKey{Namespace: s.Namespace, Name: s.Name} }

// Port returns the service's TCP port with the given number (the ports
// proxies carry traffic for).
func (s *Service) Port(number uint32) (Port, bool) {
	return s.PortFor(number, "TCP")
}

// PortFor returns the service port with the given number and protocol.
func (s *Service) PortFor(number uint32, protocol string) (Port, bool) {
	i, ok := slices.BinarySearchFunc(s.Ports, Port{Port: number, Protocol: protocol}, comparePorts)
	if !ok {
		return Port{}, false
	}
	return s.Ports[i], true
}

// comparePorts orders ports by number, then protocol: a service may use one
// number for TCP and UDP (DNS does).
func comparePorts(a, b Port) int {
	return cmp.Or(cmp.Compare(a.Port, b.Port), cmp.Compare(a.Protocol, b.Protocol))
}

// Endpoint is one backend of a service in one cluster (a pod).
type Endpoint struct {
	Address string // IP address
	// Hostname is the endpoint's hostname in its EndpointSlice (a
	// StatefulSet pod's name), "" when it has none.
	Hostname string
	// Ports maps service port names to the endpoint's target port, as an
	// EndpointSlice does; a port not named here uses the service port's TargetPort.
	Ports          map[string]uint32
	Locality       Locality
	Ready          bool
	Serving        bool
	Terminating    bool
	ServiceAccount string
	// MTLS is whether the endpoint's sidecar accepts mutual TLS. Endpoints that
	// do not are never reachable from another network.
	MTLS   bool
	Labels map[string]string
	// Workload names the workload group an endpoint outside Kubernetes
	// comes from (WorkloadSource); "" for a pod (and then left out of
	// encodings, as a pod's state was before workloads existed).
	Workload string `json:",omitempty" yaml:",omitempty"`
}

// TargetPort returns the endpoint's port for the given service port.
func (e *Endpoint) TargetPort(p Port) uint32 {
	if n, ok := e.Ports[p.Name]; ok && p.Name != "" {
		return n
	}
	if p.TargetPort != 0 {
		return p.TargetPort
	}
	return p.Port
}

// Usable reports whether the endpoint should receive traffic at all: ready, or
// still serving while terminating (then it drains).
func (e *Endpoint) Usable() bool { return e.Ready || (e.Serving && e.Terminating) }

// Draining reports whether the endpoint is serving but terminating.
func (e *Endpoint) Draining() bool { return !e.Ready && e.Serving && e.Terminating }

// ExportedService is the ClusterSet-wide view of a service exported by one or
// more clusters: its merged definition and who exports it.
type ExportedService struct {
	Key  ServiceKey
	Type ServiceType
	// Ports is the union of the exporting clusters' ports; when two exports
	// disagree on a port, the oldest export's definition wins.
	Ports []Port
	// Clusters are the exporting clusters, sorted by name.
	Clusters []string
	// SessionAffinity is the winning export's.
	SessionAffinity string
	// Conflicts lists disagreements between exports. Every export involved,
	// the winner included, is in conflict (the MCS Conflict condition); the
	// winner's definition still decides traffic.
	Conflicts []Conflict
	// IPs are the ClusterSet IPs allocated to a ClusterSetIP service, one per
	// IP family, when a source allocates them (Kubernetes does; files may not).
	IPs []string
	// Aliases are the exporting clusters' aliases of the service, sorted.
	Aliases []string
}

// Conflict reasons, as the MCS API names them on the Conflict condition.
const (
	PortConflict            = "PortConflict"
	TypeConflict            = "TypeConflict"
	SessionAffinityConflict = "SessionAffinityConflict"
)

// Conflict is one disagreement between a younger export and the winner.
type Conflict struct {
	Cluster string // the younger export's cluster
	Reason  string // PortConflict, TypeConflict, SessionAffinityConflict
	Message string
}

// String renders the conflict for logs and debug pages.
func (c Conflict) String() string { return c.Reason + ": " + c.Message }

// ClusterSet is an immutable, sorted snapshot of every member cluster. Build
// one with New; never modify it afterwards: translators share it.
type ClusterSet struct {
	Clusters []Cluster          // sorted by name
	Exports  []ExportedService  // sorted by key
	byName   map[string]int     // cluster name -> index
	byExport map[ServiceKey]int // key -> index in Exports
	version  string
	// digests hold each cluster's share of each service's content hash,
	// by cluster name, then service (see ServiceDigest).
	digests map[string]map[ServiceKey]Digest
	locs    *localities // ClampLocality's index
	// WorkloadGroups are the workload groups merged into the clusters'
	// services, sorted by key (see WithWorkloads).
	WorkloadGroups []WorkloadGroup

	// aliases maps every alias to the service it names (aliases.go).
	aliases map[string]ServiceKey
	// External are the external services (external.go), sorted by host.
	External []ExternalService
}

// New validates clusters, sorts everything, merges exports and fingerprints
// the result. The clusters are taken over: the caller must not modify them.
func New(clusters []Cluster) (*ClusterSet, error) {
	cs := &ClusterSet{Clusters: clusters, byName: make(map[string]int, len(clusters)), locs: &localities{}}
	var errs []error
	slices.SortFunc(cs.Clusters, func(a, b Cluster) int { return cmp.Compare(a.Name, b.Name) })
	for i := range cs.Clusters {
		c := &cs.Clusters[i]
		if c.Name == "" {
			errs = append(errs, errors.New("cluster with empty name"))
			continue
		}
		if _, dup := cs.byName[c.Name]; dup {
			errs = append(errs, fmt.Errorf("cluster %q: defined twice", c.Name))
			continue
		}
		cs.byName[c.Name] = i
		if c.Network == "" {
			errs = append(errs, fmt.Errorf("cluster %q: empty network", c.Name))
		}
		if err := normalizeCluster(c); err != nil {
			errs = append(errs, fmt.Errorf("cluster %q: %w", c.Name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := cs.indexAliases(); err != nil {
		return nil, err
	}
	cs.mergeExports()
	cs.mergeAliases()
	cs.version = fingerprint(cs)
	return cs, nil
}

func normalizeCluster(c *Cluster) error {
	var errs []error
	slices.SortFunc(c.Gateways, CompareGateways)
	c.Gateways = slices.Compact(c.Gateways)
	for _, g := range c.Gateways {
		if g.Address == "" || g.Port == 0 || g.Port > 65535 {
			errs = append(errs, fmt.Errorf("gateway %s: needs an address and a port in 1-65535", g))
		}
		if g.ForNetwork != "" && g.ForNetwork == c.Network {
			errs = append(errs, fmt.Errorf("gateway %s: advertised for network %s, its own: proxies there reach its pods directly", g, g.ForNetwork))
		}
	}
	slices.SortFunc(c.Services, func(a, b Service) int { return a.Key().Compare(b.Key()) })
	for i := range c.Services {
		s := &c.Services[i]
		if i > 0 && c.Services[i-1].Key() == s.Key() {
			errs = append(errs, fmt.Errorf("service %s: defined twice", s.Key()))
			continue
		}
		if err := normalizeService(s); err != nil {
			errs = append(errs, fmt.Errorf("service %s: %w", s.Key(), err))
		}
	}
	return errors.Join(errs...)
}

func normalizeService(s *Service) error {
	var errs []error
	if s.Namespace == "" || s.Name == "" {
		errs = append(errs, errors.New("needs a namespace and a name"))
	}
	if s.Type == "" {
		s.Type = ClusterSetIP
	}
	if s.Type != ClusterSetIP && s.Type != Headless {
		errs = append(errs, fmt.Errorf("unknown type %q", s.Type))
	}
	for i := range s.Ports {
		if s.Ports[i].Protocol == "" {
			s.Ports[i].Protocol = "TCP"
		}
	}
	slices.SortFunc(s.Ports, comparePorts)
	for i, p := range s.Ports {
		if p.Port == 0 || p.Port > 65535 || p.TargetPort > 65535 {
			errs = append(errs, fmt.Errorf("port %d: out of range 1-65535", p.Port))
		}
		if i > 0 && comparePorts(s.Ports[i-1], p) == 0 {
			errs = append(errs, fmt.Errorf("port %d/%s: defined twice", p.Port, p.Protocol))
		}
	}
	if err := normalizeAliases(s); err != nil {
		errs = append(errs, err)
	}
	slices.SortFunc(s.Endpoints, func(a, b Endpoint) int { return cmp.Compare(a.Address, b.Address) })
	for i, e := range s.Endpoints {
		if _, err := netip.ParseAddr(e.Address); err != nil {
			errs = append(errs, fmt.Errorf("endpoint %q: not an IP address", e.Address))
		}
		if i > 0 && s.Endpoints[i-1].Address == e.Address {
			errs = append(errs, fmt.Errorf("endpoint %s: listed twice", e.Address))
		}
		for name, n := range e.Ports {
			if n == 0 || n > 65535 {
				errs = append(errs, fmt.Errorf("endpoint %s: port %q=%d out of range 1-65535", e.Address, name, n))
			}
		}
	}
	return errors.Join(errs...)
}

// mergeExports builds the ClusterSet-wide view of every exported service. The
// oldest export (then the lowest cluster name) defines the type and wins every
// port it declares; younger exports add ports the older ones lack.
func (cs *ClusterSet) mergeExports() {
	type export struct {
		cluster string
		svc     *Service
	}
	byKey := map[ServiceKey][]export{}
	for i := range cs.Clusters {
		c := &cs.Clusters[i]
		for j := range c.Services {
			s := &c.Services[j]
			if s.Exported {
				byKey[s.Key()] = append(byKey[s.Key()], export{c.Name, s})
			}
		}
	}
	keys := make([]ServiceKey, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, ServiceKey.Compare)
	cs.Exports = make([]ExportedService, 0, len(keys))
	cs.byExport = make(map[ServiceKey]int, len(keys))
	for _, k := range keys {
		exports := byKey[k]
		slices.SortStableFunc(exports, func(a, b export) int {
			return cmp.Or(a.svc.ExportedAt.Compare(b.svc.ExportedAt), cmp.Compare(a.cluster, b.cluster))
		})
		winner := exports[0]
		es := ExportedService{Key: k, Type: winner.svc.Type, SessionAffinity: winner.svc.SessionAffinity}
		type portKey struct {
			number   uint32
			protocol string
		}
		ports := map[portKey]Port{}
		names := map[string]portKey{}
		conflict := func(ex export, reason, format string, args ...any) {
			es.Conflicts = append(es.Conflicts, Conflict{Cluster: ex.cluster, Reason: reason, Message: fmt.Sprintf(format, args...)})
		}
		for _, ex := range exports {
			es.Clusters = append(es.Clusters, ex.cluster)
			if ex.svc.Type != es.Type {
				conflict(ex, TypeConflict, "cluster %s exports type %s; the oldest export (cluster %s) has %s", ex.cluster, ex.svc.Type, winner.cluster, es.Type)
			}
			if ex.svc.SessionAffinity != es.SessionAffinity {
				conflict(ex, SessionAffinityConflict, "cluster %s has session affinity %q; the oldest export (cluster %s) has %q", ex.cluster, ex.svc.SessionAffinity, winner.cluster, es.SessionAffinity)
			}
			for _, p := range ex.svc.Ports {
				k := portKey{p.Port, p.Protocol}
				old, seen := ports[k]
				named, nameTaken := names[p.Name]
				switch {
				case seen && (old.Name != p.Name || old.AppProtocol != p.AppProtocol):
					conflict(ex, PortConflict, "cluster %s port %d/%s (%q, appProtocol %q) conflicts with an older export's (%q, %q)", ex.cluster, p.Port, p.Protocol, p.Name, p.AppProtocol, old.Name, old.AppProtocol)
				case seen:
				case p.Name != "" && nameTaken && named != k:
					conflict(ex, PortConflict, "cluster %s port name %q is %d/%s; an older export has it as %d/%s", ex.cluster, p.Name, p.Port, p.Protocol, named.number, named.protocol)
				default:
					ports[k] = p
					if p.Name != "" {
						names[p.Name] = k
					}
				}
			}
		}
		slices.Sort(es.Clusters)
		// Every member holds the same import; take the first one that has IPs.
		for i := range cs.Clusters {
			if ips := cs.Clusters[i].ImportIPs[k]; len(ips) > 0 && es.Type == ClusterSetIP {
				es.IPs = slices.Clone(ips)
				break
			}
		}
		for _, p := range ports {
			es.Ports = append(es.Ports, p)
		}
		slices.SortFunc(es.Ports, comparePorts)
		cs.byExport[k] = len(cs.Exports)
		cs.Exports = append(cs.Exports, es)
	}
}

// Version is a content hash of the whole ClusterSet: equal ClusterSets have
// equal versions, across processes and restarts.
func (cs *ClusterSet) Version() string { return cs.version }

// Cluster returns the named cluster.
func (cs *ClusterSet) Cluster(name string) (*Cluster, bool) {
	i, ok := cs.byName[name]
	if !ok {
		return nil, false
	}
	return &cs.Clusters[i], true
}

// Export returns the ClusterSet-wide view of an exported service.
func (cs *ClusterSet) Export(k ServiceKey) (*ExportedService, bool) {
	i, ok := cs.byExport[k]
	if !ok {
		return nil, false
	}
	return &cs.Exports[i], true
}

// Service returns a cluster's own definition of a service.
func (c *Cluster) Service(k ServiceKey) (*Service, bool) {
	i, ok := slices.BinarySearchFunc(c.Services, k, func(s Service, k ServiceKey) int { return s.Key().Compare(k) })
	if !ok {
		return nil, false
	}
	return &c.Services[i], true
}

// Networks returns the sorted names of every network in the ClusterSet.
func (cs *ClusterSet) Networks() []string {
	var out []string
	for _, c := range cs.Clusters {
		out = append(out, c.Network)
	}
	slices.Sort(out)
	return slices.Compact(out)
}
