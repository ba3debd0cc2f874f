// Package server is the last stage of the pipeline: it serves the views
// xds renders over ADS (state of the world and delta) with its own stream
// engine (ads.go); go-control-plane provides the API types.
//
//	pipeline ──Update(ClusterSet)──► Server ──► Cache: per view (xds.Group) one
//	                                             rendered, checked, once-marshalled
//	                                             resource set (xds.RenderFrom),
//	                                             published as immutable states
//	                                                   │ per publish, per type: the diff,
//	                                                   │ once; wakes only the streams
//	                                                   │ whose subscription it touches
//	                                                   ▼
//	                      ADS streams: per type, the subscription (interned names),
//	                      a reference to the state the client holds, the response
//	                      in flight ──► Envoy sidecars · gateways · proxyless gRPC
//
// A stream's state does not grow with its view: what the client holds is a
// pointer to a published state plus exceptions (clientState), so an ACK
// costs no per-resource work, and a change costs each stream it touches the
// diff between the state it holds and the current one, computed once for
// all the streams equally behind (typeState.diffFrom). Flow control is
// ACK-paced: one state-of-the-world response in flight per type and stream;
// a stream that is behind gets the latest state, never a backlog.
//
// It checks every node against its verified credential (Identity), pins a
// stream's node, remembers NACKs, bounds how long a stream may not read
// (SendTimeout), and hands gRPC the views' shared bytes (Codec).
package server

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/policyfile"
	"github.com/horizonmesh/horizon/internal/ratelog"
	"github.com/horizonmesh/horizon/xds"
)

// Options configure a Server.
type Options struct {
	Logger  *slog.Logger
	Metrics *Metrics
	// Policy is what views are rendered with; SetPolicy replaces its File.
	Policy xds.Policy
	// AwaitPolicyFile holds the first ClusterSet back until SetPolicy gives
	// a policy file, so that no proxy is served views without it (horizon
	// serve --policy, whose watcher fails the process if the file is bad).
	AwaitPolicyFile bool
	// Debounce is the shortest interval between two renders of the views:
	// changes within it are coalesced (see Run). 0 means DefaultDebounce.
	Debounce time.Duration
	// Trust binds the claims of streams on a TLS port to their credential.
	Trust Trust
	// MaxViews bounds the views proxies can make the server render at once
	// (0 means DefaultMaxViews); a stream that would need one more is
	// refused with ResourceExhausted.
	MaxViews int
	// MaxResponseBytes bounds the resources of one state-of-the-world
	// response (0 means DefaultMaxResponseBytes, negative: no bound).
	// Endpoints and routes past it are sent in further responses, and so is
	// every type over delta xDS; SotW listeners and clusters and single
	// resources over it are sent whole, logged and counted
	// (horizon_xds_oversize_responses_total).
	MaxResponseBytes int
}

// Limits on what one stream's node may make the server hold.
const (
	// DefaultMaxViews bounds rendered views: enough for 100 clusters of 10
	// localities each with sidecars, gateways and proxyless clients in
	// each, and a few label values ranked by a policy.
	DefaultMaxViews = 4096
	// DefaultMaxResponseBytes keeps a response within grpc-go's default
	// receive limit (4 MiB), with room for the envelope.
	DefaultMaxResponseBytes = 4<<20 - 64<<10
	// MaxNodeBytes bounds a node's encoded size (id, metadata, locality,
	// everything Envoy sends). Envoy's own nodes are a few KiB.
	MaxNodeBytes = 64 << 10
	// MaxNodeIDBytes bounds a node id. Istio's longest are about 300 bytes.
	MaxNodeIDBytes = 512
	// MaxNACKMessageBytes bounds the part of a NACK's error message that is
	// kept (debug pages) and logged.
	MaxNACKMessageBytes = 512
	// logInterval is how often at most one kind of line a client can cause
	// is logged: a refusal reason, or a NACK of one type and version on one
	// stream. Metrics count every event.
	logInterval = time.Minute
)

// DefaultDebounce bounds how often views are rendered during a burst of
// changes; an isolated change is not delayed by it (see Run).
const DefaultDebounce = 20 * time.Millisecond

