package policyfile

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/internal/yamlnode"
)

// Field names of each object of the format.
var (
	topFields        = []string{"defaults", "services", "routes"}
	settingsFields   = []string{"connectTimeout", "overprovisioningFactor", "notReadyEndpoints", "locality", "outlierDetection", "retries", "clusters"}
	ruleFields       = append([]string{"match"}, settingsFields...)
	matchFields      = []string{"service", "host"}
	localityFields   = []string{"enabled", "failoverPriority", "failover", "distribute"}
	failoverFields   = []string{"from", "to"}
	distributeFields = []string{"from", "to"}
	outlierFields    = []string{"enabled", "consecutive5xxErrors", "consecutiveGatewayErrors", "interval", "baseEjectionTime", "maxEjectionPercent"}
	retriesFields    = []string{"attempts", "perTryTimeout", "retryOn"}
	clustersFields   = []string{"weights", "pin"}
)

// Istio's well-known label names for the topology keys.
var keyAliases = map[string]Key{
	"topology.kubernetes.io/region": KeyRegion,
	"topology.kubernetes.io/zone":   KeyZone,
	"topology.istio.io/subzone":     KeySubZone,
	"topology.istio.io/cluster":     KeyCluster,
	"topology.istio.io/network":     KeyNetwork,
}

// Load reads the policy file at path, no more than MaxFileSize+1 bytes of
// it, and checks it against a topology (Parse).
func Load(path string, known Topology) (*File, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data, known)
}

func readFile(path string) ([]byte, error) {
	return yamlnode.ReadFile(path, "policy", MaxFileSize)
}

// Parse parses and checks a policy file against the topology it will be used
// with. name is the file name that messages start with
// ("name:line:col: path: message"). It reports every problem it finds, sorted
// by position (at most yamlnode.MaxErrors); the Policy is built only from a
// file without any. Data of more than MaxFileSize bytes is rejected before
// it is parsed.
func Parse(name string, data []byte, known Topology) (*File, error) {
	p := newParser(name)
	c := &checker{p: p, topo: known.normalized()}
	pol := c.document(data)
	if err := p.Err(); err != nil {
		return nil, err
	}
	pol.Name = name
	pol.Warnings = yamlnode.Sorted(p.Warnings)
	pol.Version = fingerprint(pol)
	return pol, nil
}

// Source ranks of the layers of a service's settings.
const (
	fromDefaults = iota
	fromService
	fromHost
)

// layer is what one block of the file (defaults: or one rule) sets, with
// where, for the checks that span layers.
type layer struct {
	rank  int
	path  string
	given map[string]*yaml.Node // settings fields given and valid -> key node
	s     Settings              // their values
	// targets are the localities the locality block sends traffic to.
	targets []target
}

// target is a failover region or a distribute pattern, where it is written.
type target struct {
	pattern Pattern
	node    *yaml.Node
	path    string
}

// merge applies a layer over settings: every field the layer gives replaces
// the inherited one whole. origins records which layer gave each field.
func merge(base Settings, origins map[string]*layer, l *layer) (Settings, map[string]*layer) {
	out := base
	o := make(map[string]*layer, len(origins)+len(l.given))
	for k, v := range origins {
		o[k] = v
	}
	for k := range l.given {
		o[k] = l
		switch k {
		case "connectTimeout":
			out.ConnectTimeout = l.s.ConnectTimeout
		case "overprovisioningFactor":
			out.OverprovisioningFactor = l.s.OverprovisioningFactor
		case "locality":
			out.Locality = l.s.Locality
		case "outlierDetection":
			out.OutlierDetection = l.s.OutlierDetection
		case "retries":
			out.Retries = l.s.Retries
		case "clusters":
			out.Clusters = l.s.Clusters
		case "notReadyEndpoints":
			out.NotReady = l.s.NotReady
		}
	}
	return out, o
}

// checker walks a file and checks it against a topology.
type checker struct {
	p    *parser
	topo Topology
	// routeHosts are the hosts routes: has seen, with their lines.
	routeHosts map[string]int
}

