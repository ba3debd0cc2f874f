// This file reads the ClusterSet file's workloadGroups: list, the
// workloads outside Kubernetes (discovery.WorkloadGroup), and the
// workloads file of `horizon serve --workloads`, which holds workload
// groups (and the clusters of VM networks) beside Kubernetes members.

package file

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/internal/yamlnode"
)

// Limits of the workload groups of a file.
const (
	// MaxWorkloadGroups is the most workload groups of a file.
	MaxWorkloadGroups = 1000
	// MaxDeclaredInstances is the most instances a group declares in the
	// file (agents register the others; see the registry's limits).
	MaxDeclaredInstances = 1000
	// maxProbeDuration bounds a probe's durations and a grace period.
	maxProbeDuration = time.Hour
)

var (
	groupsBound    = yamlnode.Bound{Max: MaxWorkloadGroups, What: "workload groups"}
	instancesBound = yamlnode.Bound{Max: MaxDeclaredInstances, What: "instances"}
	addressesBound = yamlnode.Bound{Max: 64, What: "address prefixes"}
)

// Field names of a workload group and its parts.
var (
	groupFields    = []string{"name", "namespace", "service", "serviceAccount", "cluster", "locality", "ports", "labels", "exported", "probe", "gracePeriod", "instances", "addresses", "tokenReviewCluster"}
	probeFields    = []string{"type", "port", "path", "service", "initialDelay", "interval", "timeout", "successThreshold", "failureThreshold"}
	instanceFields = []string{"address", "labels", "ready"}
)

// groupAt is a parsed group and the node it came from, for errors found
// once the clusters are known.
type groupAt struct {
	group discovery.WorkloadGroup
	node  *yaml.Node
	where string
}

// workloadGroups reads the top-level workloadGroups: list.
func (p *parser) workloadGroups(top *yamlnode.Object) []groupAt {
	var out []groupAt
	lines := map[discovery.ServiceKey]int{}
	for i, item := range top.List("workloadGroups", groupsBound) {
		g, where, ok := p.workloadGroup(item, i)
		if !ok {
			continue
		}
		if first := lines[g.Key()]; first != 0 {
			p.Errorf(item, where, "defined twice (first at line %d)", first)
			continue
		}
		lines[g.Key()] = item.Line
		out = append(out, groupAt{g, item, where})
	}
	return out
}

func (p *parser) workloadGroup(n *yaml.Node, index int) (discovery.WorkloadGroup, string, bool) {
	where := yamlnode.Index("workloadGroups", index)
	if ns, name := yamlnode.Peek(n, "namespace"), yamlnode.Peek(n, "name"); ns != "" && name != "" {
		where = yamlnode.Index("workloadGroups", ns+"/"+name)
	}
	o := p.Object(n, where, groupFields...)
	if o == nil {
		return discovery.WorkloadGroup{}, where, false
	}
	g := discovery.WorkloadGroup{
		Name:           o.Str("name", true),
		Namespace:      o.Str("namespace", true),
		Service:        o.Str("service", true),
		ServiceAccount: o.Str("serviceAccount", false),
		Cluster:        o.Str("cluster", true),
		Exported:       o.Bool("exported", false),
		GracePeriod:    probeDuration(o, "gracePeriod"),

		TokenReviewCluster: o.Str("tokenReviewCluster", false),
	}
	for _, f := range []struct{ key, v string }{{"name", g.Name}, {"namespace", g.Namespace}, {"service", g.Service}, {"tokenReviewCluster", g.TokenReviewCluster}} {
		if f.v != "" && !discovery.IsDNSLabel(f.v) {
			o.Errorf(f.key, "%q is not a DNS label (lower-case letters, digits and '-', at most 63)", f.v)
		}
	}
	if g.ServiceAccount == "" {
		g.ServiceAccount = "default"
	} else if !discovery.IsDNSName(g.ServiceAccount) {
		o.Errorf("serviceAccount", "%q is not a lower-case DNS name", g.ServiceAccount)
	}
	if g.GracePeriod == 0 {
		g.GracePeriod = discovery.DefaultGracePeriod
	}
	if l, ok := o.Set("locality"); ok {
		if lo := p.Object(l, yamlnode.Join(where, "locality"), localityFields...); lo != nil {
			g.Locality = discovery.Locality{Region: lo.Str("region", false), Zone: lo.Str("zone", false), SubZone: lo.Str("subZone", false)}
			if err := checkLocality(g.Locality); err != "" {
				p.Errorf(l, yamlnode.Join(where, "locality"), "%s", err)
			}
		}
	}
	g.Ports = p.ports(o.List("ports", portsBound), where)
	g.Labels = p.labels(o, where)
	for i, item := range o.List("addresses", addressesBound) {
		pfx, err := netip.ParsePrefix(item.Value)
		if err != nil || item.Kind != yaml.ScalarNode {
			p.Errorf(item, yamlnode.Index(yamlnode.Join(where, "addresses"), i), "%q is not a CIDR prefix like 10.2.0.0/24", item.Value)
			continue
		}
		g.Addresses = append(g.Addresses, pfx.Masked())
	}
	if pn, ok := o.Set("probe"); ok {
		g.Probe = p.probe(pn, yamlnode.Join(where, "probe"))
	}
	lines := map[string]int{}
	for i, item := range o.List("instances", instancesBound) {
		in, ok := p.instance(item, i, where, g.Key())
		if !ok {
			continue
		}
		if first := lines[in.Address]; first != 0 {
			p.Errorf(item, yamlnode.Index(yamlnode.Join(where, "instances"), in.Address), "listed twice (first at line %d)", first)
			continue
		}
		lines[in.Address] = item.Line
		g.Instances = append(g.Instances, in)
	}
	return g, where, g.Name != "" && g.Namespace != "" && g.Service != "" && g.Cluster != ""
}

