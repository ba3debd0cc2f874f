package load

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/xds"
)

// Resource types a simulated sidecar subscribes to, in Envoy's order.
const (
	CDS = iota
	EDS
	LDS
	RDS
	numTypes
)

var typeURLs = [numTypes]string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType}

// TypeNames names the types in tables, indexed like ProxyStats.Bytes, as
// Horizon's metrics and logs do.
var TypeNames = func() (names [numTypes]string) {
	for i, url := range typeURLs {
		names[i] = discovery.XDSTypeName(url)
	}
	return names
}()

func typeIndex(url string) int { return slices.Index(typeURLs[:], url) }

// Marker addresses: change i of a scenario gives one endpoint the address
// MarkerAddress(i), in 100.64.0.0/10, a range the generator never uses. A
// proxy that ACKs an assignment holding it has converged on change i.
const maxMarkers = 1 << 22

// MarkerAddress returns the endpoint address that marks change i.
func MarkerAddress(i int) string {
	return netip.AddrFrom4([4]byte{100, 64 + byte(i>>16), byte(i >> 8), byte(i)}).String()
}

// markerIndex is the inverse of MarkerAddress.
func markerIndex(addr string) (int, bool) {
	if len(addr) < 4 || addr[:4] != "100." {
		return 0, false
	}
	a, err := netip.ParseAddr(addr)
	if err != nil || !a.Is4() {
		return 0, false
	}
	b := a.As4()
	if b[1] < 64 || b[1] >= 128 {
		return 0, false
	}
	return int(b[1]-64)<<16 | int(b[2])<<8 | int(b[3]), true
}

// Identity is what a simulated proxy tells Horizon about itself, following
// the node metadata contract of xds/node.go.
type Identity struct {
	ID             string             `json:"id"`
	Cluster        string             `json:"cluster"`
	Network        string             `json:"network"`
	Namespace      string             `json:"namespace"`
	ServiceAccount string             `json:"service_account"`
	Locality       discovery.Locality `json:"locality"`
}

func (id Identity) node() *core.Node {
	str := structpb.NewStringValue
	return &core.Node{
		Id:            id.ID,
		Cluster:       id.Cluster,
		UserAgentName: "envoy",
		Locality:      &core.Locality{Region: id.Locality.Region, Zone: id.Locality.Zone, SubZone: id.Locality.SubZone},
		Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			xds.MetaClusterID:      str(id.Cluster),
			xds.MetaNetwork:        str(id.Network),
			xds.MetaNamespace:      str(id.Namespace),
			xds.MetaServiceAccount: str(id.ServiceAccount),
			xds.MetaRole:           str(string(xds.Sidecar)),
		}},
	}
}

// ProxyStats is what one simulated proxy recorded. Times are Unix
// nanoseconds of the wall clock, so that two processes on one host can
// compare them.
type ProxyStats struct {
	Identity
	Bytes     [numTypes]int64 `json:"bytes"`     // proto size of every response received, by type
	Responses [numTypes]int64 `json:"responses"` // responses received, by type
	NACKs     int             `json:"nacks"`
	Streams   int             `json:"streams"` // streams opened
	Syncs     int             `json:"syncs"`   // streams that reached a full sync
	SyncedAt  int64           `json:"synced_at"`
	// Markers maps a change to when this proxy ACKed the first assignment
	// that held its marker endpoint.
	Markers map[int]int64 `json:"markers,omitempty"`
}

// Proxy simulates an Envoy sidecar on one ADS stream: wildcard CDS, then EDS
// for the EDS clusters CDS named, then wildcard LDS, then RDS for the route
// names the listeners' HTTP connection managers name. Every response is
// decoded and ACKed (version and nonce), or NACKed if it does not decode.
type Proxy struct {
	id      Identity
	delta   bool
	observe func(Response) error

	mu    sync.Mutex
	stats ProxyStats
}

// NewProxy returns a proxy that speaks delta xDS if delta, else state of
// the world.
func NewProxy(id Identity, delta bool) *Proxy {
	return &Proxy{id: id, delta: delta, stats: ProxyStats{Identity: id, Markers: map[int]int64{}}}
}

// Response is one state-of-the-world response as a proxy received it, for
// an observer (see Observe).
type Response struct {
	Type       int // CDS, EDS, LDS or RDS
	Version    string
	Nonce      string
	Resources  []*anypb.Any
	Subscribed []string // the names the proxy had asked for (EDS, RDS), sorted
	Stream     int      // which of the proxy's streams, from 1
	Received   time.Time
}