func (c *checker) document(data []byte) *File {
	p := c.p
	root := p.Document(data, "policy", "defaults: and services: (write services: [] for the built-in defaults)")
	if root == nil {
		return nil
	}
	top := p.Object(root, "", topFields...)
	if top == nil {
		return nil
	}

	pol := &File{byService: map[discovery.ServiceKey]Settings{}, byHost: map[string]Settings{}}
	defaults := &layer{rank: fromDefaults, path: "defaults", given: map[string]*yaml.Node{}}
	if n := top.Get("defaults"); n != nil && yamlnode.IsNull(n) {
		top.Errorf("defaults", "null: leave it out for the built-in defaults")
	}
	if n, ok := top.Set("defaults"); ok {
		if o := p.Object(n, "defaults", settingsFields...); o != nil {
			c.settings(o, defaults)
		}
	}
	var origins map[string]*layer
	pol.Defaults, origins = merge(builtin(), nil, defaults)
	c.contradictions(pol.Defaults, origins, nil)

	type parsed struct {
		match Match
		node  *yaml.Node
		l     *layer
	}
	var rules []parsed
	serviceLines, hostLines := map[discovery.ServiceKey]int{}, map[string]int{}
	if n := top.Get("services"); n != nil && n.Kind != yaml.SequenceNode && !yamlnode.IsNull(n) {
		top.Errorf("services", "want a list of rules, got %s", yamlnode.Describe(n))
	}
	for i, item := range top.List("services", rulesBound) {
		path := index("services", i)
		if m := yamlnode.Child(item, "match"); m != nil {
			if name := cmp.Or(yamlnode.Peek(m, "service"), yamlnode.Peek(m, "host")); name != "" {
				path = index("services", name)
			}
		}
		o := p.Object(item, path, ruleFields...)
		if o == nil {
			continue
		}
		m, ok := c.match(o)
		if !ok {
			continue
		}
		if m.Host == "" {
			if first := serviceLines[m.Service]; first != 0 {
				p.Errorf(o.At("match"), join(path, "match"), "service %s has a rule already (at line %d)", m.Service, first)
				continue
			}
			serviceLines[m.Service] = item.Line
		} else {
			if first := hostLines[m.Host]; first != 0 {
				if m.Alias != "" {
					p.Errorf(o.At("match"), join(path, "match"), "alias %s stands for host %s, which has a rule already (at line %d)", m.Alias, m.Host, first)
					continue
				}
				p.Errorf(o.At("match"), join(path, "match"), "host %s has a rule already (at line %d)", m.Host, first)
				continue
			}
			hostLines[m.Host] = item.Line
		}
		l := &layer{rank: fromService, path: path, given: map[string]*yaml.Node{}}
		if m.Host != "" {
			l.rank = fromHost
		}
		c.settings(o, l)
		if !c.topo.hasService(m.Service) {
			p.Warnf(o.At("match"), join(path, "match"), "no cluster has a service %s (yet)", m.Service)
		}
		rules = append(rules, parsed{m, item, l})
	}

	// Effective settings: defaults, then the service's rule, then the host's.
	serviceLayer := map[discovery.ServiceKey]*layer{}
	for _, r := range rules {
		if r.match.Host == "" {
			serviceLayer[r.match.Service] = r.l
		}
	}
	for _, r := range rules {
		s, o := pol.Defaults, origins
		if sl := serviceLayer[r.match.Service]; sl != nil && r.match.Host != "" {
			s, o = merge(s, o, sl)
		}
		s, o = merge(s, o, r.l)
		c.contradictions(s, o, &r.match.Service)
		pol.Rules = append(pol.Rules, Rule{Match: r.match, Line: r.node.Line, Settings: s})
		if r.match.Host == "" {
			pol.byService[r.match.Service] = s
		} else {
			pol.byHost[r.match.Host] = s
		}
	}
	c.routes(top, pol) // routeparse.go
	return pol
}