// Server renders views from the latest ClusterSet and serves them over ADS
// (state of the world and delta).
type Server struct {
	log         *slog.Logger
	metrics     *Metrics
	debounce    time.Duration
	awaitPolicy bool
	cache       *Cache
	names       *interner // the names streams subscribe to
	streamIDs   atomic.Int64
	done        <-chan struct{} // New's context's: streams end with it
	trust       Trust
	rlog        *ratelog.Logger

	mu sync.Mutex
	// policy is read by render on any goroutine; Run and Apply replace it.
	policy        xds.Policy
	pendingPolicy *policyfile.File // from SetPolicy, not yet applied
	pending       *discovery.ClusterSet
	current       *discovery.ClusterSet
	applied       time.Time // when Apply last finished
	kick          chan struct{}
	streams       map[streamKey]*stream
}

// New returns a server with no ClusterSet: it refuses streams until the
// first Update has been rendered.
func New(ctx context.Context, o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Debounce <= 0 {
		o.Debounce = DefaultDebounce
	}
	if o.MaxViews <= 0 {
		o.MaxViews = DefaultMaxViews
	}
	s := &Server{
		log: o.Logger, metrics: o.Metrics, policy: o.Policy, debounce: o.Debounce, awaitPolicy: o.AwaitPolicyFile,
		kick: make(chan struct{}, 1), streams: map[streamKey]*stream{},
		trust: o.Trust, rlog: ratelog.New(o.Logger, logInterval),
		names: newInterner(), done: ctx.Done(),
	}
	s.cache = newCache(o.Logger, o.Metrics, s.render)
	s.cache.maxViews = o.MaxViews
	s.cache.viewKeys = func(cs *discovery.ClusterSet) *xds.ViewKeys { return xds.NewViewKeys(cs, s.Policy()) }
	switch {
	case o.MaxResponseBytes == 0:
		s.cache.maxResponseBytes = DefaultMaxResponseBytes
	case o.MaxResponseBytes > 0:
		s.cache.maxResponseBytes = o.MaxResponseBytes
	}
	return s
}

// render is RenderFrom with the server's policy, logged and timed: what a
// view must pass to be published. prev, the memo of the view's last
// published render, lets it reuse what is unchanged (see memo.go).
func (s *Server) render(cs *discovery.ClusterSet, g xds.Group, prev *xds.Memo) (*xds.Resources, *xds.Memo, error) {
	start := time.Now()
	res, memo, err := xds.RenderFrom(cs, g, s.Policy(), prev)
	s.metrics.translated(time.Since(start).Seconds())
	if err != nil {
		s.log.Error("view rejected; the last good one keeps serving", "view", g.String(), "clusterset", cs.Version(), "error", err)
		return nil, nil, err
	}
	return res, memo, nil
}

// SetBundles sets what TLS client chains are verified against to read their
// claims (Trust.Bundles), for a caller that learns it after New. Call it
// before serving.
func (s *Server) SetBundles(b x509bundle.Source) { s.trust.Bundles = b }

// Register adds the aggregated discovery service (both protocols) to g.
func (s *Server) Register(g *grpc.Server) {
	discoverypb.RegisterAggregatedDiscoveryServiceServer(g, adsService{s: s})
}

