// Package file is Horizon's local ClusterSet source. It parses the ClusterSet
// YAML file (examples/local/clusterset.yaml documents the format field by
// field) into a discovery.ClusterSet, and a Watcher reloads the file when it
// changes, keeping the last good ClusterSet when an edit is invalid.
//
// The file is bounded (limits.go): at most MaxFileSize bytes (8 MiB),
// MaxClusters clusters and MaxNetworks networks (1000), and per cluster
// MaxGateways gateways (256) and MaxServices services (20,000); per service
// MaxPorts ports (100) and MaxEndpoints endpoints (100,000); per endpoint
// MaxPorts port overrides and MaxLabels labels (64); per service
// discovery.MaxAliases aliases (32); at most discovery.MaxExternalServices
// external services (1000) of discovery.MaxExternalEndpoints endpoints
// (64) each (aliases.go, external.go). YAML aliases may expand
// the document to ten times its own nodes, and to MaxFileSize/2+10,000 nodes at
// most (yamlnode.Reader.Root).
package file

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/internal/yamlnode"
)

// Error is one problem found in a ClusterSet file, in the format both input
// files share: "file:line:col: path: message", the path like
// clusters[east-1].services[demo/echo].endpoints[10.0.0.1].address. Parse
// returns every Error it finds, joined with errors.Join; errors.As finds the
// first one.
type Error = yamlnode.Error

