// This file reads the ClusterSet file's externalServices: hosts outside the
// mesh (discovery/external.go). Everything the model checks is checked here
// first, with the file's line: a bad service rejects the file, and the last
// good ClusterSet keeps serving.

package file

import (
	"net/netip"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/internal/yamlnode"
)

// Field names of an external service and its parts.
var (
	externalFields         = []string{"host", "address", "ports", "resolution", "endpoints", "tls", "healthCheck", "networks"}
	externalEndpointFields = []string{"address", "port"}
	externalTLSFields      = []string{"sni", "caFile", "subjectAltNames"}
	healthCheckFields      = []string{"protocol", "path", "interval", "timeout", "healthyThreshold", "unhealthyThreshold"}
)

// Bounds of externalServices and their lists.
var (
	externalServicesBound  = yamlnode.Bound{Max: discovery.MaxExternalServices, What: "external services"}
	externalEndpointsBound = yamlnode.Bound{Max: discovery.MaxExternalEndpoints, What: "endpoints"}
	externalNetworksBound  = yamlnode.Bound{Max: MaxNetworks, What: "networks"}
	subjectAltNamesBound   = yamlnode.Bound{Max: 16, What: "names"}
)

// Bounds of a health check's values.
const (
	maxHealthInterval  = time.Hour
	maxHealthThreshold = 100
)

// externalServices reads the top-level externalServices; networks are the
// declared networks (nil: any). It runs after the clusters, so that a host
// that is a service's alias is reported with the alias's line.
func (p *parser) externalServices(top *yamlnode.Object, networks map[string]bool) []discovery.ExternalService {
	var out []discovery.ExternalService
	lines := map[string]int{}
	for i, n := range top.List("externalServices", externalServicesBound) {
		where := yamlnode.Index("externalServices", i)
		if h := yamlnode.Peek(n, "host"); h != "" {
			where = yamlnode.Index("externalServices", h)
		}
		e, ok := p.externalService(n, where, networks)
		if !ok {
			continue
		}
		if first := lines[e.Host]; first != 0 {
			p.Errorf(n, where, "defined twice (first at line %d)", first)
			continue
		}
		lines[e.Host] = n.Line
		out = append(out, e)
	}
	return out
}

func (p *parser) externalService(n *yaml.Node, where string, networks map[string]bool) (discovery.ExternalService, bool) {
	o := p.Object(n, where, externalFields...)
	if o == nil {
		return discovery.ExternalService{}, false
	}
	e := discovery.ExternalService{Host: strings.TrimSuffix(o.Str("host", true), "."), Line: n.Line}
	ok := e.Host != ""
	if ok {
		if err := discovery.CheckAlias(e.Host); err != nil {
			o.Errorf("host", "%v", err)
			ok = false
		} else if c, claimed := p.claims[e.Host]; claimed {
			o.Errorf("host", "%q is an alias of service %s (cluster %s, line %d): a name reaches one thing", e.Host, c.service, c.cluster, c.line)
			ok = false
		}
	}
	if a := o.Str("address", false); a != "" {
		if ip, err := netip.ParseAddr(a); err != nil || ip.Zone() != "" {
			o.Errorf("address", "%q is not an IP address", a)
		} else {
			e.Address = ip.String()
		}
	}
	e.Ports = p.ports(o.List("ports", portsBound), where)
	if len(e.Ports) == 0 {
		if _, given := o.Set("ports"); !given {
			o.Missing("ports")
		} else {
			o.Errorf("ports", "an external service needs at least one port")
		}
	}
	for _, port := range e.Ports {
		if port.Protocol != "TCP" {
			p.Errorf(o.At("ports"), yamlnode.Join(where, "ports"), "port %d/%s: only TCP ports of external services are proxied", port.Port, port.Protocol)
		}
	}
	e.Endpoints = p.externalEndpoints(o, where)
	e.Resolution = p.resolution(o, e.Endpoints)
	if t, given := o.Set("tls"); given {
		e.TLS = p.externalTLS(t, yamlnode.Join(where, "tls"))
	}
	if h, given := o.Set("healthCheck"); given {
		e.HealthCheck = p.healthCheck(h, yamlnode.Join(where, "healthCheck"))
	}
	for i, item := range o.List("networks", externalNetworksBound) {
		name, ok := p.ScalarString(item, yamlnode.Index(yamlnode.Join(where, "networks"), i), "")
		switch {
		case !ok:
		case networks != nil && !networks[name]:
			p.Errorf(item, yamlnode.Index(yamlnode.Join(where, "networks"), i), "%q is not declared in networks:", name)
		default:
			e.Networks = append(e.Networks, name)
		}
	}
	return e, ok
}

// externalEndpoints reads an external service's endpoints: IP addresses or
// DNS names, each with an optional port.
func (p *parser) externalEndpoints(o *yamlnode.Object, where string) []discovery.ExternalEndpoint {
	var out []discovery.ExternalEndpoint
	items := o.List("endpoints", externalEndpointsBound)
	if _, given := o.Set("endpoints"); !given {
		o.Missing("endpoints")
	} else if n := o.Get("endpoints"); n != nil && n.Kind == yaml.SequenceNode && len(n.Content) == 0 {
		o.Errorf("endpoints", "an external service needs at least one endpoint")
	}
	seen := map[discovery.ExternalEndpoint]int{}
	for i, n := range items {
		path := yamlnode.Index(yamlnode.Join(where, "endpoints"), i)
		eo := p.Object(n, path, externalEndpointFields...)
		if eo == nil {
			continue
		}
		ep := discovery.ExternalEndpoint{Address: strings.ToLower(strings.TrimSuffix(eo.Str("address", true), "."))}
		ep.Port = p.port(eo, "port", false)
		if ep.Address == "" {
			continue
		}
		if ip, err := netip.ParseAddr(ep.Address); err == nil && ip.Zone() == "" {
			ep.Address = ip.String()
		} else if !isHostName(ep.Address) {
			eo.Errorf("address", "%q is not an IP address or DNS name", ep.Address)
			continue
		}
		if first := seen[ep]; first != 0 {
			p.Errorf(n, path, "listed twice (first at line %d)", first)
			continue
		}
		seen[ep] = n.Line
		out = append(out, ep)
	}
	return out
}

