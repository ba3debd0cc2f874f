package discovery

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// External services: hosts outside the mesh that the mesh's proxies send
// traffic to (Istio's ServiceEntry with MESH_EXTERNAL), declared in the
// ClusterSet file's externalServices. Each has a host name clients use,
// ports, and where its servers are: static IP addresses, or DNS names
// Envoy resolves (STRICT_DNS: every address of every name is an endpoint;
// LOGICAL_DNS: one name, a connection goes to its first address). It may
// originate TLS (Horizon's sidecar wraps plaintext from the application in
// TLS to the external host) and be actively health-checked.
//
// Proxyless gRPC clients get the subset grpc-go supports: grpc-go has no
// STRICT_DNS cluster (its CDS parser, xdsresource/unmarshal_cds.go, takes
// EDS, LOGICAL_DNS of one host, and aggregate clusters) and no active
// health checks, so Horizon resolves DNS names itself
// (ExternalService.Resolved, filled by discovery/resolve) and serves the
// addresses as EDS endpoints, for STRICT_DNS and LOGICAL_DNS alike (one
// shape for both, and the view shows the addresses); the views' notes say
// what proxyless clients do not get.

// Resolution is how an external service's endpoints become addresses.
type Resolution string

// Resolutions, as Envoy names its cluster discovery types:
// https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/service_discovery
const (
	// ResolveStatic: every endpoint is an IP address (Envoy STATIC).
	ResolveStatic Resolution = "STATIC"
	// ResolveStrictDNS: every endpoint is a DNS name; every address of
	// every name is a host (Envoy STRICT_DNS).
	ResolveStrictDNS Resolution = "STRICT_DNS"
	// ResolveLogicalDNS: one DNS name; new connections go to the first
	// address it resolves to (Envoy LOGICAL_DNS).
	ResolveLogicalDNS Resolution = "LOGICAL_DNS"
)

// Limits of external services (the file source bounds its lists by them).
const (
	// MaxExternalServices is the most external services of a ClusterSet.
	MaxExternalServices = 1000
	// MaxExternalEndpoints is the most endpoints of one external service.
	MaxExternalEndpoints = 64
	// MaxResolvedAddresses is the most addresses Horizon keeps of one DNS
	// name it resolves.
	MaxResolvedAddresses = 64
)

// ExternalService is one host outside the mesh.
type ExternalService struct {
	// Host is the name clients use (a DNS name, unique in the ClusterSet,
	// not in a service domain, not an alias).
	Host string
	// Address is an optional virtual IP clients resolve Host to: TCP
	// (non-HTTP) ports get a listener on it, as a ClusterSetIP service's.
	Address string
	Ports   []Port // sorted by (Port, Protocol); TCP only
	// Resolution says what Endpoints hold.
	Resolution Resolution
	Endpoints  []ExternalEndpoint // sorted by (Address, Port)
	// TLS, when set, makes the sidecar originate TLS to the endpoints.
	TLS *ExternalTLS
	// HealthCheck, when set, is an active health check of every endpoint
	// (Envoy health_checks).
	HealthCheck *HealthCheck
	// Networks are the networks whose proxies reach the endpoints directly;
	// empty: every network. A view on another network does not get the
	// service; its notes say why.
	Networks []string // sorted
	// Resolved holds the addresses Horizon's resolver found for each DNS
	// name of Endpoints (proxyless views serve them as EDS endpoints),
	// sorted; nil before the first resolution.
	Resolved map[string][]string
	// ResolveErrors says, by DNS name, why its last resolution failed
	// (Resolved then keeps the last good addresses).
	ResolveErrors map[string]string
	// Line is where the file declares the service (0 for other sources),
	// for debug pages.
	Line int
}

// ExternalEndpoint is one address of an external service: an IP address
// (ResolveStatic) or a DNS name; Port, when not 0, replaces the service
// port's number.
type ExternalEndpoint struct {
	Address string
	Port    uint32
}