// Observe has f see every state-of-the-world response that decodes, before
// the proxy answers it: the proxy NACKs it when f returns an error and ACKs
// it otherwise, and reads nothing more while f blocks (a stuck Envoy). Set
// it before Run; delta streams do not call it. The fault suite
// (internal/chaos) records views with it.
func (p *Proxy) Observe(f func(Response) error) { p.observe = f }

// Identity is what the proxy tells Horizon about itself.
func (p *Proxy) Identity() Identity { return p.id }

// Stats returns a copy of what the proxy recorded.
func (p *Proxy) Stats() ProxyStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Markers = make(map[int]int64, len(p.stats.Markers))
	for k, v := range p.stats.Markers {
		s.Markers[k] = v
	}
	return s
}

func (p *Proxy) synced() (int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats.Syncs, p.stats.Syncs > 0
}

func (p *Proxy) hasMarker(i int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.stats.Markers[i]
	return ok
}

func (p *Proxy) record(t, size int, markers []int, at int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Bytes[t] += int64(size)
	p.stats.Responses[t]++
	for _, m := range markers {
		if _, ok := p.stats.Markers[m]; !ok {
			p.stats.Markers[m] = at
		}
	}
}

func (p *Proxy) count(f func(*ProxyStats)) {
	p.mu.Lock()
	f(&p.stats)
	p.mu.Unlock()
}

// Run opens one ADS stream on conn and serves it until it fails or ctx is
// done. Each stream starts from nothing, as a restarted Envoy does.
func (p *Proxy) Run(ctx context.Context, conn grpc.ClientConnInterface) error {
	p.count(func(s *ProxyStats) { s.Streams++ })
	client := discoverypb.NewAggregatedDiscoveryServiceClient(conn)
	if p.delta {
		return p.runDelta(ctx, client)
	}
	return p.runSotW(ctx, client)
}

// session is one stream's subscription state.
type session struct {
	p          *Proxy
	edsNames   []string // sorted
	routeNames []string // sorted
	acked      [numTypes]bool
	ldsSent    bool
	synced     bool
	// delta only: what each resource contributes to the names above.
	clusters  map[string]string   // cluster -> EDS service name ("" if not EDS)
	listeners map[string][]string // listener -> route names
}

func newSession(p *Proxy) *session {
	return &session{p: p, clusters: map[string]string{}, listeners: map[string][]string{}}
}

// checkSynced marks the proxy synced once every type it needs is ACKed.
func (s *session) checkSynced(at int64) {
	if s.synced || !s.acked[CDS] || !s.acked[LDS] ||
		(len(s.edsNames) > 0 && !s.acked[EDS]) || (len(s.routeNames) > 0 && !s.acked[RDS]) {
		return
	}
	s.synced = true
	s.p.count(func(st *ProxyStats) { st.Syncs++; st.SyncedAt = at })
}

// decoded is what a proxy takes from one resource.
type decoded struct {
	edsName string   // CDS: the assignment an EDS cluster needs
	routes  []string // LDS: route configurations named
	markers []int    // EDS: marker endpoints held
}

// decodeMemo remembers what each distinct resource decoded to. The proxies
// of one view receive byte-identical resources, and a real fleet decodes on
// its own machines: decoding each distinct resource once keeps the load
// generator's CPU (which shares this machine with the server) off the
// figures without changing what any proxy does or answers.
var decodeMemo = struct {
	sync.Mutex
	m [numTypes]map[string]decodeResult
}{}

type decodeResult struct {
	d   decoded
	err error
}

// decodeMemoMax bounds the memo: it starts again when full.
const decodeMemoMax = 1 << 16

// decode returns what a proxy takes from one resource, from the memo when
// an identical resource was decoded before.
func decode(t int, a *anypb.Any) (decoded, error) {
	b := a.GetValue()
	decodeMemo.Lock()
	r, ok := decodeMemo.m[t][string(b)]
	decodeMemo.Unlock()
	if ok {
		return r.d, r.err
	}
	d, err := decodeResource(t, a)
	decodeMemo.Lock()
	m := decodeMemo.m[t]
	if m == nil || len(m) >= decodeMemoMax {
		m = map[string]decodeResult{}
		decodeMemo.m[t] = m
	}
	m[string(b)] = decodeResult{d, err}
	decodeMemo.Unlock()
	return d, err
}

