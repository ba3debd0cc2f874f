// Package xds is the pure middle of the pipeline: it turns a ClusterSet
// snapshot into the xDS resources of one proxy view (Translate), checks them
// (Check), and renders a view again reusing what an earlier render of it made
// (RenderFrom with a Memo). It has no server, clock, logger or I/O:
//
//	discovery.ClusterSet ──► Translate(cs, Group, Policy) ──► Check ──► Resources
//	                                                              (xds/server serves them)
//
// A proxy's node metadata becomes its Group here (ParseNode, ResolveNode);
// xds/server caches and serves the views over ADS, xds/bootstrap writes the
// bootstraps that agree with the names used here.
package xds

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/policyfile"
	"github.com/horizonmesh/horizon/gateway"
)

// Resources is one view's xDS configuration, each list sorted by name.
type Resources struct {
	Clusters  []*cluster.Cluster
	Endpoints []*endpoint.ClusterLoadAssignment
	Listeners []*listener.Listener
	Routes    []*route.RouteConfiguration
	// Notes explain what the view leaves out and why (a network without a
	// gateway, an endpoint that cannot cross networks), for debug pages.
	Notes []string

	// fixedWeights names the assignments whose locality weights the policy
	// fixes (distribute) rather than their endpoints' weights; Check allows them.
	fixedWeights map[string]bool
}

// TypeURLs lists the resource types Horizon serves, in push order.
var TypeURLs = []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType}

// ByType returns the resources of one type URL.
func (r *Resources) ByType(typeURL string) []types.Resource {
	var out []types.Resource
	switch typeURL {
	case resourcev3.ClusterType:
		for _, x := range r.Clusters {
			out = append(out, x)
		}
	case resourcev3.EndpointType:
		for _, x := range r.Endpoints {
			out = append(out, x)
		}
	case resourcev3.ListenerType:
		for _, x := range r.Listeners {
			out = append(out, x)
		}
	case resourcev3.RouteType:
		for _, x := range r.Routes {
			out = append(out, x)
		}
	}
	return out
}

// Translate renders the resources of one view. It is pure: the same
// ClusterSet, group and policy always give byte-equal resources.
func Translate(cs *discovery.ClusterSet, g Group, p Policy) (*Resources, error) {
	res, _, err := translate(cs, g, p, nil)
	return res, err
}

// Render is what the server publishes for a view: Translate, then Check.
// An error means the view is not served (a running server keeps the view's
// last good resources). `horizon view` prints what it returns.
func Render(cs *discovery.ClusterSet, g Group, p Policy) (*Resources, error) {
	res, _, err := RenderFrom(cs, g, p, nil)
	return res, err
}

// RenderFrom is Render reusing what the view's previous render made of every
// host and port whose inputs are unchanged: prev is the Memo that render
// returned (nil for none, or one of another group or policy, which is
// ignored). It returns the checked resources, byte-equal to Render's, and
// the Memo for the view's next render. The server renders this way.
func RenderFrom(cs *discovery.ClusterSet, g Group, p Policy, prev *Memo) (*Resources, *Memo, error) {
	res, memo, err := translate(cs, g, p, prev)
	if err != nil {
		return nil, nil, err
	}
	if err := check(res, cs, g, memo.reused); err != nil {
		return nil, nil, err
	}
	return res, memo, nil
}

