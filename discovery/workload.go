// This file holds workloads outside Kubernetes: a WorkloadGroup declares
// what its instances (VMs, bare-metal hosts) are — service, service
// account, ports, labels, locality, health probe — and WithWorkloads turns
// its instances into ordinary endpoints of the group's service in the
// group's cluster, so that every rule of split horizon, failover and export
// applies to them as to pods.
//
// A group belongs to one cluster of the ClusterSet: a Kubernetes member, or
// a cluster with no Kubernetes behind it that stands for a VM network (its
// network and gateways, and no services of its own). The instances are on
// that cluster's network: proxies there reach them directly, proxies on
// other networks through that network's gateway.

package discovery

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"
)

// ProbeKind is how an agent checks its workload's health.
type ProbeKind string

// Probe kinds.
const (
	ProbeHTTP ProbeKind = "HTTP" // GET, healthy on a 2xx or 3xx status
	ProbeTCP  ProbeKind = "TCP"  // healthy when a connection opens
	ProbeGRPC ProbeKind = "GRPC" // grpc.health.v1 Check, healthy when SERVING
)

// Probe is a workload group's health check, run by the agent of every
// instance against its own workload on the VM's loopback.
type Probe struct {
	Kind ProbeKind
	Port uint32
	// Path is the HTTP probe's request path ("/" when empty).
	Path string
	// Service is the gRPC probe's service name ("" is the server's health).
	Service string
	// InitialDelay passes before the first probe; the instance is not
	// ready until a probe succeeds.
	InitialDelay time.Duration
	Interval     time.Duration // between probes
	Timeout      time.Duration // of one probe; a probe that hangs fails
	// SuccessThreshold consecutive successes make a failing instance
	// ready; FailureThreshold consecutive failures make a ready one not.
	SuccessThreshold int
	FailureThreshold int
}

// Probe defaults, Kubernetes' own.
const (
	DefaultProbeInterval         = 10 * time.Second
	DefaultProbeTimeout          = time.Second
	DefaultProbeSuccessThreshold = 1
	DefaultProbeFailureThreshold = 3
	// DefaultGracePeriod is how long an instance stays registered after
	// its agent's last report.
	DefaultGracePeriod = 30 * time.Second
)

// WithDefaults returns the probe with zero fields set to their defaults.
func (p Probe) WithDefaults() Probe {
	if p.Interval == 0 {
		p.Interval = DefaultProbeInterval
	}
	if p.Timeout == 0 {
		p.Timeout = DefaultProbeTimeout
	}
	if p.SuccessThreshold == 0 {
		p.SuccessThreshold = DefaultProbeSuccessThreshold
	}
	if p.FailureThreshold == 0 {
		p.FailureThreshold = DefaultProbeFailureThreshold
	}
	if p.Kind == ProbeHTTP && p.Path == "" {
		p.Path = "/"
	}
	return p
}

// WorkloadGroup declares a set of workloads outside Kubernetes that serve
// one service: Istio's WorkloadGroup, Horizon's way.
type WorkloadGroup struct {
	Namespace string // the namespace of the group, its service and its service account
	Name      string
	// Service is the name of the service its instances are endpoints of,
	// in Namespace.
	Service        string
	ServiceAccount string // the instances' identity: spiffe://<td>/ns/<ns>/sa/<sa>
	// Cluster is the cluster of the ClusterSet the instances join: their
	// network is its network; their locality, unless Locality is set, is
	// its locality.
	Cluster  string
	Locality Locality
	// Ports are the service's ports, used when Cluster has no such service
	// (a VM network); a service the cluster has keeps its own.
	Ports  []Port
	Labels map[string]string // every instance's labels (an instance may add more)
	// Exported is whether the service is exported from Cluster. When the
	// cluster has the service already, the two must agree.
	Exported bool
	// Probe is the health check the agents run; nil: an instance is ready
	// while its agent reports.
	Probe *Probe
	// Addresses are the prefixes an agent may register an address in
	// without connecting from it (VMs behind NAT or a proxy). Otherwise an
	// agent registers only the address it connects from: the address is a
	// claim, checked against the connection (workloadsvc).
	Addresses []netip.Prefix
	// GracePeriod is how long an instance whose agent stopped reporting
	// stays registered (not ready) before it is removed.
	GracePeriod time.Duration
	// TokenReviewCluster is the Kubernetes member cluster whose TokenReview
	// admits a ServiceAccount token as a join credential of this group: the
	// token's account must be the group's Namespace/ServiceAccount. Empty:
	// only Horizon's join tokens (and the group's own SVID) join. Cluster is
	// often a VM network without Kubernetes, hence a field of its own.
	TokenReviewCluster string
	// Instances are instances declared with the group (static, like Istio's
	// WorkloadEntry); agents register the others.
	Instances []WorkloadInstance
}