// Load reads and parses the ClusterSet file at path, reading no more than
// MaxFileSize+1 bytes of it.
func Load(path string) (*discovery.ClusterSet, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

func readFile(path string) ([]byte, error) {
	return yamlnode.ReadFile(path, "ClusterSet", MaxFileSize)
}

// Parse parses a ClusterSet file. name is the file name that error messages
// start with ("name:line:col: path: message"). It reports every problem it finds, one
// line each, sorted by line (at most yamlnode.MaxErrors); the ClusterSet is
// built only from a file without any. Data of more than MaxFileSize bytes is
// rejected before it is parsed.
func Parse(name string, data []byte) (*discovery.ClusterSet, error) {
	p := newParser(name)
	clusters := p.document(data)
	p.checkGroups(p.groups, clusters, true)
	if err := p.Err(); err != nil {
		return nil, err
	}
	cs, err := discovery.New(clusters)
	if err == nil && len(p.groups) > 0 {
		cs, err = cs.WithWorkloads(nil, groupsOf(p.groups), nil)
	}
	if err == nil && p.external != nil {
		cs, err = cs.WithExternal(p.external)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return cs, nil
}

// Field names of each object of the format.
var (
	topFields      = []string{"clusters", "networks", "workloadGroups", "externalServices"}
	clusterFields  = []string{"name", "network", "locality", "gateways", "services"}
	localityFields = []string{"region", "zone", "subZone"}
	gatewayFields  = []string{"address", "port", "forNetwork"}
	serviceFields  = []string{"name", "namespace", "type", "clusterIP", "exported", "exportedAt", "ports", "endpoints", "aliases"}
	portFields     = []string{"name", "port", "targetPort", "protocol", "appProtocol"}
	endpointFields = []string{"address", "network", "region", "zone", "subZone", "ready", "serving", "terminating",
		"serviceAccount", "mtls", "ports", "labels"}
)

// document parses the whole file: its one document, its networks and clusters.
func (p *parser) document(data []byte) []discovery.Cluster {
	root := p.Document(data, "ClusterSet", "a top-level clusters: list")
	if root == nil {
		return nil
	}
	top := p.Object(root, "", topFields...)
	if top == nil {
		return nil
	}
	networks := p.networks(top)
	p.groups = p.workloadGroups(top)
	n := top.Get("clusters")
	switch {
	case p.workloadsFile && (n == nil || n.ShortTag() == "!!null"):
		return nil
	case n == nil:
		p.Errorf(root, "", "missing clusters: (write clusters: [] for a ClusterSet without clusters)")
		return nil
	case n.ShortTag() == "!!null":
		p.Errorf(n, "clusters", "empty (write clusters: [] for a ClusterSet without clusters)")
		return nil
	}
	var clusters []discovery.Cluster
	lines := map[string]int{}
	for i, item := range top.List("clusters", clustersBound) {
		c, ok := p.cluster(item, i, networks)
		if !ok {
			continue
		}
		if first := lines[c.Name]; first != 0 {
			p.Errorf(item, yamlnode.Index("clusters", c.Name), "defined twice (first at line %d)", first)
			continue
		}
		lines[c.Name] = item.Line
		clusters = append(clusters, c)
	}
	p.external = p.externalServices(top, networks)
	return clusters
}

func (p *parser) cluster(n *yaml.Node, index int, networks map[string]bool) (discovery.Cluster, bool) {
	where := yamlnode.Index("clusters", index)
	if name := yamlnode.Peek(n, "name"); name != "" {
		where = yamlnode.Index("clusters", name)
	}
	o := p.Object(n, where, clusterFields...)
	if o == nil {
		return discovery.Cluster{}, false
	}
	c := discovery.Cluster{
		Name:    o.Str("name", true),
		Network: o.Str("network", true),
	}
	if c.Name != "" && !discovery.IsDNSLabel(c.Name) {
		o.Errorf("name", "%q is not a DNS label (lower-case letters, digits and '-', at most 63)", c.Name)
	}
	if c.Network != "" && networks != nil && !networks[c.Network] {
		o.Errorf("network", "%q is not declared in networks:", c.Network)
	}
	if l, ok := o.Set("locality"); ok {
		if lo := p.Object(l, yamlnode.Join(where, "locality"), localityFields...); lo != nil {
			c.Locality = discovery.Locality{Region: lo.Str("region", false), Zone: lo.Str("zone", false), SubZone: lo.Str("subZone", false)}
			if err := checkLocality(c.Locality); err != "" {
				p.Errorf(l, yamlnode.Join(where, "locality"), "%s", err)
			}
		}
	}
	seen := map[discovery.Gateway]int{}
	for i, item := range o.List("gateways", gatewaysBound) {
		g, ok := p.gateway(item, i, where, c.Network, networks)
		if !ok {
			continue
		}
		if first := seen[g]; first != 0 {
			p.Errorf(item, yamlnode.Index(yamlnode.Join(where, "gateways"), g), "listed twice (first at line %d)", first)
			continue
		}
		seen[g] = item.Line
		c.Gateways = append(c.Gateways, g)
	}
	lines := map[discovery.ServiceKey]int{}
	for i, item := range o.List("services", servicesBound) {
		s, ok := p.service(item, i, where, &c)
		if !ok {
			continue
		}
		if first := lines[s.Key()]; first != 0 {
			p.Errorf(item, yamlnode.Index(yamlnode.Join(where, "services"), s.Key()), "defined twice (first at line %d)", first)
			continue
		}
		lines[s.Key()] = item.Line
		c.Services = append(c.Services, s)
	}
	return c, c.Name != ""
}

// networks returns the declared networks, nil if any network goes.
func (p *parser) networks(top *yamlnode.Object) map[string]bool {
	n, ok := top.Set("networks")
	if !ok {
		return nil
	}
	items := top.List("networks", networksBound)
	if n.Kind != yaml.SequenceNode || len(n.Content) > MaxNetworks {
		return nil // reported by List; no check of the clusters' networks against it
	}
	networks := map[string]bool{}
	lines := map[string]int{}
	for i, item := range items {
		name, ok := p.ScalarString(item, yamlnode.Index("networks", i), "")
		switch {
		case !ok:
		case name == "":
			p.Errorf(item, yamlnode.Index("networks", i), "empty network name")
		case lines[name] != 0:
			p.Errorf(item, yamlnode.Index("networks", i), "network %q listed twice (first at line %d)", name, lines[name])
		default:
			lines[name] = item.Line
			networks[name] = true
		}
	}
	return networks
}

// checkLocality returns what is wrong with a locality, or "".
func checkLocality(l discovery.Locality) string {
	switch {
	case l.Zone != "" && l.Region == "":
		return fmt.Sprintf("zone %q without a region", l.Zone)
	case l.SubZone != "" && l.Zone == "":
		return fmt.Sprintf("subZone %q without a zone", l.SubZone)
	}
	return ""
}

// gateway reads one gateway address of a cluster on network own; networks
// are the declared ones (nil: any).
func (p *parser) gateway(n *yaml.Node, index int, cluster, own string, networks map[string]bool) (discovery.Gateway, bool) {
	where := yamlnode.Index(yamlnode.Join(cluster, "gateways"), index)
	if addr := yamlnode.Peek(n, "address"); addr != "" {
		where = yamlnode.Index(yamlnode.Join(cluster, "gateways"), addr)
		if port := yamlnode.Peek(n, "port"); port != "" {
			where = yamlnode.Index(yamlnode.Join(cluster, "gateways"), net.JoinHostPort(addr, port))
		}
	}
	o := p.Object(n, where, gatewayFields...)
	if o == nil {
		return discovery.Gateway{}, false
	}
	addr := o.Str("address", true)
	port := p.port(o, "port", true)
	if addr == "" || port == 0 {
		return discovery.Gateway{}, false
	}
	if ip, err := netip.ParseAddr(addr); err == nil && ip.Zone() == "" {
		addr = ip.String()
	} else if isHostName(addr) {
		addr = strings.ToLower(addr)
	} else {
		o.Errorf("address", "%q is not an IP address or DNS name", addr)
		return discovery.Gateway{}, false
	}
	g := discovery.Gateway{Address: addr, Port: port, ForNetwork: o.Str("forNetwork", false)}
	if _, ok := o.Set("forNetwork"); ok {
		switch {
		case g.ForNetwork == "":
			o.Errorf("forNetwork", "empty: leave it out to advertise the address to every network")
			return discovery.Gateway{}, false
		case g.ForNetwork == own:
			o.Errorf("forNetwork", "%q is the cluster's own network, whose proxies reach its pods directly", g.ForNetwork)
			return discovery.Gateway{}, false
		case networks != nil && !networks[g.ForNetwork]:
			o.Errorf("forNetwork", "%q is not declared in networks:", g.ForNetwork)
			return discovery.Gateway{}, false
		}
	}
	return g, true
}

func (p *parser) service(n *yaml.Node, index int, cluster string, c *discovery.Cluster) (discovery.Service, bool) {
	where := yamlnode.Index(yamlnode.Join(cluster, "services"), index)
	if ns, name := yamlnode.Peek(n, "namespace"), yamlnode.Peek(n, "name"); ns != "" && name != "" {
		where = yamlnode.Index(yamlnode.Join(cluster, "services"), ns+"/"+name)
	}
	o := p.Object(n, where, serviceFields...)
	if o == nil {
		return discovery.Service{}, false
	}
	s := discovery.Service{
		Name:       o.Str("name", true),
		Namespace:  o.Str("namespace", true),
		Type:       discovery.ClusterSetIP,
		Exported:   o.Bool("exported", false),
		ExportedAt: timestamp(o, "exportedAt"),
	}
	if s.Name != "" && !discovery.IsDNSLabel(s.Name) {
		o.Errorf("name", "%q is not a DNS label (lower-case letters, digits and '-', at most 63)", s.Name)
	}
	if s.Namespace != "" && !discovery.IsDNSLabel(s.Namespace) {
		o.Errorf("namespace", "%q is not a DNS label (lower-case letters, digits and '-', at most 63)", s.Namespace)
	}
	switch t := o.Str("type", false); t {
	case "", string(discovery.ClusterSetIP):
	case string(discovery.Headless):
		s.Type = discovery.Headless
	default:
		o.Errorf("type", "%q is not ClusterSetIP or Headless", t)
	}
	if ip := o.Str("clusterIP", false); ip != "" {
		addr, err := netip.ParseAddr(ip)
		switch {
		case err != nil || addr.Zone() != "":
			o.Errorf("clusterIP", "%q is not an IP address", ip)
		case s.Type == discovery.Headless:
			o.Errorf("clusterIP", "a Headless service has no clusterIP")
		default:
			s.ClusterIP = addr.String()
		}
	}
	s.Ports = p.ports(o.List("ports", portsBound), where)
	if ports, ok := o.Set("ports"); s.Type == discovery.ClusterSetIP &&
		(!ok || ports.Kind == yaml.SequenceNode && len(ports.Content) == 0) {
		o.Errorf("ports", "a ClusterSetIP service needs at least one port")
	}
	names := map[string]bool{}
	for _, port := range s.Ports {
		if port.Name != "" {
			names[port.Name] = true
		}
	}
	lines := map[string]int{}
	for i, item := range o.List("endpoints", endpointsBound) {
		e, ok := p.endpoint(item, i, where, c, names)
		if !ok {
			continue
		}
		if first := lines[e.Address]; first != 0 {
			p.Errorf(item, yamlnode.Index(yamlnode.Join(where, "endpoints"), e.Address), "listed twice (first at line %d)", first)
			continue
		}
		lines[e.Address] = item.Line
		s.Endpoints = append(s.Endpoints, e)
	}
	if s.Name != "" && s.Namespace != "" {
		s.Aliases = p.aliases(o, where, c.Name, s.Key())
	}
	return s, s.Name != "" && s.Namespace != ""
}

func (p *parser) ports(items []*yaml.Node, service string) []discovery.Port {
	var ports []discovery.Port
	numbers, names := map[string]int{}, map[string]int{} // "port/protocol" and name -> line
	for i, n := range items {
		where := yamlnode.Index(yamlnode.Join(service, "ports"), i)
		if name := yamlnode.Peek(n, "name"); name != "" {
			where = yamlnode.Index(yamlnode.Join(service, "ports"), name)
		} else if port := yamlnode.Peek(n, "port"); port != "" {
			where = yamlnode.Index(yamlnode.Join(service, "ports"), port)
		}
		o := p.Object(n, where, portFields...)
		if o == nil {
			continue
		}
		port := discovery.Port{
			Name:        o.Str("name", false),
			Port:        p.port(o, "port", true),
			TargetPort:  p.port(o, "targetPort", false),
			Protocol:    o.Str("protocol", false),
			AppProtocol: o.Str("appProtocol", false),
		}
		if port.TargetPort == 0 {
			port.TargetPort = port.Port
		}
		switch port.Protocol {
		case "":
			port.Protocol = "TCP"
		case "TCP", "UDP", "SCTP":
		default:
			o.Errorf("protocol", "%q is not TCP, UDP or SCTP", port.Protocol)
		}
		if port.Name == "" && len(items) > 1 {
			p.Errorf(n, where, "missing field \"name\", required when a service has more than one port")
		}
		if first := names[port.Name]; first != 0 && port.Name != "" {
			o.Errorf("name", "%q used twice (first at line %d)", port.Name, first)
			continue
		}
		if first := numbers[strconv.Itoa(int(port.Port))+"/"+port.Protocol]; first != 0 {
			o.Errorf("port", "%d/%s used twice (first at line %d)", port.Port, port.Protocol, first)
			continue
		}
		if port.Port == 0 {
			continue
		}
		if port.Name != "" {
			names[port.Name] = n.Line
		}
		numbers[strconv.Itoa(int(port.Port))+"/"+port.Protocol] = n.Line
		ports = append(ports, port)
	}
	return ports
}

func (p *parser) endpoint(n *yaml.Node, index int, service string, c *discovery.Cluster, portNames map[string]bool) (discovery.Endpoint, bool) {
	where := yamlnode.Index(yamlnode.Join(service, "endpoints"), index)
	if addr := yamlnode.Peek(n, "address"); addr != "" {
		where = yamlnode.Index(yamlnode.Join(service, "endpoints"), addr)
	}
	o := p.Object(n, where, endpointFields...)
	if o == nil {
		return discovery.Endpoint{}, false
	}
	e := discovery.Endpoint{
		Ready:          o.Bool("ready", true),
		Terminating:    o.Bool("terminating", false),
		ServiceAccount: o.Str("serviceAccount", false),
		MTLS:           o.Bool("mtls", true),
	}
	e.Serving = o.Bool("serving", e.Ready)
	if e.ServiceAccount == "" {
		e.ServiceAccount = "default"
	} else if !discovery.IsDNSName(e.ServiceAccount) {
		o.Errorf("serviceAccount", "%q is not a lower-case DNS name", e.ServiceAccount)
	}
	if network := o.Str("network", false); network != "" && c.Network != "" && network != c.Network {
		o.Errorf("network", "%q is not its cluster's network %q", network, c.Network)
	}
	// The locality is the cluster's, with the fields given here overriding it.
	// Overriding a level drops the cluster's levels below it: an endpoint moved
	// to another zone does not keep the cluster's sub-zone.
	e.Locality = c.Locality
	if r := o.Str("region", false); r != "" {
		e.Locality = discovery.Locality{Region: r}
	}
	if z := o.Str("zone", false); z != "" {
		e.Locality.Zone, e.Locality.SubZone = z, ""
	}
	if sz := o.Str("subZone", false); sz != "" {
		e.Locality.SubZone = sz
	}
	if err := checkLocality(e.Locality); err != "" {
		p.Errorf(n, where, "%s", err)
	}
	o.Entries("ports", endpointPortsBound, func(_ *yaml.Node, name string, v *yaml.Node) {
		if !portNames[name] {
			p.Errorf(v, yamlnode.Index(yamlnode.Join(where, "ports"), name), "not a port name of the service")
			return
		}
		if port, ok := p.portNumber(v, yamlnode.Index(yamlnode.Join(where, "ports"), name), ""); ok {
			if e.Ports == nil {
				e.Ports = map[string]uint32{}
			}
			e.Ports[name] = port
		}
	})
	o.Entries("labels", labelsBound, func(_ *yaml.Node, k string, v *yaml.Node) {
		if k == "" {
			p.Errorf(v, yamlnode.Join(where, "labels"), "empty label name")
			return
		}
		if value, ok := p.ScalarString(v, yamlnode.Index(yamlnode.Join(where, "labels"), k), ""); ok {
			if e.Labels == nil {
				e.Labels = map[string]string{}
			}
			e.Labels[k] = value
		}
	})
	addr := o.Str("address", true)
	if addr == "" {
		return discovery.Endpoint{}, false
	}
	ip, err := netip.ParseAddr(addr)
	if err != nil || ip.Zone() != "" {
		o.Errorf("address", "%q is not an IP address", addr)
		return discovery.Endpoint{}, false
	}
	e.Address = ip.String()
	return e, true
}

// isHostName reports whether s is a DNS name, in any case, whose last label
// is not all digits (so that a mistyped IPv4 address like 300.1.1.1 is not
// taken for a name).
func isHostName(s string) bool {
	s = strings.ToLower(s)
	last := s[strings.LastIndexByte(s, '.')+1:]
	return discovery.IsDNSName(s) && strings.Trim(last, "0123456789") != ""
}