// Update hands the server a new ClusterSet. It never blocks; changes that
// arrive within the debounce window are rendered once, from the latest.
func (s *Server) Update(cs *discovery.ClusterSet) {
	s.mu.Lock()
	s.pending = cs
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// SetPolicy hands the server a new policy file (nil is ignored: a file, once
// served, is replaced only by a newer good one). It never blocks;
// Run renders every view with it, together with any pending ClusterSet, and
// only views whose output changes are pushed (versions are content hashes).
func (s *Server) SetPolicy(p *policyfile.File) {
	s.mu.Lock()
	s.pendingPolicy = p
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Policy returns the policy views are rendered with.
func (s *Server) Policy() xds.Policy {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.policy
}

// Apply renders cs into every view at once, without debounce. Run uses it;
// tests and the first load call it directly.
func (s *Server) Apply(cs *discovery.ClusterSet) error {
	start := time.Now()
	s.mu.Lock()
	if p := s.pendingPolicy; p != nil {
		s.pendingPolicy = nil
		if p.Version != s.policy.Version() {
			s.log.Info("policy applied", "policy", p.Name, "version", p.Version)
		}
		s.policy.File = p
	}
	version, labelKeys := s.policy.Version(), s.policy.LabelKeys()
	s.mu.Unlock()
	err := s.cache.Render(cs, version, labelKeys)
	s.mu.Lock()
	s.current, s.applied = cs, time.Now()
	s.mu.Unlock()
	s.metrics.pushDone(time.Since(start).Seconds(), cs.Version())
	s.log.Info("clusterset applied", "version", cs.Version(), "clusters", len(cs.Clusters), "exports", len(cs.Exports), "duration", time.Since(start))
	return err
}

// Run applies updates until ctx is done. Views are rendered at most once per
// debounce interval: a change that comes after a quiet interval is applied
// at once, and changes that come sooner wait for the interval to end and are
// applied together, from the latest. So a change waits at most one debounce
// interval, however many follow it, and an isolated one does not wait.
func (s *Server) Run(ctx context.Context) error {
	evict := time.NewTicker(time.Minute)
	defer evict.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-evict.C:
			s.cache.Evict(time.Now().Add(-5 * time.Minute))
		case <-s.kick:
			s.mu.Lock()
			wait := s.debounce - time.Since(s.applied)
			s.mu.Unlock()
			if wait > 0 {
				timer := time.NewTimer(wait)
				select {
				case <-ctx.Done():
					timer.Stop()
					return nil
				case <-timer.C:
				}
			}
			s.mu.Lock()
			cs, current := s.pending, s.current
			pol := s.pendingPolicy
			policyChanged := pol != nil && pol.Version != s.policy.Version()
			if s.awaitPolicy && s.policy.File == nil && pol == nil {
				s.mu.Unlock()
				continue // cs stays pending until the policy file comes
			}
			s.pending = nil
			s.mu.Unlock()
			if cs == nil && policyChanged {
				cs = current
			}
			if cs != nil && (current == nil || policyChanged || cs.Version() != current.Version()) {
				if err := s.Apply(cs); err != nil {
					s.log.Error("some views kept their last good state", "error", err)
				}
			}
		}
	}
}

// Current returns the ClusterSet being served, or nil before the first.
func (s *Server) Current() *discovery.ClusterSet {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current
}

// Ready reports whether the server serves a ClusterSet.
func (s *Server) Ready() bool { return s.Current() != nil }

// Cache exposes the view cache for debug pages.
func (s *Server) Cache() *Cache { return s.cache }

type streamKey struct {
	delta bool
	id    int64
}

// stream is what Horizon tracks of one open xDS stream.
type stream struct {
	key       streamKey
	identity  *Identity // from the TLS client certificate; nil on plaintext
	proxy     *xds.Proxy
	nodeSum   [sha256.Size]byte // of the first request's node: it may not change
	canonical *core.Node        // the node the cache sees (canonicalNode)
	opened    time.Time
	acked     map[string]string // type URL -> last ACKed version
	sent      map[string]sent   // type URL -> last response
	lastNACK  map[string]NACK   // type URL -> last rejection
	nackCount int
}

type sent struct{ nonce, version string }

// NACK is a proxy's last rejection of a resource type.
type NACK struct {
	Version string    `json:"version"`
	Message string    `json:"message"`
	At      time.Time `json:"at"`
}

// refuse counts a refused stream under reason, logs the detail (at most
// once a minute per reason and node id) and returns the opaque status the client gets:
// the reason word and a fixed hint.
func (s *Server) refuse(reason string, code codes.Code, hint, node string, detail error) error {
	s.metrics.rejectedStream(reason)
	s.rlog.Warn("refused:"+reason+":"+ratelog.Truncate(node, 128), "stream refused", "reason", reason, "node", ratelog.Truncate(node, 128), "error", detail)
	return status.Error(code, reason+": "+hint)
}

// checkNodeSize bounds what a node can make the server hold.
func checkNodeSize(n *core.Node) error {
	if len(n.GetId()) > MaxNodeIDBytes {
		return fmt.Errorf("node id of %d bytes, at most %d", len(n.GetId()), MaxNodeIDBytes)
	}
	if size := proto.Size(n); size > MaxNodeBytes {
		return fmt.Errorf("node %q: %d bytes, at most %d", ratelog.Truncate(n.GetId(), 128), size, MaxNodeBytes)
	}
	return nil
}

// nodeSum fingerprints a node, to see whether a later request changes it.
func nodeSum(n *core.Node) [sha256.Size]byte {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(n)
	return sha256.Sum256(b)
}

