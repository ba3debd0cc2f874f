package xds

import (
	"crypto/sha256"
	"encoding/binary"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/horizonmesh/horizon/discovery"
)

// Incremental rendering. A change usually touches one service, yet every
// view is rendered again. What a view renders for one host and port (its
// cluster, assignment, and listener or route) depends only on the view's
// group and policy and on that host and port's own inputs: its name, port,
// virtual IP, and each backing cluster's share of the service, whose
// content hash discovery records (ClusterSet.ServiceDigest). So a render
// remembers, per host and port, the digest of those inputs and what it
// made of them; the next render of the same view, under the same policy,
// takes the same messages back for every host whose digest is unchanged.
// Those messages are immutable once published, so the cache reuses their
// marshalled entries too (newTypeState) and Check does not validate them
// again. Everything else (routes per port, listeners per port, the fixed
// clusters and listeners) is small and rendered every time.

// A Memo is what one render of a view made of each host and port, for the
// next render of the same view: RenderFrom takes it explicitly, and the
// server keeps it beside the view's published resources (the resources
// themselves carry no memo). It is opaque and read-only once returned.
type Memo struct {
	policy Policy
	group  Group
	hosts  map[string]*hostResult // by Envoy cluster name
	ports  map[uint32]*portResult // a sidecar's HTTP ports
	// reused holds the messages this render took from the previous one,
	// which Check validated then.
	reused map[types.Resource]bool
}

// usableFor returns m if it was rendered for group g under policy p (only then may
// its messages be reused), else nil.
func (m *Memo) usableFor(g Group, p Policy) *Memo {
	if m == nil || m.group != g || m.policy != p {
		return nil
	}
	return m
}

// portResult is what a sidecar view renders for one HTTP port: its
// listener and its route configuration, which depend on the names, scopes
// and virtual IPs of the hosts on the port, not on their endpoints.
type portResult struct {
	digest   discovery.Digest
	listener *listener.Listener
	route    *route.RouteConfiguration
	notes    []string // what rendering them noted (route rules' destinations)
}

// hostResult is what a view renders for one host and port.
type hostResult struct {
	digest   discovery.Digest
	cluster  *cluster.Cluster
	cla      *endpoint.ClusterLoadAssignment
	listener *listener.Listener        // a sidecar's TCP listener, a proxyless API listener
	route    *route.RouteConfiguration // proxyless
	notes    []string                  // what rendering it noted
	fixed    bool                      // the assignment's weights are the policy's (Resources.fixedWeights)

	// aliasListeners are a proxyless view's API listeners of the host's
	// aliases (aliases.go).
	aliasListeners []*listener.Listener
}

// hostDigest hashes the inputs of a host and port; ok is false when a
// backend has no recorded digest (then nothing is reused or remembered).
func (t *translator) hostDigest(h *hostPort) (d discovery.Digest, ok bool) {
	b := t.digestBuf[:0]
	defer func() { t.digestBuf = b[:0] }()
	str := func(s string) { b = binary.AppendUvarint(b, uint64(len(s))); b = append(b, s...) }
	num := func(n uint64) { b = binary.AppendUvarint(b, n) }
	str(h.host)
	str(h.key.Namespace)
	str(h.key.Name)
	num(uint64(h.scope))
	str(h.port.Name)
	num(uint64(h.port.Port))
	num(uint64(h.port.TargetPort))
	str(h.port.Protocol)
	str(h.port.AppProtocol)
	str(h.clusterIP)
	num(uint64(len(h.aliases)))
	for _, a := range h.aliases {
		str(a)
	}
	// A proxyless host's route reads its rules' destinations.
	b = t.appendRouteInputs(b, h)
	num(uint64(len(h.backends)))
	for _, be := range h.backends {
		sd, ok := t.cs.ServiceDigest(be.cluster.Name, h.key)
		if !ok {
			return d, false
		}
		str(be.cluster.Name)
		b = append(b, sd[:]...)
	}
	sum := sha256.Sum256(b)
	return discovery.Digest(sum[:16]), true
}

// expectHosts sizes the memo for a view of n hosts and ports.
func (t *translator) expectHosts(n int) {
	t.memo.hosts = make(map[string]*hostResult, n)
	if t.prev != nil {
		t.memo.reused = make(map[types.Resource]bool, 4*n)
	}
}

// host returns what the view renders for h: the previous render's result
// when its inputs are unchanged, or what build makes now (remembered for
// the next render).
func (t *translator) host(h *hostPort, build func(*hostResult)) *hostResult {
	name := h.name()
	d, ok := t.hostDigest(h)
	if ok && t.prev != nil {
		if r := t.prev.hosts[name]; r != nil && r.digest == d {
			for _, n := range r.notes {
				t.notef("%s", n)
			}
			t.memo.hosts[name] = r
			if r.fixed {
				if t.out.fixedWeights == nil {
					t.out.fixedWeights = map[string]bool{}
				}
				t.out.fixedWeights[name] = true
			}
			t.memo.reused[r.cluster] = true
			t.memo.reused[r.cla] = true
			if r.listener != nil {
				t.memo.reused[r.listener] = true
			}
			if r.route != nil {
				t.memo.reused[r.route] = true
			}
			for _, l := range r.aliasListeners {
				t.memo.reused[l] = true
			}
			return r
		}
	}
	r := &hostResult{digest: d}
	t.capture = &r.notes
	build(r)
	t.capture = nil
	r.fixed = t.out.fixedWeights[name]
	if ok {
		t.memo.hosts[name] = r
	}
	return r
}

// port returns a sidecar view's listener and route configuration for an
// HTTP port: the previous render's when the hosts on it are the same.
func (t *translator) port(port uint32, hosts []*hostPort, build func(*portResult)) *portResult {
	// The hosts' fields are hashed as they are written, a host at a time.
	hash := sha256.New()
	b := binary.AppendUvarint(t.digestBuf[:0], uint64(port))
	str := func(s string) { b = binary.AppendUvarint(b, uint64(len(s))); b = append(b, s...) }
	for _, h := range hosts {
		str(h.host)
		str(h.key.Namespace)
		str(h.key.Name)
		b = binary.AppendUvarint(b, uint64(h.scope))
		str(h.clusterIP)
		str(h.name())
		b = binary.AppendUvarint(b, uint64(len(h.aliases)))
		for _, a := range h.aliases {
			str(a)
		}
		// A host's route rules read other hosts: whether each
		// destination the view's proxy is sent to is in the view.
		b = t.appendRouteInputs(b, h)
		hash.Write(b)
		b = b[:0]
	}
	hash.Write(b)
	t.digestBuf = b[:0]
	var sum [sha256.Size]byte
	d := discovery.Digest(hash.Sum(sum[:0])[:16])
	if t.prev != nil {
		if r := t.prev.ports[port]; r != nil && r.digest == d {
			for _, n := range r.notes {
				t.notef("%s", n)
			}
			t.memo.ports[port] = r
			t.memo.reused[r.listener] = true
			t.memo.reused[r.route] = true
			return r
		}
	}
	r := &portResult{digest: d}
	t.capture = &r.notes
	build(r)
	t.capture = nil
	t.memo.ports[port] = r
	return r
}