// Key returns the group's namespace/name.
func (g *WorkloadGroup) Key() ServiceKey { return ServiceKey{Namespace: g.Namespace, Name: g.Name} }

// ServiceKey returns the key of the group's service.
func (g *WorkloadGroup) ServiceKey() ServiceKey {
	return ServiceKey{Namespace: g.Namespace, Name: g.Service}
}

// WorkloadInstance is one workload of a group: a VM's address.
type WorkloadInstance struct {
	Group   ServiceKey // the group's key
	Address string     // IP address
	Labels  map[string]string
	Ready   bool
}

// Check reports what is wrong with the group by itself (not against a
// ClusterSet).
func (g *WorkloadGroup) Check() error {
	var errs []error
	if !IsDNSLabel(g.Namespace) || !IsDNSLabel(g.Name) {
		errs = append(errs, errors.New("namespace and name must be DNS labels"))
	}
	if !IsDNSLabel(g.Service) {
		errs = append(errs, fmt.Errorf("service %q is not a DNS label", g.Service))
	}
	if !IsDNSName(g.ServiceAccount) {
		errs = append(errs, fmt.Errorf("serviceAccount %q is not a lower-case DNS name", g.ServiceAccount))
	}
	if g.Cluster == "" {
		errs = append(errs, errors.New("no cluster"))
	}
	if g.TokenReviewCluster != "" && !IsDNSLabel(g.TokenReviewCluster) {
		errs = append(errs, fmt.Errorf("tokenReviewCluster %q is not a DNS label", g.TokenReviewCluster))
	}
	if g.Probe != nil {
		p := g.Probe
		switch p.Kind {
		case ProbeHTTP, ProbeTCP, ProbeGRPC:
		default:
			errs = append(errs, fmt.Errorf("probe: unknown kind %q", p.Kind))
		}
		if p.Port == 0 || p.Port > 65535 {
			errs = append(errs, fmt.Errorf("probe: port %d out of range 1-65535", p.Port))
		}
		if p.Timeout > 0 && p.Interval > 0 && p.Timeout > p.Interval {
			errs = append(errs, fmt.Errorf("probe: timeout %s is longer than the interval %s", p.Timeout, p.Interval))
		}
	}
	seen := map[string]bool{}
	for _, in := range g.Instances {
		if _, err := netip.ParseAddr(in.Address); err != nil {
			errs = append(errs, fmt.Errorf("instance %q: not an IP address", in.Address))
		}
		if seen[in.Address] {
			errs = append(errs, fmt.Errorf("instance %s: listed twice", in.Address))
		}
		seen[in.Address] = true
	}
	return errors.Join(errs...)
}

// WorkloadSource is what Endpoint.Workload says of an endpoint that is a
// workload group's instance: "group ns/name" and whether an agent
// registered it ("registered") or the group declares it ("declared").
func WorkloadSource(group ServiceKey, registered bool) string {
	if registered {
		return "workload group " + group.String() + " (registered by its agent)"
	}
	return "workload group " + group.String() + " (declared)"
}