// match reads a rule's match: exactly one of service (ns/name) and host.
func (c *checker) match(rule *yamlnode.Object) (Match, bool) {
	n, ok := rule.Set("match")
	if !ok {
		c.p.Errorf(rule.Node(), rule.Where(), "missing required field \"match\"")
		return Match{}, false
	}
	path := join(rule.Where(), "match")
	o := c.p.Object(n, path, matchFields...)
	if o == nil {
		return Match{}, false
	}
	svc, host := o.Str("service", false), o.Str("host", false)
	switch {
	case svc == "" && host == "":
		c.p.Errorf(n, path, "want service: <namespace>/<name> or host: <name>.<namespace>.svc.<domain>")
	case svc != "" && host != "":
		c.p.Errorf(n, path, "service and host both given: a rule matches one or the other")
	case svc != "":
		ns, name, ok := strings.Cut(svc, "/")
		if !ok || !discovery.IsDNSLabel(ns) || !discovery.IsDNSLabel(name) {
			o.Errorf("service", "%q is not <namespace>/<name> (each a DNS label)", svc)
			return Match{}, false
		}
		return Match{Service: discovery.ServiceKey{Namespace: ns, Name: name}}, true
	default:
		k, _, err := discovery.ParseHost(host)
		if target, ok := c.topo.Aliases[host]; ok && err != nil {
			k, _, _ = discovery.ParseHost(target)
			return Match{Service: k, Host: target, Alias: host}, true
		}
		if err != nil || !discovery.IsDNSLabel(k.Namespace) || !discovery.IsDNSLabel(k.Name) {
			o.Errorf("host", "%q is not a service host <name>.<namespace>.svc.cluster.local or .svc.clusterset.local, nor an alias of a service", host)
			return Match{}, false
		}
		return Match{Service: k, Host: host}, true
	}
	return Match{}, false
}

// settings reads the settings fields of o (defaults: or a rule) into l.
func (c *checker) settings(o *yamlnode.Object, l *layer) {
	p := c.p
	if d, ok := duration(o, "connectTimeout"); ok {
		l.s.ConnectTimeout, l.given["connectTimeout"] = d, o.Key("connectTimeout")
	}
	if n, ok := o.Set("overprovisioningFactor"); ok {
		if f, ok := p.integer(n, join(o.Where(), "overprovisioningFactor"), minOverprovisioningFactor, maxOverprovisioningFactor); ok {
			l.s.OverprovisioningFactor, l.given["overprovisioningFactor"] = uint32(f), o.Key("overprovisioningFactor")
		}
	}
	if n, ok := o.Set("notReadyEndpoints"); ok {
		path := join(o.Where(), "notReadyEndpoints")
		if v, ok := p.ScalarString(n, path, ""); ok {
			if i := slices.Index(notReadyNames[:], v); i >= 0 {
				l.s.NotReady, l.given["notReadyEndpoints"] = NotReady(i), o.Key("notReadyEndpoints")
			} else {
				p.Errorf(n, path, "%q: want %s (keep them, UNHEALTHY, so that load spills over gradually) or %s (leave them out)", v, NotReadyUnhealthy, NotReadyOmit)
			}
		}
	}
	if n, ok := o.Set("locality"); ok {
		if lo := p.Object(n, join(o.Where(), "locality"), localityFields...); lo != nil {
			if lb, ok := c.locality(lo, l); ok {
				l.s.Locality, l.given["locality"] = lb, o.Key("locality")
			}
		}
	}
	if n, ok := o.Set("outlierDetection"); ok {
		if od := p.Object(n, join(o.Where(), "outlierDetection"), outlierFields...); od != nil {
			if v, ok := c.outlier(od); ok {
				l.s.OutlierDetection, l.given["outlierDetection"] = v, o.Key("outlierDetection")
			}
		}
	}
	if n, ok := o.Set("retries"); ok {
		if ro := p.Object(n, join(o.Where(), "retries"), retriesFields...); ro != nil {
			if v, ok := c.retries(ro); ok {
				l.s.Retries, l.given["retries"] = v, o.Key("retries")
			}
		}
	}
	if n, ok := o.Set("clusters"); ok {
		if co := p.Object(n, join(o.Where(), "clusters"), clustersFields...); co != nil {
			if v, ok := c.clusters(co); ok {
				l.s.Clusters, l.given["clusters"] = v, o.Key("clusters")
			}
		}
	}
	for _, k := range settingsFields {
		if n := o.Get(k); n != nil && yamlnode.IsNull(n) {
			o.Errorf(k, "null: leave the field out to inherit it")
		}
	}
}