// labels reads the labels: mapping of o.
func (p *parser) labels(o *yamlnode.Object, where string) map[string]string {
	var out map[string]string
	o.Entries("labels", labelsBound, func(_ *yaml.Node, k string, v *yaml.Node) {
		if k == "" {
			p.Errorf(v, yamlnode.Join(where, "labels"), "empty label name")
			return
		}
		if value, ok := p.ScalarString(v, yamlnode.Index(yamlnode.Join(where, "labels"), k), ""); ok {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = value
		}
	})
	return out
}

func (p *parser) probe(n *yaml.Node, where string) *discovery.Probe {
	o := p.Object(n, where, probeFields...)
	if o == nil {
		return nil
	}
	pr := discovery.Probe{
		Kind:         discovery.ProbeKind(o.Str("type", true)),
		Port:         p.port(o, "port", true),
		Path:         o.Str("path", false),
		Service:      o.Str("service", false),
		InitialDelay: probeDuration(o, "initialDelay"),
		Interval:     probeDuration(o, "interval"),
		Timeout:      probeDuration(o, "timeout"),
	}
	pr.SuccessThreshold = threshold(o, "successThreshold")
	pr.FailureThreshold = threshold(o, "failureThreshold")
	switch pr.Kind {
	case discovery.ProbeHTTP, discovery.ProbeTCP, discovery.ProbeGRPC, "":
	default:
		o.Errorf("type", "%q is not HTTP, TCP or GRPC", pr.Kind)
	}
	if _, ok := o.Set("path"); ok && pr.Kind != discovery.ProbeHTTP {
		o.Errorf("path", "only an HTTP probe has a path")
	}
	if _, ok := o.Set("service"); ok && pr.Kind != discovery.ProbeGRPC {
		o.Errorf("service", "only a GRPC probe has a service")
	}
	pr = pr.WithDefaults()
	if pr.Timeout > pr.Interval {
		o.Errorf("timeout", "%s is longer than the interval %s", pr.Timeout, pr.Interval)
	}
	return &pr
}

// threshold reads a probe threshold: an integer 1-100, 0 when absent.
func threshold(o *yamlnode.Object, key string) int {
	n, ok := o.Set(key)
	if !ok {
		return 0
	}
	var i int
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil || i < 1 || i > 100 {
		o.Errorf(key, "want an integer 1-100, got %s", yamlnode.Describe(n))
		return 0
	}
	return i
}

// probeDuration reads a positive duration written as Go writes them
// ("5s", "250ms"), at most maxProbeDuration; 0 when absent or bad.
func probeDuration(o *yamlnode.Object, key string) time.Duration {
	n, ok := o.Set(key)
	if !ok {
		return 0
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		o.Errorf(key, "want a duration like 5s or 250ms, got %s", yamlnode.Describe(n))
		return 0
	}
	d, err := time.ParseDuration(n.Value)
	switch {
	case err != nil:
		o.Errorf(key, "%q is not a duration (like 5s, 250ms or 1m30s)", n.Value)
	case d <= 0:
		o.Errorf(key, "%s: want a positive duration", n.Value)
	case d > maxProbeDuration:
		o.Errorf(key, "%s is longer than %s", n.Value, maxProbeDuration)
	default:
		return d
	}
	return 0
}