// resolution reads an external service's resolution: STATIC, STRICT_DNS or
// LOGICAL_DNS; by default STATIC when every endpoint is an IP address,
// else STRICT_DNS. It checks the endpoints against it.
func (p *parser) resolution(o *yamlnode.Object, eps []discovery.ExternalEndpoint) discovery.Resolution {
	names := 0
	for _, ep := range eps {
		if _, err := netip.ParseAddr(ep.Address); err != nil {
			names++
		}
	}
	r := discovery.Resolution(o.Str("resolution", false))
	switch r {
	case "":
		if names > 0 {
			return discovery.ResolveStrictDNS
		}
		return discovery.ResolveStatic
	case discovery.ResolveStatic:
		if names > 0 {
			o.Errorf("resolution", "STATIC, but %d endpoints are DNS names: use STRICT_DNS or LOGICAL_DNS", names)
		}
	case discovery.ResolveStrictDNS, discovery.ResolveLogicalDNS:
		if names < len(eps) {
			o.Errorf("resolution", "%s, but %d endpoints are IP addresses: use STATIC, or names", r, len(eps)-names)
		}
		if r == discovery.ResolveLogicalDNS && len(eps) > 1 {
			o.Errorf("resolution", "LOGICAL_DNS takes exactly one endpoint, got %d (Envoy refuses more; use STRICT_DNS)", len(eps))
		}
	default:
		o.Errorf("resolution", "%q is not STATIC, STRICT_DNS or LOGICAL_DNS", r)
	}
	return r
}

// externalTLS reads TLS origination: sni (default: the host), caFile
// (required: the server's certificate is always verified) and
// subjectAltNames (default: the SNI).
func (p *parser) externalTLS(n *yaml.Node, where string) *discovery.ExternalTLS {
	o := p.Object(n, where, externalTLSFields...)
	if o == nil {
		return nil
	}
	t := &discovery.ExternalTLS{SNI: o.Str("sni", false), CAFile: o.Str("caFile", true)}
	if t.SNI != "" && !isHostName(t.SNI) {
		o.Errorf("sni", "%q is not a DNS name", t.SNI)
	}
	if t.CAFile != "" && !strings.HasPrefix(t.CAFile, "/") {
		o.Errorf("caFile", "%q is not an absolute path (the file is read on the proxy's file system)", t.CAFile)
	}
	for i, item := range o.List("subjectAltNames", subjectAltNamesBound) {
		if s, ok := p.ScalarString(item, yamlnode.Index(yamlnode.Join(where, "subjectAltNames"), i), ""); ok && s != "" {
			t.SubjectAltNames = append(t.SubjectAltNames, s)
		}
	}
	return t
}

// healthCheck reads an active health check.
func (p *parser) healthCheck(n *yaml.Node, where string) *discovery.HealthCheck {
	o := p.Object(n, where, healthCheckFields...)
	if o == nil {
		return nil
	}
	hc := &discovery.HealthCheck{Protocol: o.Str("protocol", true), Path: o.Str("path", false)}
	switch hc.Protocol {
	case discovery.HealthCheckHTTP:
		if hc.Path == "" {
			hc.Path = "/"
		} else if !strings.HasPrefix(hc.Path, "/") {
			o.Errorf("path", "%q does not start with /", hc.Path)
		}
	case discovery.HealthCheckTCP:
		if hc.Path != "" {
			o.Errorf("path", "a tcp health check has no path")
		}
	case "":
	default:
		o.Errorf("protocol", "%q is not http or tcp", hc.Protocol)
	}
	hc.Interval = healthDuration(o, "interval", 10*time.Second)
	hc.Timeout = healthDuration(o, "timeout", time.Second)
	if hc.Timeout > hc.Interval && hc.Interval > 0 {
		o.Errorf("timeout", "%v is longer than the interval %v", hc.Timeout, hc.Interval)
	}
	hc.HealthyThreshold = p.threshold(o, "healthyThreshold", 2)
	hc.UnhealthyThreshold = p.threshold(o, "unhealthyThreshold", 3)
	return hc
}

// healthDuration reads a duration field (Go syntax, like 10s), def when
// absent; it must be in (0, maxHealthInterval].
func healthDuration(o *yamlnode.Object, key string, def time.Duration) time.Duration {
	n, ok := o.Set(key)
	if !ok {
		return def
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		o.Errorf(key, "want a duration like 10s, got %s", yamlnode.Describe(n))
		return def
	}
	d, err := time.ParseDuration(n.Value)
	if err != nil || d <= 0 || d > maxHealthInterval {
		o.Errorf(key, "%q is not a duration in (0, %v]", n.Value, maxHealthInterval)
		return def
	}
	return d
}

// threshold reads a health check threshold, def when absent: 1-100.
func (p *parser) threshold(o *yamlnode.Object, key string, def uint32) uint32 {
	n, ok := o.Set(key)
	if !ok {
		return def
	}
	var i int64
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil || i < 1 || i > maxHealthThreshold {
		o.Errorf(key, "want a count in 1-%d, got %s", maxHealthThreshold, yamlnode.Describe(n))
		return def
	}
	return uint32(i)
}