// locality reads a locality block. Its checks are local: the block replaces
// the inherited one whole.
func (c *checker) locality(o *yamlnode.Object, l *layer) (LocalityLB, bool) {
	p := c.p
	nerrs := len(p.List)
	lb := LocalityLB{Enabled: o.Bool("enabled", true), FailoverPriority: builtin().Locality.FailoverPriority}
	if !lb.Enabled {
		for _, k := range localityFields[1:] {
			if _, ok := o.Set(k); ok {
				o.Errorf(k, "has no effect with enabled: false (every endpoint is in one priority); remove one of them")
			}
		}
		return LocalityLB{}, len(p.List) == nerrs
	}

	// failoverPriority
	var prioNodes []*yaml.Node
	if _, ok := o.Set("failoverPriority"); ok {
		lb.FailoverPriority, lb.FailoverPriorityGiven = nil, true
		items := o.List("failoverPriority", failoverPriorityBound)
		if n := o.Get("failoverPriority"); n.Kind == yaml.SequenceNode && len(n.Content) == 0 {
			o.Errorf("failoverPriority", "empty; write enabled: false to put every endpoint in one priority")
		}
		seen := map[Key]int{}
		for i, item := range items {
			path := index(join(o.Where(), "failoverPriority"), i)
			s, ok := p.ScalarString(item, path, "")
			if !ok {
				continue
			}
			k := Key(s)
			if alias, ok := keyAliases[s]; ok {
				k = alias
			} else if k.IsLabel() && !discovery.IsLabelKey(s) {
				p.Errorf(item, path, "%q is neither region, zone, subZone, cluster, network nor a label name", s)
				continue
			}
			if first := seen[k]; first != 0 {
				p.Errorf(item, path, "%s listed twice (first at line %d)", k, first)
				continue
			}
			switch {
			case k == KeyZone && seen[KeyRegion] == 0:
				p.Errorf(item, path, "zone without region before it: zone names are only unique within a region")
			case k == KeySubZone && seen[KeyZone] == 0:
				p.Errorf(item, path, "subZone without zone before it: sub-zone names are only unique within a zone")
			}
			seen[k] = item.Line
			lb.FailoverPriority = append(lb.FailoverPriority, k)
			prioNodes = append(prioNodes, item)
		}
	}

	// failover
	fromLines := map[string]*yaml.Node{}
	for i, item := range o.List("failover", failoverBound) {
		path := index(join(o.Where(), "failover"), i)
		if from := yamlnode.Peek(item, "from"); from != "" {
			path = index(join(o.Where(), "failover"), from)
		}
		fo := p.Object(item, path, failoverFields...)
		if fo == nil {
			continue
		}
		f := Failover{From: fo.Str("from", false)}
		_, hasFrom := fo.Set("from")
		switch {
		case !hasFrom:
			p.Errorf(item, path, "missing required field \"from\"")
		case f.From == "":
		case fromLines[f.From] != nil:
			fo.Errorf("from", "region %s has a failover entry already (at line %d)", f.From, fromLines[f.From].Line)
			f.From = ""
		case !c.topo.hasRegion(f.From):
			fo.Errorf("from", "unknown region %q (known: %s)", f.From, strings.Join(c.topo.regions(), ", "))
		}
		if f.From != "" {
			fromLines[f.From] = fo.At("from")
		}
		to := fo.List("to", failoverToBound)
		if n, ok := fo.Set("to"); !ok || n.Kind == yaml.SequenceNode && len(n.Content) == 0 {
			fo.Errorf("to", "want at least one region to fail over to")
		}
		seen := map[string]int{}
		for j, t := range to {
			tpath := index(join(path, "to"), j)
			r, ok := p.ScalarString(t, tpath, "")
			switch {
			case !ok:
			case r == f.From:
				p.Errorf(t, tpath, "%s fails over to itself: a region's own endpoints always come first", r)
			case seen[r] != 0:
				p.Errorf(t, tpath, "%s listed twice (first at line %d)", r, seen[r])
			case !c.topo.hasRegion(r):
				p.Errorf(t, tpath, "unknown region %q (known: %s)", r, strings.Join(c.topo.regions(), ", "))
			default:
				seen[r] = t.Line
				f.To = append(f.To, r)
				l.targets = append(l.targets, target{Pattern{Region: r}, t, tpath})
			}
		}
		if f.From != "" {
			lb.Failover = append(lb.Failover, f)
		}
	}
	slices.SortFunc(lb.Failover, func(a, b Failover) int { return strings.Compare(a.From, b.From) })
	if len(lb.Failover) > 0 && len(prioNodes) > 0 && lb.FailoverPriority[0] != KeyRegion {
		p.Errorf(prioNodes[0], index(join(o.Where(), "failoverPriority"), 0),
			"must be region when failover is set: failover ranks the regions after the proxy's own")
	}

	// distribute
	var froms []target
	for i, item := range o.List("distribute", distributeBound) {
		path := index(join(o.Where(), "distribute"), i)
		if from := yamlnode.Peek(item, "from"); from != "" {
			path = index(join(o.Where(), "distribute"), from)
		}
		do := p.Object(item, path, distributeFields...)
		if do == nil {
			continue
		}
		var d Distribute
		fromOK := false
		if n, ok := do.Set("from"); ok {
			d.From, fromOK = c.pattern(n, join(path, "from"))
		} else {
			p.Errorf(item, path, "missing required field \"from\"")
		}
		if fromOK {
			for _, f := range froms {
				if f.pattern == d.From {
					p.Errorf(do.At("from"), join(path, "from"), "%s has a distribute entry already (at line %d)", d.From, f.node.Line)
					fromOK = false
				}
			}
		}
		if fromOK {
			froms = append(froms, target{d.From, do.At("from"), join(path, "from")})
		}
		if n, ok := do.Set("to"); !ok || n.Kind == yaml.MappingNode && len(n.Content) == 0 {
			do.Errorf("to", "want localities and their weights, adding up to %d", distributeTotal)
		}
		total := 0
		var shares []target
		do.Entries("to", distributeToBound, func(k *yaml.Node, name string, v *yaml.Node) {
			tpath := index(join(path, "to"), name)
			pat, ok := c.pattern(k, tpath)
			w, wok := p.integer(v, tpath, 1, distributeTotal)
			total += int(w)
			if !ok || !wok {
				total = -1 << 20 // a bad weight: the sum says nothing more
				return
			}
			for _, s := range shares {
				if s.pattern.overlaps(pat) {
					p.Errorf(k, tpath, "overlaps %s (line %d): a locality gets one weight", s.pattern, s.node.Line)
					return
				}
			}
			shares = append(shares, target{pat, k, tpath})
			d.To = append(d.To, Share{To: pat, Weight: uint32(w)})
			l.targets = append(l.targets, target{pat, k, tpath})
		})
		if n, ok := do.Set("to"); ok && total >= 0 && len(d.To) > 0 && total != distributeTotal {
			p.Errorf(n, join(path, "to"), "weights add up to %d, want %d", total, distributeTotal)
		}
		slices.SortFunc(d.To, func(a, b Share) int { return comparePatterns(a.To, b.To) })
		if fromOK {
			lb.Distribute = append(lb.Distribute, d)
		}
	}
	return lb, len(p.List) == nerrs
}