// translate is Translate reusing what prev, the memo of the view's last
// published render, made of every host and port whose inputs are unchanged
// (memo.go); it returns this render's memo too. The resources are
// byte-equal to Translate's.
func translate(cs *discovery.ClusterSet, g Group, p Policy, prev *Memo) (*Resources, *Memo, error) {
	if _, ok := cs.Cluster(g.Cluster); !ok && (g.Role != Gateway || g.Cluster != "") {
		// A gateway's view may be its network's alone (ViewKeys).
		return nil, nil, fmt.Errorf("view %s: cluster %q is not in the ClusterSet", g, g.Cluster)
	}
	if _, err := ParseSVIDProvider(string(p.SVIDProvider)); err != nil {
		return nil, nil, fmt.Errorf("view %s: policy: %w", g, err)
	}
	t := &translator{cs: cs, group: g, policy: p, out: &Resources{}}
	t.memo = &Memo{policy: p, group: g, hosts: map[string]*hostResult{}, ports: map[uint32]*portResult{}, reused: map[types.Resource]bool{}}
	t.prev = prev.usableFor(g, p)
	switch g.Role {
	case Sidecar:
		t.sidecar()
	case Proxyless:
		t.proxyless()
	case Gateway:
		if err := t.gateway(); err != nil {
			return nil, nil, fmt.Errorf("view %s: %w", g, err)
		}
	default:
		return nil, nil, fmt.Errorf("view %s: unknown role %q", g, g.Role)
	}
	t.sort()
	return t.out, t.memo, nil
}

// gateway renders an east-west gateway's view: the gateway package's
// configuration for the view's network (a gateway in any of the network's
// clusters routes to the endpoints of all of them). A gateway subscribes to
// every listener and cluster and then to the assignment of each cluster by
// name; the view holds exactly one assignment per EDS cluster, so every
// request is answered.
func (t *translator) gateway() error {
	r, err := gateway.Translate(t.cs, t.group.Network, gateway.Options{ConnectTimeout: t.policy.defaultConnectTimeout(), Subsets: t.policy.File.GatewaySubsets()})
	if err != nil {
		return err
	}
	t.out.Listeners = append(t.out.Listeners, r.Listeners...)
	t.out.Clusters = append(t.out.Clusters, r.Clusters...)
	t.out.Endpoints = append(t.out.Endpoints, r.Endpoints...)
	for _, n := range r.Notes {
		t.notef("%s", n)
	}
	return nil
}

type translator struct {
	cs     *discovery.ClusterSet
	group  Group
	policy Policy
	out    *Resources
	noted  map[string]bool
	// prev is the previous render's memo, when it is of the same group and
	// policy; memo is this render's. capture collects the notes made while
	// a host is rendered, for the memo.
	prev, memo *Memo
	capture    *[]string
	// parts are the sub-messages the view's resources share (parts.go).
	parts parts
	// proxy is the view's attributes (proxyAttributes); eps is
	// loadAssignment's scratch list, reused from host to host.
	proxy  *policyfile.Attributes
	eps    []lbEndpoint
	shares []lbEndpoint
	// ids and accounts are spiffeIDs' scratch lists.
	ids, accounts []string
	// builtin is the settings of every host when the policy has no file.
	builtin *policyfile.Settings
	// digestBuf is the scratch buffer the memo's digests are hashed from.
	digestBuf []byte
	// byName indexes the view's hosts and ports by cluster name, and
	// subsets holds the subsets route rules send to (routes.go).
	byName, subsets map[string]*hostPort
}

func (t *translator) notef(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if t.capture != nil {
		*t.capture = append(*t.capture, msg)
	}
	if t.noted == nil {
		t.noted = map[string]bool{}
	}
	if !t.noted[msg] {
		t.noted[msg] = true
		t.out.Notes = append(t.out.Notes, msg)
	}
}

// hostPort is one (host, port) a view routes to, with what backs it.
type hostPort struct {
	host      string
	cluster   string // the Envoy cluster name, discovery.ClusterName(host, port)
	key       discovery.ServiceKey
	scope     discovery.Scope
	port      discovery.Port
	clusterIP string
	// aliases are the host's extra names (discovery/aliases.go), sorted.
	aliases  []string
	backends []backend
	// set caches the host's settings (translator.settings) once looked up.
	set *policyfile.Settings
}