func decodeResource(t int, a *anypb.Any) (decoded, error) {
	var d decoded
	switch t {
	case CDS:
		var c cluster.Cluster
		if err := proto.Unmarshal(a.GetValue(), &c); err != nil {
			return d, fmt.Errorf("cluster: %w", err)
		}
		if c.GetType() == cluster.Cluster_EDS {
			d.edsName = c.GetEdsClusterConfig().GetServiceName()
			if d.edsName == "" {
				d.edsName = c.GetName()
			}
		}
	case EDS:
		var cla endpoint.ClusterLoadAssignment
		if err := proto.Unmarshal(a.GetValue(), &cla); err != nil {
			return d, fmt.Errorf("assignment: %w", err)
		}
		for _, l := range cla.GetEndpoints() {
			for _, e := range l.GetLbEndpoints() {
				if m, ok := markerIndex(e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()); ok {
					d.markers = append(d.markers, m)
				}
			}
		}
	case LDS:
		var l listener.Listener
		if err := proto.Unmarshal(a.GetValue(), &l); err != nil {
			return d, fmt.Errorf("listener: %w", err)
		}
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				tc := f.GetTypedConfig()
				if tc == nil || tc.GetTypeUrl() != "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager" {
					continue
				}
				var m hcm.HttpConnectionManager
				if err := tc.UnmarshalTo(&m); err != nil {
					return d, fmt.Errorf("listener %s: %w", l.GetName(), err)
				}
				if n := m.GetRds().GetRouteConfigName(); n != "" {
					d.routes = append(d.routes, n)
				}
			}
		}
	}
	return d, nil
}

func sortedSet(names []string) []string {
	slices.Sort(names)
	return slices.Compact(names)
}

func (p *Proxy) runSotW(ctx context.Context, client discoverypb.AggregatedDiscoveryServiceClient) error {
	stream, err := client.StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	s := newSession(p)
	var streamNo int
	p.count(func(st *ProxyStats) { streamNo = st.Streams })
	var version, nonce [numTypes]string
	node := p.id.node()
	send := func(t int, names []string, nack *rpcstatus.Status) error {
		req := &discoverypb.DiscoveryRequest{Node: node, TypeUrl: typeURLs[t], VersionInfo: version[t], ResponseNonce: nonce[t], ResourceNames: names, ErrorDetail: nack}
		node = nil // Envoy's set_node_on_first_message_only
		return stream.Send(req)
	}
	names := func(t int) []string {
		switch t {
		case EDS:
			return s.edsNames
		case RDS:
			return s.routeNames
		}
		return nil
	}
	if err := send(CDS, nil, nil); err != nil {
		return err
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		t := typeIndex(resp.GetTypeUrl())
		if t < 0 {
			continue
		}
		size := proto.Size(resp)
		var markers []int
		var newNames []string
		var derr error
		for _, r := range resp.GetResources() {
			d, err := decode(t, r)
			if err != nil {
				derr = err
				break
			}
			if d.edsName != "" {
				newNames = append(newNames, d.edsName)
			}
			newNames = append(newNames, d.routes...)
			markers = append(markers, d.markers...)
		}
		nonce[t] = resp.GetNonce()
		if derr == nil && p.observe != nil {
			derr = p.observe(Response{Type: t, Version: resp.GetVersionInfo(), Nonce: resp.GetNonce(),
				Resources: resp.GetResources(), Subscribed: names(t), Stream: streamNo, Received: time.Now()})
		}
		if derr != nil {
			p.count(func(st *ProxyStats) { st.NACKs++ })
			if err := send(t, names(t), &rpcstatus.Status{Code: 3, Message: derr.Error()}); err != nil {
				return err
			}
			continue
		}
		version[t] = resp.GetVersionInfo()
		if err := send(t, names(t), nil); err != nil {
			return err
		}
		now := time.Now().UnixNano()
		p.record(t, size, markers, now)
		s.acked[t] = true
		switch t {
		case CDS:
			// State of the world: CDS is the whole set, so are its names.
			if n := sortedSet(newNames); len(n) > 0 && !slices.Equal(n, s.edsNames) {
				s.edsNames = n
				if err := send(EDS, n, nil); err != nil {
					return err
				}
			}
			if len(s.edsNames) == 0 && !s.ldsSent {
				s.ldsSent = true
				if err := send(LDS, nil, nil); err != nil {
					return err
				}
			}
		case EDS:
			if !s.ldsSent {
				s.ldsSent = true
				if err := send(LDS, nil, nil); err != nil {
					return err
				}
			}
		case LDS:
			if n := sortedSet(newNames); len(n) > 0 && !slices.Equal(n, s.routeNames) {
				s.routeNames = n
				if err := send(RDS, n, nil); err != nil {
					return err
				}
			}
		}
		s.checkSynced(now)
	}
}

