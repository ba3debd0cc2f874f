package server

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"strconv"
	"sync/atomic"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/horizonmesh/horizon/xds"
)

// MaxSubscribedNames bounds the resource names one stream may subscribe to
// of one type (and the initial_resource_versions it may present): a
// stream that asks for more is ended with ResourceExhausted and counted
// (horizon_xds_rejected_streams_total{reason="too_many_names"}). A sidecar
// asks for one assignment and one route per service port in its view.
const MaxSubscribedNames = 100_000

// numTypes is len(xds.TypeURLs): the types a stream follows.
const numTypes = 4

// typeIndex returns the index of typeURL in xds.TypeURLs, or -1 for a type
// Horizon does not serve.
func typeIndex(typeURL string) int {
	for i, t := range xds.TypeURLs {
		if t == typeURL {
			return i
		}
	}
	return -1
}

// adsService is Horizon's aggregated discovery service.
type adsService struct {
	discoverypb.UnimplementedAggregatedDiscoveryServiceServer
	s *Server
}

func (a adsService) StreamAggregatedResources(ss discoverypb.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	return a.s.serveADS(ss, false)
}

func (a adsService) DeltaAggregatedResources(ss discoverypb.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	return a.s.serveADS(ss, true)
}

// request is what the engine reads of a request of either protocol; the
// request itself is not kept.
type request struct {
	node                   *core.Node
	typeURL, nonce         string
	version                string // SotW version_info
	nack                   *rpcstatus.Status
	names                  []string // SotW resource_names
	subscribe, unsubscribe []string // delta
	initial                map[string]string
}

func recvRequest(ss grpc.ServerStream, delta bool) (*request, error) {
	if delta {
		var m discoverypb.DeltaDiscoveryRequest
		if err := ss.RecvMsg(&m); err != nil {
			return nil, err
		}
		return &request{node: m.GetNode(), typeURL: m.GetTypeUrl(), nonce: m.GetResponseNonce(), nack: m.GetErrorDetail(),
			subscribe: m.GetResourceNamesSubscribe(), unsubscribe: m.GetResourceNamesUnsubscribe(), initial: m.GetInitialResourceVersions()}, nil
	}
	var m discoverypb.DiscoveryRequest
	if err := ss.RecvMsg(&m); err != nil {
		return nil, err
	}
	return &request{node: m.GetNode(), typeURL: m.GetTypeUrl(), nonce: m.GetResponseNonce(), version: m.GetVersionInfo(),
		nack: m.GetErrorDetail(), names: m.GetResourceNames()}, nil
}

// adsStream is one ADS stream. Its goroutine (serveADS)
// owns everything but subs and kick, which the publishing goroutine reads.
type adsStream struct {
	srv   *Server
	key   streamKey
	rec   *stream // the server's record (identity, node, ACKs, NACKs)
	ss    grpc.ServerStream
	nonce int64

	// kick wakes the stream after a publish touched what it subscribes to.
	kick chan struct{}
	// subs are the subscriptions per type (nil: none yet), for the
	// publisher to decide whom to wake.
	subs  [numTypes]atomic.Pointer[subscription]
	types [numTypes]*typeStream

	view  *view     // the view followed; set under Cache.mu
	raw   xds.Group // the group the node resolved to (Proxy.DeclaredGroupFor)
	group xds.Group // of view: raw reduced (Cache.keyOfLocked)
	epoch uint64    // Cache.epoch group was resolved at
}

// typeStream is a stream's state of one type: what it subscribes to, what
// the client holds, and the response in flight. Its size does not depend
// on the view's.
type typeStream struct {
	state clientState
	// legacy: the client has not named a resource yet, so an empty request
	// keeps the subscription wildcard (the protocol's legacy wildcard).
	legacy bool
	// armed: the client's last request is not answered yet, so a response
	// may be sent (one response in flight per type: a state-of-the-world
	// client's ACK or NACK arms it again). force: the answer is owed even
	// if empty (a first request).
	armed, force bool
	nonce        string // of the last response, "" before the first
	namesHash    uint64 // SotW: of the last request's names, as sent
	hashed       bool
	// split: the last response left part of the state it was computed
	// from for the client's next request (the byte budget).
	split bool
	// presented is the version a SotW client presented on its first
	// request that matched the current state (a reconnect), until the
	// first response.
	presented string
}

func (st *adsStream) wake() {
	select {
	case st.kick <- struct{}{}:
	default:
	}
}

// serveADS runs one stream: requests are read on a goroutine of their own
// and handled here, one at a time, between the responses publishes make
// owed. The stream ends when the client ends it, on the first refused
// request, or when the server stops.
func (s *Server) serveADS(ss grpc.ServerStream, delta bool) error {
	ctx := ss.Context()
	k, err := s.openStream(ctx, delta)
	if err != nil {
		return err
	}
	defer s.closeStream(k)
	st := &adsStream{srv: s, key: k, ss: ss, kick: make(chan struct{}, 1)}
	defer st.close()

	reqs := make(chan *request)
	recvErr := make(chan error, 1)
	go func() {
		for {
			r, err := recvRequest(ss, delta)
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case reqs <- r:
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case <-s.done:
			return nil
		case <-ctx.Done():
			return nil
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case r := <-reqs:
			if err := st.handle(r, delta); err != nil {
				return err
			}
		case <-st.kick:
			if err := st.srv.cache.refollow(st); err != nil {
				return err
			}
		}
		if err := st.flush(delta); err != nil {
			return err
		}
	}
}