// settings returns the traffic settings of a host's service as reached by
// it, t.policy.settings, looked up once per host; without a policy file
// they are the same for every host, and made once per render.
func (t *translator) settings(h *hostPort) *policyfile.Settings {
	if h.set != nil {
		return h.set
	}
	if t.policy.File == nil {
		if t.builtin == nil {
			s := t.policy.settings(h.key, h.scope)
			t.builtin = &s
		}
		h.set = t.builtin
		return h.set
	}
	s := t.policy.settings(h.key, h.scope)
	h.set = &s
	return h.set
}

// name is the Envoy cluster name (and SNI) of the host and port.
func (h *hostPort) name() string { return h.cluster }

// services lists every (host, port) the view can reach: the view cluster's own
// services under cluster.local, and every exported service under
// clusterset.local, backed by every exporting cluster. Sorted by name.
func (t *translator) services() []*hostPort {
	own, _ := t.cs.Cluster(t.group.Cluster)
	n := 0
	for i := range own.Services {
		n += len(own.Services[i].Ports)
	}
	for i := range t.cs.Exports {
		n += len(t.cs.Exports[i].Ports)
	}
	all := make([]hostPort, 0, n)
	// One backing array for the own services' single backends.
	ownBackends := make([]backend, len(own.Services))
	for i := range own.Services {
		s := &own.Services[i]
		ownBackends[i] = backend{cluster: own, svc: s}
		var host string
		for _, p := range s.Ports {
			if !t.proxied(s.Key(), p) {
				continue
			}
			h := hostPort{key: s.Key(), scope: discovery.ClusterLocal, port: p, clusterIP: s.ClusterIP, backends: ownBackends[i : i+1 : i+1]}
			if len(s.Aliases) > 0 {
				h.aliases = t.localAliases(s)
			}
			h.host, h.cluster = hostNames(host, s.Key(), discovery.ClusterLocal, p.Port)
			host = h.host
			all = append(all, h)
		}
	}
	// Exports are sorted by key, and so are each cluster's services: each
	// exporting cluster's definition is found by walking its services
	// forward from where the previous export's was.
	cursors := make(map[*discovery.Cluster]int, len(t.cs.Clusters))
	for i := range t.cs.Exports {
		ex := &t.cs.Exports[i]
		backends := make([]backend, 0, len(ex.Clusters))
		for _, name := range ex.Clusters {
			c, _ := t.cs.Cluster(name)
			backends = append(backends, backend{cluster: c, svc: nextService(c, cursors, ex.Key)})
		}
		vip := ""
		if len(ex.IPs) > 0 {
			vip = ex.IPs[0] // the ClusterSet IP clients resolve the name to
		}
		var host string
		for _, p := range ex.Ports {
			if !t.proxied(ex.Key, p) {
				continue
			}
			h := hostPort{key: ex.Key, scope: discovery.ClusterSetWide, port: p, clusterIP: vip, aliases: ex.Aliases, backends: backends}
			h.host, h.cluster = hostNames(host, ex.Key, discovery.ClusterSetWide, p.Port)
			host = h.host
			all = append(all, h)
		}
		for _, c := range ex.Conflicts {
			t.notef("export %s: %s", ex.Key, c.Message)
		}
	}
	out := make([]*hostPort, len(all))
	for i := range all {
		out[i] = &all[i]
	}
	slices.SortFunc(out, func(a, b *hostPort) int { return strings.Compare(a.cluster, b.cluster) })
	return out
}

// nextService returns a cluster's definition of service k, as c.Service(k),
// for keys asked for in increasing order: it looks from cursors[c], where
// the previous key's search stopped, and leaves the cursor there.
func nextService(c *discovery.Cluster, cursors map[*discovery.Cluster]int, k discovery.ServiceKey) *discovery.Service {
	i := cursors[c]
	for i < len(c.Services) && c.Services[i].Key().Compare(k) < 0 {
		i++
	}
	cursors[c] = i
	if i < len(c.Services) && c.Services[i].Key() == k {
		return &c.Services[i]
	}
	s, _ := c.Service(k) // keys out of order: as c.Service
	return s
}