// WithWorkloads returns a ClusterSet that is cs with the workload groups
// of cs and extra and the given registered instances merged in, starting
// over from cs without the endpoints an earlier merge added: each
// group's declared and registered instances become endpoints of the
// group's service in the group's cluster (the service is created there,
// with the group's ports, when the cluster lacks it; a group without
// instances still makes its service known). extraClusters (clusters of a
// separate workloads file: VM networks) are added to cs's clusters.
//
// A group that cannot be merged (unknown cluster, an address another
// endpoint of the service has, an export flag the cluster's service
// contradicts) is left out with an error; the rest is merged. The error is
// nil when everything was merged. The result carries every group in
// WorkloadGroups, and its version covers them.
func (cs *ClusterSet) WithWorkloads(extraClusters []Cluster, extra []WorkloadGroup, registered []WorkloadInstance) (*ClusterSet, error) {
	var errs []error
	clusters := make([]Cluster, 0, len(cs.Clusters)+len(extraClusters))
	for i := range cs.Clusters {
		clusters = append(clusters, withoutWorkloads(cs.Clusters[i].Clone()))
	}
	for _, c := range extraClusters {
		if _, dup := cs.Cluster(c.Name); dup {
			errs = append(errs, fmt.Errorf("workloads file: cluster %q: already a cluster of the ClusterSet; left out", c.Name))
			continue
		}
		clusters = append(clusters, withoutWorkloads(c.Clone()))
	}
	groups := slices.Concat(cs.WorkloadGroups, extra)
	slices.SortStableFunc(groups, func(a, b WorkloadGroup) int { return a.Key().Compare(b.Key()) })
	byCluster := map[string]int{}
	for i := range clusters {
		byCluster[clusters[i].Name] = i
	}
	live := map[ServiceKey][]WorkloadInstance{}
	for _, in := range registered {
		live[in.Group] = append(live[in.Group], in)
	}
	var kept []WorkloadGroup
	for gi := range groups {
		g := &groups[gi]
		if gi > 0 && groups[gi-1].Key() == g.Key() {
			errs = append(errs, fmt.Errorf("workload group %s: defined twice; the first is used", g.Key()))
			continue
		}
		skipped, err := mergeGroup(clusters, byCluster, g, live[g.Key()])
		for _, e := range skipped {
			errs = append(errs, fmt.Errorf("workload group %s: %w", g.Key(), e))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("workload group %s: %w", g.Key(), err))
			continue
		}
		kept = append(kept, *g)
	}
	out, err := New(clusters)
	if err != nil {
		return nil, errors.Join(append(errs, err)...)
	}
	out.WorkloadGroups = kept
	out.version = workloadVersion(out.version, kept)
	if len(cs.External) > 0 { // external services are not in the clusters: carried over
		out.External = cs.External
		out.version = externalVersion(out.version, out.External)
	}
	return out, errors.Join(errs...)
}

// withoutWorkloads drops the endpoints a merge added from c (a clone):
// merging again starts from what the sources said.
func withoutWorkloads(c Cluster) Cluster {
	for i := range c.Services {
		s := &c.Services[i]
		s.Endpoints = slices.DeleteFunc(s.Endpoints, func(e Endpoint) bool { return e.Workload != "" })
	}
	return c
}

// Declare returns cs with groups declared in WorkloadGroups, not merged
// (their instances are not endpoints yet): what a workloads file holds
// until WithWorkloads joins it with the members.
func (cs *ClusterSet) Declare(groups []WorkloadGroup) *ClusterSet {
	out := *cs
	out.WorkloadGroups = slices.Clone(groups)
	slices.SortStableFunc(out.WorkloadGroups, func(a, b WorkloadGroup) int { return a.Key().Compare(b.Key()) })
	out.version = workloadVersion(cs.version, out.WorkloadGroups)
	return &out
}