// ExternalTLS is TLS originated to an external service.
type ExternalTLS struct {
	// SNI is the server name sent (default: the service's host).
	SNI string
	// CAFile is a PEM bundle on the proxy's file system the server's
	// certificate is checked against; "" uses Envoy's default (none: the
	// certificate is not verified, which Check refuses, so the file source
	// requires it).
	CAFile string
	// SubjectAltNames are the names the server's certificate must carry
	// (default: the SNI).
	SubjectAltNames []string
}

// HealthCheck is an active health check of an external service's endpoints.
type HealthCheck struct {
	// Protocol is "http" (a GET of Path, healthy on status 200, Envoy's
	// default expected_statuses) or "tcp" (a connection opens).
	Protocol           string
	Path               string // http only
	Interval, Timeout  time.Duration
	HealthyThreshold   uint32
	UnhealthyThreshold uint32
}

// Health check protocols.
const (
	HealthCheckHTTP = "http"
	HealthCheckTCP  = "tcp"
)

// ReachableFrom reports whether proxies on network n reach the service's
// endpoints directly.
func (e *ExternalService) ReachableFrom(n string) bool {
	return len(e.Networks) == 0 || slices.Contains(e.Networks, n)
}

// DNSNames returns the DNS names of the service's endpoints (none for a
// static one), sorted and unique.
func (e *ExternalService) DNSNames() []string {
	if e.Resolution == ResolveStatic {
		return nil
	}
	var out []string
	for _, ep := range e.Endpoints {
		out = append(out, ep.Address)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// WithExternal returns a ClusterSet with cs's clusters and the given
// external services, checked and sorted, and a version covering both. cs
// is not modified; the result shares its clusters.
func (cs *ClusterSet) WithExternal(ext []ExternalService) (*ClusterSet, error) {
	var errs []error
	slices.SortFunc(ext, func(a, b ExternalService) int { return cmp.Compare(a.Host, b.Host) })
	vips := cs.virtualIPs()
	for i := range ext {
		e := &ext[i]
		if i > 0 && ext[i-1].Host == e.Host {
			errs = append(errs, fmt.Errorf("external service %s: defined twice", e.Host))
			continue
		}
		if err := normalizeExternal(e); err != nil {
			errs = append(errs, fmt.Errorf("external service %s: %w", e.Host, err))
		}
		if k, ok := cs.AliasOf(e.Host); ok {
			errs = append(errs, fmt.Errorf("external service %s: the name is an alias of service %s", e.Host, k))
		}
		if e.Address != "" {
			if owner, taken := vips[e.Address]; taken {
				errs = append(errs, fmt.Errorf("external service %s: address %s is %s's already: a virtual IP names one thing", e.Host, e.Address, owner))
			} else {
				vips[e.Address] = "external service " + e.Host
			}
		}
	}
	if len(ext) > MaxExternalServices {
		errs = append(errs, fmt.Errorf("%d external services, at most %d", len(ext), MaxExternalServices))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	out := *cs
	out.External = ext
	if len(ext) > 0 {
		out.version = externalVersion(cs.version, ext)
	}
	return &out, nil
}

// ExternalService returns the external service of a host.
func (cs *ClusterSet) ExternalService(host string) (*ExternalService, bool) {
	i, ok := slices.BinarySearchFunc(cs.External, host, func(e ExternalService, h string) int { return cmp.Compare(e.Host, h) })
	if !ok {
		return nil, false
	}
	return &cs.External[i], true
}

func normalizeExternal(e *ExternalService) error {
	var errs []error
	if err := CheckAlias(e.Host); err != nil {
		errs = append(errs, fmt.Errorf("host %w", err))
	}
	if e.Address != "" {
		if a, err := netip.ParseAddr(e.Address); err != nil || a.Zone() != "" {
			errs = append(errs, fmt.Errorf("address %q is not an IP address", e.Address))
		}
	}
	if len(e.Ports) == 0 {
		errs = append(errs, errors.New("needs at least one port"))
	}
	for i := range e.Ports {
		if e.Ports[i].Protocol == "" {
			e.Ports[i].Protocol = "TCP"
		}
	}
	slices.SortFunc(e.Ports, comparePorts)
	for i, p := range e.Ports {
		if p.Port == 0 || p.Port > 65535 {
			errs = append(errs, fmt.Errorf("port %d: out of range 1-65535", p.Port))
		}
		if p.Protocol != "TCP" {
			errs = append(errs, fmt.Errorf("port %d/%s: only TCP is proxied", p.Port, p.Protocol))
		}
		if i > 0 && comparePorts(e.Ports[i-1], p) == 0 {
			errs = append(errs, fmt.Errorf("port %d: defined twice", p.Port))
		}
	}
	if len(e.Endpoints) == 0 {
		errs = append(errs, errors.New("needs at least one endpoint"))
	}
	if len(e.Endpoints) > MaxExternalEndpoints {
		errs = append(errs, fmt.Errorf("%d endpoints, at most %d", len(e.Endpoints), MaxExternalEndpoints))
	}
	slices.SortFunc(e.Endpoints, func(a, b ExternalEndpoint) int {
		return cmp.Or(cmp.Compare(a.Address, b.Address), cmp.Compare(a.Port, b.Port))
	})
	for i, ep := range e.Endpoints {
		_, ipErr := netip.ParseAddr(ep.Address)
		switch e.Resolution {
		case ResolveStatic:
			if ipErr != nil {
				errs = append(errs, fmt.Errorf("endpoint %q: not an IP address (resolution STATIC)", ep.Address))
			}
		case ResolveStrictDNS, ResolveLogicalDNS:
			if ipErr == nil || !IsDNSName(ep.Address) {
				errs = append(errs, fmt.Errorf("endpoint %q: not a DNS name (resolution %s)", ep.Address, e.Resolution))
			}
		default:
			errs = append(errs, fmt.Errorf("unknown resolution %q", e.Resolution))
		}
		if ep.Port > 65535 {
			errs = append(errs, fmt.Errorf("endpoint %s: port %d out of range 1-65535", ep.Address, ep.Port))
		}
		if i > 0 && e.Endpoints[i-1] == ep {
			errs = append(errs, fmt.Errorf("endpoint %s: listed twice", ep.Address))
		}
	}
	if e.Resolution == ResolveLogicalDNS && len(e.Endpoints) > 1 {
		errs = append(errs, errors.New("resolution LOGICAL_DNS takes exactly one endpoint (Envoy refuses more)"))
	}
	if hc := e.HealthCheck; hc != nil {
		switch {
		case hc.Protocol != HealthCheckHTTP && hc.Protocol != HealthCheckTCP:
			errs = append(errs, fmt.Errorf("health check protocol %q: want http or tcp", hc.Protocol))
		case hc.Interval <= 0 || hc.Timeout <= 0:
			errs = append(errs, errors.New("health check needs an interval and a timeout > 0"))
		case hc.HealthyThreshold == 0 || hc.UnhealthyThreshold == 0:
			errs = append(errs, errors.New("health check thresholds must be > 0"))
		}
	}
	if e.TLS != nil && e.TLS.SNI == "" {
		e.TLS.SNI = e.Host
	}
	slices.Sort(e.Networks)
	return errors.Join(errs...)
}

// externalVersion is the ClusterSet's version with its external services.
func externalVersion(base string, ext []ExternalService) string {
	var e encoder
	e.str(base)
	e.num(uint64(len(ext)))
	for i := range ext {
		x := &ext[i]
		e.str(x.Host)
		e.str(x.Address)
		e.str(string(x.Resolution))
		e.num(uint64(len(x.Ports)))
		for _, p := range x.Ports {
			e.str(p.Name)
			e.num(uint64(p.Port))
			e.str(p.Protocol)
			e.str(p.AppProtocol)
		}
		e.num(uint64(len(x.Endpoints)))
		for _, ep := range x.Endpoints {
			e.str(ep.Address)
			e.num(uint64(ep.Port))
		}
		e.flag(x.TLS != nil)
		if x.TLS != nil {
			e.str(x.TLS.SNI)
			e.str(x.TLS.CAFile)
			e.strs(x.TLS.SubjectAltNames)
		}
		e.flag(x.HealthCheck != nil)
		if hc := x.HealthCheck; hc != nil {
			e.str(hc.Protocol)
			e.str(hc.Path)
			e.num(uint64(hc.Interval))
			e.num(uint64(hc.Timeout))
			e.num(uint64(hc.HealthyThreshold))
			e.num(uint64(hc.UnhealthyThreshold))
		}
		e.strs(x.Networks)
		names := make([]string, 0, len(x.Resolved))
		for n := range x.Resolved {
			names = append(names, n)
		}
		slices.Sort(names)
		e.num(uint64(len(names)))
		for _, n := range names {
			e.str(n)
			e.strs(x.Resolved[n])
		}
		names = names[:0]
		for n := range x.ResolveErrors {
			names = append(names, n)
		}
		slices.Sort(names)
		e.num(uint64(len(names)))
		for _, n := range names {
			e.str(n)
			e.str(x.ResolveErrors[n])
		}
	}
	sum := sha256.Sum256(e.b)
	return hex.EncodeToString(sum[:16])
}

// WithResolved returns a ClusterSet whose external services carry the
// addresses resolved for their DNS names (ExternalService.Resolved): for
// each name in resolved, its addresses, sorted and at most
// MaxResolvedAddresses. Names not in resolved keep none. failed says why
// the last resolution of a name failed (ExternalService.ResolveErrors).
// cs is not modified; its version and the answers give the result's
// version, so the same ClusterSet with the same answers has the same
// version.
func (cs *ClusterSet) WithResolved(resolved map[string][]string, failed map[string]string) *ClusterSet {
	if len(cs.External) == 0 {
		return cs
	}
	out := *cs
	out.External = slices.Clone(cs.External)
	for i := range out.External {
		e := &out.External[i]
		e.Resolved, e.ResolveErrors = nil, nil
		for _, name := range e.DNSNames() {
			if why, ok := failed[name]; ok {
				if e.ResolveErrors == nil {
					e.ResolveErrors = map[string]string{}
				}
				e.ResolveErrors[name] = why
			}
			addrs, ok := resolved[name]
			if !ok {
				continue
			}
			addrs = slices.Clone(addrs)
			slices.Sort(addrs)
			addrs = slices.Compact(addrs)
			if len(addrs) > MaxResolvedAddresses {
				addrs = addrs[:MaxResolvedAddresses]
			}
			if e.Resolved == nil {
				e.Resolved = map[string][]string{}
			}
			e.Resolved[name] = addrs
		}
	}
	out.version = externalVersion(cs.version, out.External)
	return &out
}

// virtualIPs returns the virtual IPs the ClusterSet's services hold (their
// cluster IPs and ClusterSet IPs), with what holds each: an external
// service's address must be none of them, or listeners and virtual hosts
// would match two services by one address.
func (cs *ClusterSet) virtualIPs() map[string]string {
	out := map[string]string{}
	for i := range cs.Clusters {
		c := &cs.Clusters[i]
		for j := range c.Services {
			if ip := c.Services[j].ClusterIP; ip != "" {
				out[ip] = "service " + c.Services[j].Key().String() + " (cluster " + c.Name + ")"
			}
		}
	}
	for i := range cs.Exports {
		for _, ip := range cs.Exports[i].IPs {
			out[ip] = "service " + cs.Exports[i].Key.String() + " (ClusterSet IP)"
		}
	}
	return out
}

// String returns the resolution as the file writes it.
func (r Resolution) String() string { return string(r) }