// canonicalNode rewrites n, in place, to the node of p: its id, user agent
// and exactly the metadata Horizon reads, as checked (claims filled in from
// the credential, locality clamped). The stream keeps it and resolves its
// view from it (Cache.follow), so it resolves the view that was checked,
// and holds no more of its node than that.
func canonicalNode(n *core.Node, p *xds.Proxy) {
	id, ua := n.GetId(), n.GetUserAgentName()
	proto.Reset(n)
	n.Id, n.UserAgentName = id, ua
	fields := map[string]*structpb.Value{xds.MetaClusterID: structpb.NewStringValue(p.Cluster), xds.MetaRole: structpb.NewStringValue(string(p.Role))}
	for k, v := range map[string]string{xds.MetaNetwork: p.Network, xds.MetaNamespace: p.Namespace, xds.MetaServiceAccount: p.ServiceAccount} {
		if v != "" {
			fields[k] = structpb.NewStringValue(v)
		}
	}
	if len(p.Labels) > 0 {
		labels := make(map[string]*structpb.Value, len(p.Labels))
		for k, v := range p.Labels {
			labels[k] = structpb.NewStringValue(v)
		}
		fields[xds.MetaLabels] = structpb.NewStructValue(&structpb.Struct{Fields: labels})
	}
	n.Metadata = &structpb.Struct{Fields: fields}
	if l := p.Locality; l != (discovery.Locality{}) {
		n.Locality = &core.Locality{Region: l.Region, Zone: l.Zone, SubZone: l.SubZone}
	}
}

func protocolName(delta bool) string {
	if delta {
		return "delta"
	}
	return "sotw"
}

// onRequest checks a request's node before the stream uses it: the first
// request must carry valid metadata for a member cluster that its
// credential supports, and a later one may not change it. The node the cache sees is rewritten to what
// was checked (canonicalNode). It also records ACKs and NACKs; a NACK is
// data, logged (rate-limited) and counted.
func (s *Server) onRequest(k streamKey, node *core.Node, typeURL, nonce string, nack *rpcstatus.Status) (*stream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[k]
	if st == nil {
		return nil, status.Error(codes.Internal, "unknown stream")
	}
	if node != nil && node != st.canonical {
		if err := checkNodeSize(node); err != nil {
			return nil, s.refuse("node_too_large", codes.ResourceExhausted, "the node exceeds Horizon's size limits", node.GetId(), err)
		}
	}
	if st.proxy == nil {
		if s.current == nil {
			s.metrics.rejectedStream("not_ready")
			return nil, errNotReady
		}
		p, err := xds.ResolveNode(node, s.current)
		if errors.Is(err, xds.ErrNetworkClaim) && st.identity != nil {
			return nil, s.refuse("claim_network", codes.PermissionDenied, xds.MetaNetwork+" contradicts the cluster's network", node.GetId(), err)
		}
		if err != nil {
			return nil, s.refuse("bad_node", codes.InvalidArgument, "the node metadata is missing or malformed (see the node-metadata contract)", node.GetId(), err)
		}
		if err := s.trust.checkClaims(p, st.identity); err != nil {
			var c *claimError
			errors.As(err, &c)
			return nil, s.refuse(c.reason, codes.PermissionDenied, c.field+" is not supported by the client certificate", node.GetId(), err)
		}
		if p.Declared != (discovery.Locality{}) {
			s.metrics.clampedLocality()
			s.rlog.Info("locality:"+p.Cluster, "declared locality clamped to one the ClusterSet knows in the cluster",
				"node", ratelog.Truncate(p.ID, 128), "cluster", p.Cluster, "declared", p.Declared.String(), "locality", p.Locality.String())
		}
		st.proxy, st.nodeSum = p, nodeSum(node)
		canonicalNode(node, p)
		st.canonical = node
		s.metrics.streamOpened(p.Role, protocolName(k.delta), 1)
	} else if node != nil && node != st.canonical {
		if nodeSum(node) != st.nodeSum {
			return nil, s.refuse("node_changed", codes.InvalidArgument, "the node changed on an open stream; open a new stream", st.proxy.ID,
				fmt.Errorf("node %q sent different node fields (id %q) on an open stream", st.proxy.ID, ratelog.Truncate(node.GetId(), 128)))
		}
		canonicalNode(node, st.proxy)
		st.canonical = node
	}
	if nonce == "" {
		return st, nil
	}
	if nack != nil {
		rejected := st.sent[typeURL]
		if rejected.nonce != nonce {
			rejected.version = "" // the NACK names an older response
		}
		msg := ratelog.Truncate(nack.GetMessage(), MaxNACKMessageBytes)
		st.lastNACK[typeURL] = NACK{Version: rejected.version, Message: msg, At: time.Now()}
		st.nackCount++
		s.metrics.nacked(typeURL)
		s.rlog.Warn(fmt.Sprintf("nack %v/%d %s %s", k.delta, k.id, typeURL, ratelog.Truncate(rejected.version, 64)), "proxy rejected config",
			"node", st.proxy.ID, "type", discovery.XDSTypeName(typeURL), "version", rejected.version, "error", msg)
		return st, nil
	}
	// An ACK answers the last response by its nonce, and accepts what it
	// carried: a request with any other nonce (stale, or never sent)
	// accepts nothing, whatever version it claims.
	if st.sent[typeURL].nonce != nonce {
		return st, nil
	}
	st.acked[typeURL] = st.sent[typeURL].version
	return st, nil
}