// pattern reads a locality pattern and checks it against the topology.
func (c *checker) pattern(n *yaml.Node, path string) (Pattern, bool) {
	s, ok := c.p.ScalarString(n, path, "")
	if !ok {
		return Pattern{}, false
	}
	parts := strings.Split(s, "/")
	bad := len(parts) > 3
	for i, part := range parts {
		if part == "" || part == "*" && i != len(parts)-1 || strings.Contains(part, "*") && part != "*" {
			bad = true
		}
	}
	if bad {
		c.p.Errorf(n, path, "%q is not a locality pattern: region[/zone[/subZone]], each level a name, the last may be *", s)
		return Pattern{}, false
	}
	if parts[len(parts)-1] == "*" {
		parts = parts[:len(parts)-1]
	}
	parts = append(parts, "", "", "")
	pat := Pattern{Region: parts[0], Zone: parts[1], SubZone: parts[2]}
	switch {
	case pat.Depth() == 0 || c.topo.matches(pat, nil):
		return pat, true
	case !c.topo.hasRegion(pat.Region):
		c.p.Errorf(n, path, "unknown region %q (known: %s)", pat.Region, strings.Join(c.topo.regions(), ", "))
	case pat.SubZone == "" || !c.topo.matches(Pattern{Region: pat.Region, Zone: pat.Zone}, nil):
		c.p.Errorf(n, path, "unknown zone %q in region %s", pat.Zone, pat.Region)
	default:
		c.p.Errorf(n, path, "unknown sub-zone %q in zone %s/%s", pat.SubZone, pat.Region, pat.Zone)
	}
	return Pattern{}, false
}