// mergeGroup adds a group's instances to its service in its cluster. A
// registered instance whose address the service has already is left out
// (skipped); anything else wrong leaves the whole group out (err), and
// then nothing was added.
func mergeGroup(clusters []Cluster, byCluster map[string]int, g *WorkloadGroup, registered []WorkloadInstance) (skipped []error, err error) {
	if err := g.Check(); err != nil {
		return nil, err
	}
	ci, ok := byCluster[g.Cluster]
	if !ok {
		return nil, fmt.Errorf("cluster %q is not in the ClusterSet", g.Cluster)
	}
	c := &clusters[ci]
	si := slices.IndexFunc(c.Services, func(s Service) bool { return s.Key() == g.ServiceKey() })
	if si >= 0 && c.Services[si].Exported != g.Exported {
		s := &c.Services[si]
		return nil, fmt.Errorf("exported is %t but service %s of cluster %s has exported %t", g.Exported, s.Key(), c.Name, s.Exported)
	}
	taken := map[string]bool{}
	if si >= 0 {
		for _, e := range c.Services[si].Endpoints {
			taken[e.Address] = true
		}
	}
	loc := c.Locality
	if g.Locality != (Locality{}) {
		loc = g.Locality
	}
	var add []Endpoint
	for i, in := range slices.Concat(g.Instances, registered) {
		declared := i < len(g.Instances)
		if taken[in.Address] {
			err := fmt.Errorf("instance %s: service %s of cluster %s already has an endpoint with that address", in.Address, g.ServiceKey(), c.Name)
			if declared {
				return nil, err
			}
			skipped = append(skipped, err)
			continue
		}
		taken[in.Address] = true
		labels := maps.Clone(g.Labels)
		if len(in.Labels) > 0 && labels == nil {
			labels = map[string]string{}
		}
		maps.Copy(labels, in.Labels)
		add = append(add, Endpoint{
			Address: in.Address, Locality: loc, Ready: in.Ready, Serving: in.Ready,
			ServiceAccount: g.ServiceAccount, MTLS: true, Labels: labels,
			Workload: WorkloadSource(g.Key(), !declared),
		})
	}
	if si < 0 {
		c.Services = append(c.Services, Service{Namespace: g.Namespace, Name: g.Service, Type: ClusterSetIP, Exported: g.Exported, Ports: slices.Clone(g.Ports)})
		si = len(c.Services) - 1
	}
	c.Services[si].Endpoints = append(c.Services[si].Endpoints, add...)
	return skipped, nil
}

// workloadVersion folds the groups into a ClusterSet's version: a group's
// declaration (its probe, say) changes what agents are told even when no
// endpoint changes.
func workloadVersion(version string, groups []WorkloadGroup) string {
	if len(groups) == 0 {
		return version
	}
	h := sha256.New()
	h.Write([]byte(version))
	for _, g := range groups {
		fmt.Fprintf(h, "\x00%s|%s|%s|%s|%s|%v|%t|%v|%d", g.Key(), g.Service, g.ServiceAccount, g.Cluster, g.Locality, g.Ports, g.Exported, g.GracePeriod, len(g.Instances))
		if len(g.Addresses) > 0 {
			fmt.Fprintf(h, "|addresses=%v", g.Addresses)
		}
		if g.TokenReviewCluster != "" {
			fmt.Fprintf(h, "|tokenReviewCluster=%s", g.TokenReviewCluster)
		}
		if g.Probe != nil {
			fmt.Fprintf(h, "|%+v", *g.Probe)
		}
		for _, k := range slices.Sorted(maps.Keys(g.Labels)) {
			fmt.Fprintf(h, "|%s=%s", k, g.Labels[k])
		}
	}
	sum := hex.EncodeToString(h.Sum(nil))
	return sum[:min(len(sum), max(len(version), 16))]
}

// WorkloadGroup returns the named workload group of the ClusterSet.
func (cs *ClusterSet) WorkloadGroup(k ServiceKey) (*WorkloadGroup, bool) {
	i, ok := slices.BinarySearchFunc(cs.WorkloadGroups, k, func(g WorkloadGroup, k ServiceKey) int { return g.Key().Compare(k) })
	if !ok {
		return nil, false
	}
	return &cs.WorkloadGroups[i], true
}