// close lets go of the view and the interned names.
func (st *adsStream) close() {
	st.srv.cache.unfollow(st)
	for i := range st.subs {
		if sub := st.subs[i].Load(); sub != nil {
			st.srv.names.release(sub.names)
		}
	}
}

// handle applies one request: the node checks and ACK/NACK bookkeeping
// (onRequest), the view, the subscription, and arms the type for a
// response.
func (st *adsStream) handle(r *request, delta bool) error {
	if r.typeURL == "" {
		return status.Errorf(codes.InvalidArgument, "type URL is required for ADS")
	}
	if r.node == nil && st.rec == nil {
		r.node = &core.Node{} // the first request's node is checked, even if absent
	}
	rec, err := st.srv.onRequest(st.key, r.node, r.typeURL, r.nonce, r.nack)
	if err != nil {
		return err
	}
	st.rec = rec
	i := typeIndex(r.typeURL)
	t := (*typeStream)(nil)
	if i >= 0 {
		t = st.types[i]
	}
	if !delta && t != nil && t.nonce != "" && r.nonce != t.nonce {
		// A request that does not answer the last response of its type is
		// stale: ignored, as the protocol says (xds_protocol#resource-updates).
		return nil
	}
	if err := st.srv.cache.follow(st); err != nil {
		return err
	}
	if i < 0 {
		return nil // a type Horizon does not serve: never answered, never an error
	}
	if delta {
		return st.deltaRequest(i, r)
	}
	return st.sotwRequest(i, r)
}

// tooManyNames ends a stream that subscribes to more than
// MaxSubscribedNames names of a type.
func (st *adsStream) tooManyNames(typeURL string, n int) error {
	node := ""
	if st.rec != nil && st.rec.proxy != nil {
		node = st.rec.proxy.ID
	}
	return st.srv.refuse("too_many_names", codes.ResourceExhausted,
		fmt.Sprintf("a stream subscribes to at most %d resource names of a type", MaxSubscribedNames), node,
		fmt.Errorf("%d names of %s", n, xds.ShortType(typeURL)))
}

// setSubscription replaces the subscription of type i.
func (st *adsStream) setSubscription(i int, sub *subscription) {
	if old := st.subs[i].Swap(sub); old != nil {
		st.srv.names.release(old.names)
	}
}

// flush sends, in push order (CDS, EDS, LDS, RDS), every armed type's
// response, if it is owed one. A type waits while one before it is split
// (the byte budget left part of its state for the client's next request),
// so that a listener or route never reaches a client between the parts of
// the clusters it references (xds_protocol#eventual-consistency-considerations).
// A type whose response is merely in flight blocks nothing, as each type's
// flow control is its own.
func (st *adsStream) flush(delta bool) error {
	if st.view == nil {
		return nil
	}
	gen := st.view.current()
	blocked := false
	for i, typeURL := range xds.TypeURLs {
		t := st.types[i]
		if t == nil {
			continue
		}
		if t.armed && !blocked {
			var err error
			if delta {
				err = st.deltaRespond(t, typeURL, st.subs[i].Load(), gen[i])
			} else {
				err = st.sotwRespond(t, typeURL, st.subs[i].Load(), gen[i])
			}
			if err != nil {
				return status.Errorf(codes.Unavailable, "send %s: %v", xds.ShortType(typeURL), err)
			}
		}
		blocked = blocked || t.split
	}
	return nil
}

func (st *adsStream) nextNonce() string {
	st.nonce++
	return strconv.FormatInt(st.nonce, 10)
}

// oversize logs and counts a response over the byte budget.
func (st *adsStream) oversize(typeURL string, bytes, resources int) {
	c := st.srv.cache
	if c.maxResponseBytes <= 0 || bytes <= c.maxResponseBytes {
		return
	}
	typ := xds.ShortType(typeURL)
	c.metrics.oversize(typeURL)
	c.rlog.Warn("oversize:"+typ, "response larger than the maximum sent whole: its type or its largest resource cannot be split; clients with a smaller receive limit refuse it",
		"type", typ, "bytes", bytes, "limit", c.maxResponseBytes, "resources", resources)
}

var namesSeed = maphash.MakeSeed()

// hashNames fingerprints a request's names, in order: a client repeats
// them unchanged on every ACK, and the stream then skips the subscription.
func hashNames(names []string) uint64 {
	var h maphash.Hash
	h.SetSeed(namesSeed)
	for _, n := range names {
		h.WriteString(n)
		h.WriteByte(0)
	}
	return h.Sum64()
}

// openStream admits a stream: its TLS credential, if any, must be a usable
// SVID. It returns the stream's key in Server.streams.
func (s *Server) openStream(ctx context.Context, delta bool) (streamKey, error) {
	ident, err := s.trust.streamIdentity(ctx, s.Policy().TrustDomainOrDefault())
	if err != nil {
		return streamKey{}, s.refuse("identity", codes.Unauthenticated, "the client certificate is not a usable X509-SVID of the trust domain", "", err)
	}
	k := streamKey{delta, s.streamIDs.Add(1)}
	s.mu.Lock()
	s.streams[k] = &stream{key: k, identity: ident, opened: time.Now(), acked: map[string]string{}, sent: map[string]sent{}, lastNACK: map[string]NACK{}}
	s.mu.Unlock()
	return k, nil
}

// closeStream forgets a stream.
func (s *Server) closeStream(k streamKey) {
	s.mu.Lock()
	st := s.streams[k]
	delete(s.streams, k)
	s.mu.Unlock()
	if st != nil && st.proxy != nil {
		s.metrics.streamOpened(st.proxy.Role, protocolName(k.delta), -1)
	}
}