func (c *checker) outlier(o *yamlnode.Object) (*OutlierDetection, bool) {
	nerrs := len(c.p.List)
	if !o.Bool("enabled", true) {
		for _, k := range outlierFields[1:] {
			if _, ok := o.Set(k); ok {
				o.Errorf(k, "has no effect with enabled: false; remove one of them")
			}
		}
		return nil, len(c.p.List) == nerrs
	}
	od := &OutlierDetection{
		Consecutive5xxErrors: defaultConsecutive5xx,
		Interval:             defaultOutlierInterval,
		BaseEjectionTime:     defaultBaseEjectionTime,
		MaxEjectionPercent:   defaultMaxEjectionPercent,
	}
	if v, ok := c.p.uint(o, "consecutive5xxErrors", 0, 1000); ok {
		od.Consecutive5xxErrors = v
	}
	if v, ok := c.p.uint(o, "consecutiveGatewayErrors", 0, 1000); ok {
		od.ConsecutiveGatewayErrors = v
	}
	if d, ok := duration(o, "interval"); ok {
		od.Interval = d
	}
	if d, ok := duration(o, "baseEjectionTime"); ok {
		od.BaseEjectionTime = d
	}
	if v, ok := c.p.uint(o, "maxEjectionPercent", 1, 100); ok {
		od.MaxEjectionPercent = v
	}
	if len(c.p.List) == nerrs && od.Consecutive5xxErrors == 0 && od.ConsecutiveGatewayErrors == 0 {
		c.p.Errorf(o.Node(), o.Where(), "consecutive5xxErrors and consecutiveGatewayErrors are both 0: nothing is ever ejected (write enabled: false)")
	}
	return od, len(c.p.List) == nerrs
}

func (c *checker) retries(o *yamlnode.Object) (*Retries, bool) {
	nerrs := len(c.p.List)
	attempts, ok := c.p.uint(o, "attempts", 0, maxRetryAttempts)
	if _, given := o.Set("attempts"); !given {
		c.p.Errorf(o.Node(), o.Where(), "missing required field \"attempts\" (0 to not retry)")
		return nil, false
	}
	if !ok {
		return nil, false
	}
	if attempts == 0 {
		for _, k := range retriesFields[1:] {
			if _, ok := o.Set(k); ok {
				o.Errorf(k, "has no effect with attempts: 0; remove one of them")
			}
		}
		return nil, len(c.p.List) == nerrs
	}
	r := &Retries{Attempts: attempts}
	if d, ok := duration(o, "perTryTimeout"); ok {
		r.PerTryTimeout = d
	}
	items := o.List("retryOn", retryOnBound)
	if n, ok := o.Set("retryOn"); ok && n.Kind == yaml.SequenceNode && len(n.Content) == 0 {
		o.Errorf("retryOn", "empty: leave it out for %s", strings.Join(defaultRetryOn, ", "))
	}
	seen := map[string]int{}
	for i, item := range items {
		path := index(join(o.Where(), "retryOn"), i)
		s, ok := c.p.ScalarString(item, path, "")
		switch {
		case !ok:
		case !slices.Contains(retryConditions, s):
			c.p.Errorf(item, path, "unknown retry condition %q (known: %s)", s, strings.Join(retryConditions, ", "))
		case seen[s] != 0:
			c.p.Errorf(item, path, "%s listed twice (first at line %d)", s, seen[s])
		default:
			seen[s] = item.Line
			r.RetryOn = append(r.RetryOn, s)
		}
	}
	if len(r.RetryOn) == 0 {
		r.RetryOn = slices.Clone(defaultRetryOn)
	}
	slices.Sort(r.RetryOn)
	return r, len(c.p.List) == nerrs
}

