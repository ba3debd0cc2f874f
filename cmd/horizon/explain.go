package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"

	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/policyfile"
	"github.com/horizonmesh/horizon/xds"
)

// explainConfig is what `horizon explain failover` is asked for.
type explainConfig struct {
	clusterSet, policy string
	workloads          string // --workloads, as serve reads it
	query              explainQuery
}

// run runs `horizon explain failover`: for a proxy at a locality,
// each priority level of a service's endpoints with its localities,
// endpoints or gateways and weights, and why each endpoint is where it is.
func (cfg explainConfig) run(stdout io.Writer) error {
	cs, pol, err := loadInputs(cfg.clusterSet, cfg.workloads, cfg.policy)
	if err != nil {
		return err
	}
	return explainFailover(stdout, cs, pol, cfg.query)
}

// explainQuery is what `horizon explain failover` and /debug/explain ask.
type explainQuery struct {
	service, from, cluster, role string
	labels                       map[string]string // the source proxy's, for label keys of failoverPriority
}

// explainFailover writes, for a proxy at q.from, each priority level of
// q.service in the view cs and policy give it, and why each endpoint is
// there.
func explainFailover(stdout io.Writer, cs *discovery.ClusterSet, policy xds.Policy, q explainQuery) error {
	service, from := q.service, q.from
	if service == "" || from == "" {
		return errors.New("explain failover: the service and the source locality are required")
	}
	p := &xds.Proxy{ID: "explain", Cluster: q.cluster, Role: xds.Role(q.role)}
	if p.Role == "" {
		p.Role = xds.Sidecar
	}
	host, port := service, uint32(0)
	if h, ps, err := net.SplitHostPort(service); err == nil {
		n, err := strconv.ParseUint(ps, 10, 16)
		if err != nil {
			return fmt.Errorf("--service %q: bad port", service)
		}
		host, port = h, uint32(n)
	}
	parts := strings.Split(from, "/")
	if len(parts) > 3 || parts[0] == "" {
		return fmt.Errorf("--from %q: want REGION[/ZONE[/SUBZONE]]", from)
	}
	p.Locality.Region = parts[0]
	if len(parts) > 1 {
		p.Locality.Zone = parts[1]
	}
	if len(parts) > 2 {
		p.Locality.SubZone = parts[2]
	}
	if p.Cluster == "" {
		for _, c := range cs.Clusters {
			if c.Locality.Region == p.Locality.Region {
				p.Cluster = c.Name
				break
			}
		}
		if p.Cluster == "" {
			return fmt.Errorf("--from %s: no cluster of the ClusterSet is in region %s; name one with --cluster", from, p.Locality.Region)
		}
	}
	if err := p.Resolve(cs); err != nil {
		return err
	}
	alias := ""
	if canonical, ok := cs.AliasHost(host, p.Cluster); ok {
		alias, host = host, canonical // the same cluster, settings and endpoints
	}
	// The settings the renderer uses for host: the policy file's, else the
	// built-in ones, whose [region, zone] ranking explain says in brief.
	settings := policy.HostSettings(host)
	rule := "the proxy's zone first, then its region, then the rest"
	if policy.File != nil {
		rule = "by policy " + policy.File.Name + ": " + settings.Locality.Describe(p.Locality)
	}
	p.Labels = q.labels
	res, err := xds.Translate(cs, p.GroupFor(policy.LabelKeys()), policy)
	if err != nil {
		return err
	}
	idx := indexEndpoints(cs)
	src, _ := cs.Cluster(p.Cluster)
	fmt.Fprintf(stdout, "from %s in cluster %s (network %s), to %s\n", localityString(p.Locality), p.Cluster, src.Network, service)
	if alias != "" {
		fmt.Fprintf(stdout, "alias: %s stands for %s\n", alias, host)
	}
	if len(cs.Networks()) > 1 {
		rule += "; other networks only through their gateway"
	}
	fmt.Fprintf(stdout, "priorities: %s\n", rule)
	fmt.Fprintf(stdout, "not ready: %s\n", notReadyText(settings.NotReady, p.Role))
	found := false
	for _, cla := range res.Endpoints {
		h, cport, err := discovery.ParseClusterName(cla.GetClusterName())
		if err != nil || h != host || (port != 0 && cport != port) {
			continue
		}
		found = true
		fmt.Fprintf(stdout, "\n%s:%d (%s)\n", h, cport, cla.GetClusterName())
		explainAssignment(stdout, cla, p, src, idx, settings.Locality, policy.File == nil)
	}
	if !found {
		return fmt.Errorf("%s: no such service in the view of cluster %s", service, p.Cluster)
	}
	explainSlices(stdout, cs, host, src)
	return nil
}