// hostNames returns a service's host name in a scope and the Envoy cluster
// name of one of its ports; host is the host name when the caller has it
// already (from another port), else "".
func hostNames(host string, k discovery.ServiceKey, scope discovery.Scope, port uint32) (string, string) {
	if host == "" {
		host = discovery.Host(k, scope)
	}
	return host, discovery.ClusterName(host, port)
}

// proxied reports whether proxies carry a port's traffic: TCP only (Envoy
// sidecars and gRPC do not proxy UDP or SCTP).
func (t *translator) proxied(k discovery.ServiceKey, p discovery.Port) bool {
	if p.Protocol == "" || p.Protocol == "TCP" {
		return true
	}
	t.notef("%s port %d/%s: not proxied", k, p.Port, p.Protocol)
	return false
}

func (t *translator) sort() {
	slices.SortFunc(t.out.Clusters, func(a, b *cluster.Cluster) int { return cmp.Compare(a.GetName(), b.GetName()) })
	slices.SortFunc(t.out.Endpoints, func(a, b *endpoint.ClusterLoadAssignment) int {
		return cmp.Compare(a.GetClusterName(), b.GetClusterName())
	})
	slices.SortFunc(t.out.Listeners, func(a, b *listener.Listener) int { return cmp.Compare(a.GetName(), b.GetName()) })
	slices.SortFunc(t.out.Routes, func(a, b *route.RouteConfiguration) int { return cmp.Compare(a.GetName(), b.GetName()) })
	slices.Sort(t.out.Notes)
}

// spiffeIDs returns the sorted SPIFFE IDs of the service accounts that back a
// host and port: what a client checks the server's certificate against. The
// list is scratch space, valid until the next call.
func (t *translator) spiffeIDs(h *hostPort) []string {
	ids := t.ids[:0]
	seen := smallSet{list: t.accounts[:0]} // service accounts
	defer func() { t.ids, t.accounts = ids[:0], seen.list[:0] }()
	for _, b := range h.backends {
		for i := range b.svc.Endpoints {
			if !b.svc.Endpoints[i].MTLS {
				continue // presents no certificate
			}
			sa := b.svc.Endpoints[i].ServiceAccount
			if sa == "" {
				sa = "default"
			}
			if !seen.add(sa) {
				continue
			}
			id := t.workloadID(b.svc.Namespace, sa)
			if id.err != nil {
				t.notef("%s: service account %q of %s is not a valid SPIFFE path segment", h.name(), sa, b.svc.Key())
				continue
			}
			ids = append(ids, id.id)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// workloadID returns the SPIFFE ID of a service account, made once per
// render.
func (t *translator) workloadID(namespace, sa string) workloadID {
	k := workload{namespace, sa}
	if w, ok := t.parts.workloads[k]; ok {
		return w
	}
	if t.parts.workloads == nil {
		t.parts.workloads = map[workload]workloadID{}
	}
	id, err := discovery.WorkloadID(t.policy.TrustDomainOrDefault(), namespace, sa)
	w := workloadID{err: err}
	if err == nil {
		w.id = id.String()
	}
	t.parts.workloads[k] = w
	return w
}

// smallSet is a set of strings for the few distinct values a service's
// endpoints usually carry: a list while it is short, a map beyond.
type smallSet struct {
	list []string
	m    map[string]bool
}

// add adds s and reports whether it was new.
func (set *smallSet) add(s string) bool {
	if set.m != nil {
		if set.m[s] {
			return false
		}
		set.m[s] = true
		return true
	}
	if slices.Contains(set.list, s) {
		return false
	}
	set.list = append(set.list, s)
	if len(set.list) > 16 {
		set.m = make(map[string]bool, 2*len(set.list))
		for _, x := range set.list {
			set.m[x] = true
		}
		set.list = nil
	}
	return true
}