func (p *parser) instance(n *yaml.Node, index int, group string, key discovery.ServiceKey) (discovery.WorkloadInstance, bool) {
	where := yamlnode.Index(yamlnode.Join(group, "instances"), index)
	if addr := yamlnode.Peek(n, "address"); addr != "" {
		where = yamlnode.Index(yamlnode.Join(group, "instances"), addr)
	}
	o := p.Object(n, where, instanceFields...)
	if o == nil {
		return discovery.WorkloadInstance{}, false
	}
	in := discovery.WorkloadInstance{Group: key, Ready: o.Bool("ready", true), Labels: p.labels(o, where)}
	addr := o.Str("address", true)
	if addr == "" {
		return in, false
	}
	ip, err := netip.ParseAddr(addr)
	if err != nil || ip.Zone() != "" {
		o.Errorf("address", "%q is not an IP address", addr)
		return in, false
	}
	in.Address = ip.String()
	return in, true
}

// checkGroups checks the groups against the file's clusters (all of them
// must be known when known is true: a ClusterSet file) and merges them in.
func (p *parser) checkGroups(groups []groupAt, clusters []discovery.Cluster, known bool) {
	byName := map[string]*discovery.Cluster{}
	for i := range clusters {
		byName[clusters[i].Name] = &clusters[i]
	}
	for _, ga := range groups {
		g := ga.group
		c, ok := byName[g.Cluster]
		if !ok {
			if known {
				p.Errorf(yamlnode.Child(ga.node, "cluster"), yamlnode.Join(ga.where, "cluster"), "%q is not a cluster of the file", g.Cluster)
			}
			continue
		}
		svc, has := c.Service(g.ServiceKey())
		if !has {
			for i := range c.Services {
				if c.Services[i].Key() == g.ServiceKey() {
					svc, has = &c.Services[i], true
				}
			}
		}
		switch {
		case has && svc.Exported != g.Exported:
			p.Errorf(ga.node, ga.where, "exported: %t, but service %s of cluster %s has exported: %t", g.Exported, svc.Key(), c.Name, svc.Exported)
		case !has && len(g.Ports) == 0:
			p.Errorf(ga.node, ga.where, "cluster %s has no service %s: the group needs ports: to define it", c.Name, g.ServiceKey())
		}
		if has {
			for _, in := range g.Instances {
				for _, e := range svc.Endpoints {
					if e.Address == in.Address {
						p.Errorf(ga.node, yamlnode.Index(yamlnode.Join(ga.where, "instances"), in.Address), "service %s of cluster %s already has an endpoint %s", svc.Key(), c.Name, in.Address)
					}
				}
			}
		}
	}
}

// groupsOf returns the parsed groups.
func groupsOf(groups []groupAt) []discovery.WorkloadGroup {
	out := make([]discovery.WorkloadGroup, 0, len(groups))
	for _, g := range groups {
		out = append(out, g.group)
	}
	return out
}

// ParseWorkloads parses a workloads file (serve --workloads): the format
// of a ClusterSet file, where clusters: is optional and holds the clusters
// of VM networks, and workload groups may name clusters the file does not
// have (Kubernetes members). The ClusterSet it returns holds the file's
// clusters and, in WorkloadGroups, its groups, not merged: the groups are
// checked against the members and merged when serve joins the two
// (discovery.ClusterSet.WithWorkloads).
func ParseWorkloads(name string, data []byte) (*discovery.ClusterSet, error) {
	p := newParser(name)
	p.workloadsFile = true
	clusters := p.document(data)
	p.checkGroups(p.groups, clusters, false)
	if err := p.Err(); err != nil {
		return nil, err
	}
	cs, err := discovery.New(clusters)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return cs.Declare(groupsOf(p.groups)), nil
}

// LoadWorkloads reads and parses a workloads file (ParseWorkloads).
func LoadWorkloads(path string) (*discovery.ClusterSet, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return ParseWorkloads(path, data)
}

// ParseWorkloadGroup parses one workload group written as YAML (with its
// name and namespace), as the WorkloadGroup custom resource's spec is
// read: the same fields and checks as the file's. Its errors read
// "object: spec.path: message", one per line.
func ParseWorkloadGroup(object string, data []byte) (discovery.WorkloadGroup, error) {
	p := newParser(object)
	root := p.Document(data, "WorkloadGroup", "a mapping")
	var g discovery.WorkloadGroup
	if root != nil {
		g, _, _ = p.workloadGroup(root, 0)
	}
	err := p.Err()
	if err == nil {
		if err = g.Check(); err != nil {
			return g, fmt.Errorf("%s: %w", object, err)
		}
		return g, nil
	}
	var lines []string
	for _, e := range unjoin(err) {
		var ye *Error
		if !errors.As(e, &ye) {
			lines = append(lines, e.Error())
			continue
		}
		path := ye.Path
		if i := strings.Index(path, "]"); strings.HasPrefix(path, "workloadGroups[") && i >= 0 {
			path = "spec" + path[i+1:]
		}
		lines = append(lines, object+": "+path+": "+ye.Msg)
	}
	return g, errors.New(strings.Join(lines, "\n"))
}

// unjoin returns the errors errors.Join joined, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