// explainSlices says what the MCS EndpointSlices Horizon writes in the
// proxy's cluster list for the service (what kube-proxy and CoreDNS see
// there), and what split horizon leaves out of them.
func explainSlices(w io.Writer, cs *discovery.ClusterSet, host string, src *discovery.Cluster) {
	name, rest, _ := strings.Cut(host, ".")
	ns, _, _ := strings.Cut(rest, ".")
	es, ok := cs.Export(discovery.ServiceKey{Namespace: ns, Name: name})
	if !ok {
		return
	}
	listed := 0
	var left []string
	for _, cname := range es.Clusters {
		c, ok := cs.Cluster(cname)
		if !ok {
			continue
		}
		svc, ok := c.Service(es.Key)
		if !ok {
			continue
		}
		if c.Network == src.Network {
			listed += len(svc.Endpoints)
		} else if n := len(svc.Endpoints); n > 0 {
			left = append(left, fmt.Sprintf("%d of cluster %s (network %s)", n, cname, c.Network))
		}
	}
	fmt.Fprintf(w, "\nMCS EndpointSlices in cluster %s (what kube-proxy and CoreDNS see there): %d endpoints of network %s", src.Name, listed, src.Network)
	if len(left) > 0 {
		fmt.Fprintf(w, "; left out by split horizon, reachable only through the east-west gateways: %s", strings.Join(left, ", "))
	}
	fmt.Fprintln(w)
}

// notReadyText says what not-ready endpoints become and what the proxy's
// kind of client does with that.
func notReadyText(n policyfile.NotReady, role xds.Role) string {
	if n == policyfile.NotReadyOmit {
		return "left out (notReadyEndpoints: omit): a priority's ready endpoints take all its load until none is ready"
	}
	if role == xds.Proxyless {
		return "kept as UNHEALTHY; gRPC ignores UNHEALTHY endpoints and fails over per priority: a priority keeps all its load while one endpoint of it is ready (Envoy sidecars spill over gradually instead)"
	}
	return "kept as UNHEALTHY: Envoy moves a priority's load to the next one gradually, as ready endpoints × overprovisioning factor fall below 100 % of it (gRPC clients instead fail over only when a priority has no ready endpoint)"
}

// origin is where an address of an assignment comes from.
type origin struct {
	cluster  *discovery.Cluster
	gateway  bool // a gateway of cluster's network
	locality discovery.Locality
	labels   map[string]string // a pod's
	workload string            // a VM's source (discovery.WorkloadSource), "" for a pod
}

// indexEndpoints maps every endpoint and gateway address (host:port) of a
// ClusterSet to where it comes from.
func indexEndpoints(cs *discovery.ClusterSet) map[string][]origin {
	idx := map[string][]origin{}
	for i := range cs.Clusters {
		c := &cs.Clusters[i]
		for _, g := range c.Gateways {
			idx[g.String()] = append(idx[g.String()], origin{cluster: c, gateway: true, locality: c.Locality})
		}
		for _, s := range c.Services {
			for _, e := range s.Endpoints {
				loc := c.Locality
				if e.Locality != (discovery.Locality{}) {
					loc = e.Locality
				}
				for _, sp := range s.Ports {
					key := net.JoinHostPort(e.Address, strconv.Itoa(int(e.TargetPort(sp))))
					if !slices.ContainsFunc(idx[key], func(o origin) bool { return o.cluster == c && !o.gateway }) {
						idx[key] = append(idx[key], origin{cluster: c, locality: loc, labels: e.Labels, workload: e.Workload})
					}
				}
			}
		}
	}
	return idx
}