func diff(old, cur []string) (added, removed []string) {
	for _, n := range cur {
		if _, ok := slices.BinarySearch(old, n); !ok {
			added = append(added, n)
		}
	}
	for _, n := range old {
		if _, ok := slices.BinarySearch(cur, n); !ok {
			removed = append(removed, n)
		}
	}
	return added, removed
}

func (p *Proxy) runDelta(ctx context.Context, client discoverypb.AggregatedDiscoveryServiceClient) error {
	stream, err := client.DeltaAggregatedResources(ctx)
	if err != nil {
		return err
	}
	s := newSession(p)
	node := p.id.node()
	send := func(req *discoverypb.DeltaDiscoveryRequest) error {
		req.Node, node = node, nil
		return stream.Send(req)
	}
	if err := send(&discoverypb.DeltaDiscoveryRequest{TypeUrl: typeURLs[CDS]}); err != nil {
		return err
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		t := typeIndex(resp.GetTypeUrl())
		if t < 0 {
			continue
		}
		size := proto.Size(resp)
		var markers []int
		var derr error
		type update struct {
			name string
			d    decoded
		}
		updates := make([]update, 0, len(resp.GetResources()))
		for _, r := range resp.GetResources() {
			d, err := decode(t, r.GetResource())
			if err != nil {
				derr = err
				break
			}
			updates = append(updates, update{r.GetName(), d})
			markers = append(markers, d.markers...)
		}
		if derr != nil {
			p.count(func(st *ProxyStats) { st.NACKs++ })
			if err := send(&discoverypb.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce(), ErrorDetail: &rpcstatus.Status{Code: 3, Message: derr.Error()}}); err != nil {
				return err
			}
			continue
		}
		if err := send(&discoverypb.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}); err != nil {
			return err
		}
		now := time.Now().UnixNano()
		p.record(t, size, markers, now)
		s.acked[t] = true
		switch t {
		case CDS:
			for _, u := range updates {
				s.clusters[u.name] = u.d.edsName
			}
			for _, n := range resp.GetRemovedResources() {
				delete(s.clusters, n)
			}
			var cur []string
			for _, n := range s.clusters {
				if n != "" {
					cur = append(cur, n)
				}
			}
			cur = sortedSet(cur)
			if add, rm := diff(s.edsNames, cur); len(add)+len(rm) > 0 {
				s.edsNames = cur
				if err := send(&discoverypb.DeltaDiscoveryRequest{TypeUrl: typeURLs[EDS], ResourceNamesSubscribe: add, ResourceNamesUnsubscribe: rm}); err != nil {
					return err
				}
			}
			if len(s.edsNames) == 0 && !s.ldsSent {
				s.ldsSent = true
				if err := send(&discoverypb.DeltaDiscoveryRequest{TypeUrl: typeURLs[LDS]}); err != nil {
					return err
				}
			}
		case EDS:
			if !s.ldsSent {
				s.ldsSent = true
				if err := send(&discoverypb.DeltaDiscoveryRequest{TypeUrl: typeURLs[LDS]}); err != nil {
					return err
				}
			}
		case LDS:
			for _, u := range updates {
				s.listeners[u.name] = u.d.routes
			}
			for _, n := range resp.GetRemovedResources() {
				delete(s.listeners, n)
			}
			var cur []string
			for _, rs := range s.listeners {
				cur = append(cur, rs...)
			}
			cur = sortedSet(cur)
			if add, rm := diff(s.routeNames, cur); len(add)+len(rm) > 0 {
				s.routeNames = cur
				if err := send(&discoverypb.DeltaDiscoveryRequest{TypeUrl: typeURLs[RDS], ResourceNamesSubscribe: add, ResourceNamesUnsubscribe: rm}); err != nil {
					return err
				}
			}
		}
		s.checkSynced(now)
	}
}