func (c *checker) clusters(o *yamlnode.Object) (ClusterTraffic, bool) {
	p := c.p
	nerrs := len(p.List)
	var ct ClusterTraffic
	known := strings.Join(c.topo.clusterNames(), ", ")
	weightKeys := map[string]*yaml.Node{}
	o.Entries("weights", weightsBound, func(k *yaml.Node, name string, v *yaml.Node) {
		path := index(join(o.Where(), "weights"), name)
		if _, ok := c.topo.cluster(name); !ok {
			p.Errorf(k, path, "unknown cluster %q (known: %s)", name, known)
			return
		}
		w, ok := p.integer(v, path, 0, maxClusterWeight)
		if !ok {
			return
		}
		if ct.Weights == nil {
			ct.Weights = map[string]uint32{}
		}
		ct.Weights[name], weightKeys[name] = uint32(w), k
	})
	pins := map[string]int{}
	items := o.List("pin", pinBound)
	if n, ok := o.Set("pin"); ok && n.Kind == yaml.SequenceNode && len(n.Content) == 0 {
		o.Errorf("pin", "empty: leave it out to use every cluster")
	}
	for i, item := range items {
		path := index(join(o.Where(), "pin"), i)
		name, ok := p.ScalarString(item, path, "")
		switch {
		case !ok:
		case pins[name] != 0:
			p.Errorf(item, path, "%s listed twice (first at line %d)", name, pins[name])
		case !func() bool { _, ok := c.topo.cluster(name); return ok }():
			p.Errorf(item, path, "unknown cluster %q (known: %s)", name, known)
		default:
			pins[name] = item.Line
			ct.Pin = append(ct.Pin, name)
			if w, ok := ct.Weights[name]; ok && w == 0 {
				p.Errorf(item, path, "%s is pinned but has weight 0 (line %d): it would get no traffic", name, weightKeys[name].Line)
			}
		}
	}
	slices.Sort(ct.Pin)
	if len(ct.Pin) > 0 {
		for name, k := range weightKeys {
			if pins[name] == 0 {
				p.Errorf(k, index(join(o.Where(), "weights"), name), "%s is not pinned: its weight has no effect", name)
			}
		}
	}
	if len(p.List) == nerrs && len(ct.Pin) == 0 && len(c.topo.Clusters) > 0 && !slices.ContainsFunc(c.topo.Clusters, func(tc TopologyCluster) bool {
		return ct.Weight(tc.Name) > 0
	}) {
		p.Errorf(o.At("weights"), join(o.Where(), "weights"), "every cluster has weight 0: no cluster would get traffic")
	}
	return ct, len(p.List) == nerrs
}

// contradictions checks what can only be checked on a service's effective
// settings, where defaults and rules meet: every locality the locality block
// sends traffic to must hold a cluster that the clusters block lets traffic
// reach. svc is nil for the defaults.
func (c *checker) contradictions(s Settings, origins map[string]*layer, svc *discovery.ServiceKey) {
	loc, cl := origins["locality"], origins["clusters"]
	if cl != nil && svc != nil {
		for _, name := range append(slices.Clone(s.Clusters.Pin), slices.Sorted(maps.Keys(s.Clusters.Weights))...) {
			if tc, ok := c.topo.cluster(name); ok && s.Clusters.Weight(name) > 0 && c.topo.hasService(*svc) {
				if _, has := slices.BinarySearchFunc(tc.Services, *svc, discovery.ServiceKey.Compare); !has {
					c.p.Warnf(cl.given["clusters"], join(cl.path, "clusters"), "cluster %s has no service %s (yet)", name, *svc)
				}
			}
		}
	}
	if loc == nil || cl == nil {
		return
	}
	reach := func(name string) bool { return s.Clusters.Weight(name) > 0 }
	for _, t := range loc.targets {
		if c.topo.matches(t.pattern, reach) {
			continue
		}
		if cl.rank > loc.rank {
			// The rule narrowed the clusters under an inherited locality
			// block: the inherited target is moot for this service, not wrong.
			k := cl.given["clusters"]
			c.p.Warnf(k, join(cl.path, "clusters"), "no cluster it lets traffic reach is in %s: the inherited %s (line %d) has no effect here", t.pattern, t.path, t.node.Line)
		} else {
			c.p.Errorf(t.node, t.path, "no cluster that %s (line %d) lets traffic reach is in %s", join(cl.path, "clusters"), cl.given["clusters"].Line, t.pattern)
		}
	}
}

// fingerprint hashes the effective settings, not the file's text: equal
// policies have equal versions whatever their comments and layout.
func fingerprint(p *File) string {
	type rule struct {
		Match    string
		Settings Settings
	}
	v := struct {
		Defaults Settings
		Rules    []rule
		Routes   string `json:",omitempty"` // a file without routes keeps its version
	}{Defaults: p.Defaults, Routes: describeRoutes(p)}
	for _, r := range p.Rules {
		v.Rules = append(v.Rules, rule{r.Match.String(), r.Settings})
	}
	slices.SortFunc(v.Rules, func(a, b rule) int { return strings.Compare(a.Match, b.Match) })
	data, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("policyfile: hashing a policy: %v", err)) // only plain values: cannot fail
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:16])
}