func (s *Server) onResponse(k streamKey, typeURL, nonce, version string, bytes int) {
	s.metrics.pushed(typeURL, bytes)
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.streams[k]; st != nil {
		st.sent[typeURL] = sent{nonce: nonce, version: version}
	}
}

func resourceBytes[T interface{ GetValue() []byte }](rs []T) int {
	n := 0
	for _, r := range rs {
		n += len(r.GetValue())
	}
	return n
}

// ProxyStatus is one stream's state, for /debug/syncz.
type ProxyStatus struct {
	ID        string            `json:"id"`
	Role      xds.Role          `json:"role"`
	Cluster   string            `json:"cluster"`
	Network   string            `json:"network"`
	Locality  string            `json:"locality"`
	View      string            `json:"view"`
	Protocol  string            `json:"protocol"`
	Connected time.Time         `json:"connected"`
	Sent      map[string]string `json:"sent"`
	Acked     map[string]string `json:"acked"`
	NACKs     int               `json:"nacks"`
	LastNACK  map[string]NACK   `json:"last_nack,omitempty"`
}

// Syncz lists every identified stream, sorted by proxy id.
func (s *Server) Syncz() []ProxyStatus {
	s.mu.Lock()
	var out []ProxyStatus
	var groups []xds.Group // of out, as the proxies declared them
	labelKeys := s.policy.LabelKeys()
	for _, st := range s.streams {
		if st.proxy == nil {
			continue
		}
		groups = append(groups, st.proxy.DeclaredGroupFor(labelKeys))
		ps := ProxyStatus{
			ID: st.proxy.ID, Role: st.proxy.Role, Cluster: st.proxy.Cluster, Network: st.proxy.Network,
			Locality: st.proxy.Locality.String(), Protocol: protocolName(st.key.delta),
			Connected: st.opened, Sent: map[string]string{}, Acked: map[string]string{}, NACKs: st.nackCount,
		}
		for t, v := range st.sent {
			ps.Sent[xds.ShortType(t)] = v.version
		}
		for t, v := range st.acked {
			ps.Acked[xds.ShortType(t)] = v
		}
		if len(st.lastNACK) > 0 {
			ps.LastNACK = map[string]NACK{}
			for t, n := range st.lastNACK {
				ps.LastNACK[xds.ShortType(t)] = n
			}
		}
		out = append(out, ps)
	}
	s.mu.Unlock()
	for i, g := range groups { // the view each is served, outside s.mu (Cache.Render takes it under Cache.mu)
		out[i].View = s.cache.ViewOf(g).String()
	}
	slices.SortFunc(out, func(a, b ProxyStatus) int {
		return strings.Compare(a.ID+"\x00"+a.Protocol, b.ID+"\x00"+b.Protocol)
	})
	return out
}

// ErrUnknownProxy is returned for a proxy id with no open stream.
var ErrUnknownProxy = errors.New("no connected proxy with that id")

// ProxyView returns the view a connected proxy is served.
func (s *Server) ProxyView(id string) (ViewInfo, error) {
	s.mu.Lock()
	var g *xds.Group
	for _, st := range s.streams {
		if st.proxy != nil && st.proxy.ID == id {
			grp := st.proxy.DeclaredGroupFor(s.policy.LabelKeys())
			g = &grp
			break
		}
	}
	s.mu.Unlock()
	if g == nil {
		return ViewInfo{}, fmt.Errorf("%w: %q", ErrUnknownProxy, id)
	}
	*g = s.cache.ViewOf(*g)
	v, ok := s.cache.View(*g)
	if !ok {
		return ViewInfo{}, fmt.Errorf("proxy %q: view %s is not rendered", id, g)
	}
	return v, nil
}