func explainAssignment(w io.Writer, cla *endpoint.ClusterLoadAssignment, p *xds.Proxy, src *discovery.Cluster, idx map[string][]origin, loc policyfile.LocalityLB, brief bool) {
	if len(cla.GetEndpoints()) == 0 {
		fmt.Fprintln(w, "  no endpoints: nothing ready anywhere this proxy may reach")
		return
	}
	byPriority := map[uint32][]*endpoint.LocalityLbEndpoints{}
	var prios []uint32
	for _, lle := range cla.GetEndpoints() {
		if _, ok := byPriority[lle.GetPriority()]; !ok {
			prios = append(prios, lle.GetPriority())
		}
		byPriority[lle.GetPriority()] = append(byPriority[lle.GetPriority()], lle)
	}
	slices.Sort(prios)
	for _, prio := range prios {
		fmt.Fprintf(w, "  priority %d%s\n", prio, map[bool]string{true: " (used first)", false: " (used when the levels above cannot take the load)"}[prio == 0])
		for _, lle := range byPriority[prio] {
			l := lle.GetLocality()
			fmt.Fprintf(w, "    locality %s, weight %d\n", localityString(discovery.Locality{Region: l.GetRegion(), Zone: l.GetZone(), SubZone: l.GetSubZone()}), lle.GetLoadBalancingWeight().GetValue())
			for _, lb := range lle.GetLbEndpoints() {
				sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
				addr := net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))
				fmt.Fprintf(w, "      %-22s weight %-3d %-9s %s\n", addr, lb.GetLoadBalancingWeight().GetValue(), lb.GetHealthStatus(), why(idx[addr], p, src, loc, brief))
			}
		}
	}
}

// why says where an address comes from and how it ranks as seen from the
// proxy: the ranking's own explanation (policyfile.Rank), in brief (by region
// and zone) for the built-in ranking.
func why(origins []origin, p *xds.Proxy, src *discovery.Cluster, loc policyfile.LocalityLB, brief bool) string {
	if len(origins) == 0 {
		return "(not in the ClusterSet)"
	}
	o := origins[0]
	proxy := policyfile.Attributes{Locality: p.Locality, Cluster: src.Name, Network: src.Network, Labels: p.Labels}
	ep := policyfile.Attributes{Locality: o.locality, Cluster: o.cluster.Name, Network: o.cluster.Network, Labels: o.labels}
	rank := loc.Explain(proxy, ep)
	if brief {
		rank = loc.Rank(proxy, ep).Brief()
	}
	if o.gateway {
		var clusters []string
		for _, g := range origins {
			clusters = append(clusters, g.cluster.Name)
		}
		return fmt.Sprintf("gateway of network %s (clusters %s): its pods are not reachable from network %s, and its weight is theirs; %s",
			o.cluster.Network, strings.Join(clusters, ", "), src.Network, rank)
	}
	if o.workload != "" {
		return fmt.Sprintf("VM of %s, in cluster %s, same network: %s", o.workload, o.cluster.Name, rank)
	}
	return fmt.Sprintf("pod in cluster %s, same network: %s", o.cluster.Name, rank)
}

func localityString(l discovery.Locality) string {
	s := l.Region
	if l.Zone != "" {
		s += "/" + l.Zone
	}
	if l.SubZone != "" {
		s += "/" + l.SubZone
	}
	if s == "" {
		return "(none)"
	}
	return s
}
