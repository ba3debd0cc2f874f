// Package ads is the control half of Horizon's own east-west gateway (the
// data plane, `horizon gateway`): an xDS client that takes the same
// resources an Envoy gateway gets from Horizon (gateway.Translate renders
// them) and turns them into the routing table of the data half, gateway/proxy/sni:
//
//	Horizon's ADS server ──LDS, CDS, EDS──► Client ──table (pure)──► Apply (sni.Proxy.SetTable)
//	                     ◄──ACK / NACK────
//
// Client keeps one ADS stream (state of the world) open and reconnects with
// backoff. Each response is decoded and validated whole; one it cannot use
// is NACKed and changes nothing, so the last good table keeps routing, across
// reconnects too. The table is a pure function of the accepted listeners,
// clusters and assignments (table.go): for each server name a listener's
// filter chain passes to a tcp_proxy cluster, that cluster's usable endpoints.
//
// The node the client presents (ROLE gateway, CLUSTER_ID, NETWORK) is the
// caller's: this package, like all of gateway, never imports xds.
package ads

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/gateway/proxy/sni"
)

// Backoff between ADS streams.
const (
	adsBackoffMin = 500 * time.Millisecond
	adsBackoffMax = 30 * time.Second
)

// Client keeps a routing table in step with Horizon over one ADS stream
// (state of the world): LDS and CDS by wildcard, EDS for the clusters CDS
// names. A response it cannot use is NACKed and changes nothing: the last
// good table keeps routing, across reconnects too.
type Client struct {
	Conn    grpc.ClientConnInterface
	Node    *core.Node
	Logger  *slog.Logger
	Metrics *Metrics
	// Apply receives every new table, from Run's goroutine.
	Apply func(sni.Table)

	ready atomic.Bool
	state adsState // owned by Run's goroutine
}

// adsState is what the client accepted, per type URL.
type adsState struct {
	listeners   map[string]*listener.Listener
	clusters    map[string]*clusterv3.Cluster
	assignments map[string]*endpoint.ClusterLoadAssignment
	edsNames    []string          // subscribed, sorted
	versions    map[string]string // last accepted
	nonces      map[string]string // last received
	table       sni.Table         // last applied
	applied     bool
}

// Ready reports whether a complete table has been applied: listeners and
// clusters received, and an assignment for every EDS cluster.
func (c *Client) Ready() bool { return c.ready.Load() }

// Run keeps an ADS stream open until ctx is done, reconnecting with
// exponential backoff and jitter.
func (c *Client) Run(ctx context.Context) error {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	backoff := adsBackoffMin
	for {
		got, err := c.stream(ctx)
		c.Metrics.setConnected(false)
		if ctx.Err() != nil {
			return nil
		}
		if got {
			backoff = adsBackoffMin
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		c.Logger.Warn("xDS stream ended; reconnecting", "error", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		backoff = min(2*backoff, adsBackoffMax)
	}
}

// stream runs one ADS stream; got says whether any response arrived.
func (c *Client) stream(ctx context.Context) (got bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(c.Conn).StreamAggregatedResources(ctx)
	if err != nil {
		return false, fmt.Errorf("open ADS stream: %w", err)
	}
	// Resume with what was accepted before: CDS, EDS, LDS, the order Envoy
	// warms them in. Nonces belong to the old stream.
	s := &c.state
	s.nonces = nil
	first := true
	for _, typeURL := range []string{resource.ClusterType, resource.EndpointType, resource.ListenerType} {
		if typeURL == resource.EndpointType && len(s.edsNames) == 0 {
			continue
		}
		req := c.request(typeURL, "", nil)
		if first {
			req.Node, first = c.Node, false
		}
		if err := st.Send(req); err != nil {
			return false, fmt.Errorf("send %s request: %w", discovery.XDSTypeName(typeURL), err)
		}
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			return got, fmt.Errorf("receive: %w", err)
		}
		if !got {
			c.Logger.Info("xDS stream connected")
			c.Metrics.setConnected(true)
		}
		got = true
		for _, req := range c.handle(resp) {
			if err := st.Send(req); err != nil {
				return got, fmt.Errorf("send %s request: %w", discovery.XDSTypeName(req.GetTypeUrl()), err)
			}
		}
	}
}

// request is a subscription request for typeURL at the last accepted
// version; a non-nil nack makes it a NACK.
func (c *Client) request(typeURL, nonce string, nack error) *discoverygrpc.DiscoveryRequest {
	req := &discoverygrpc.DiscoveryRequest{TypeUrl: typeURL, VersionInfo: c.state.versions[typeURL], ResponseNonce: nonce}
	if typeURL == resource.EndpointType {
		req.ResourceNames = slices.Clone(c.state.edsNames)
	}
	if nack != nil {
		req.ErrorDetail = &status.Status{Code: int32(codes.InvalidArgument), Message: nack.Error()}
	}
	return req
}

// handle applies a response and returns the requests to send: its ACK or
// NACK, and an EDS request when the clusters to watch changed.
func (c *Client) handle(resp *discoverygrpc.DiscoveryResponse) []*discoverygrpc.DiscoveryRequest {
	s := &c.state
	if s.versions == nil {
		s.versions, s.nonces = map[string]string{}, map[string]string{}
	}
	if s.nonces == nil {
		s.nonces = map[string]string{}
	}
	typeURL := resp.GetTypeUrl()
	s.nonces[typeURL] = resp.GetNonce()
	err := c.accept(resp)
	if err != nil {
		c.Metrics.response(typeURL, "nack")
		c.Logger.Warn("xDS response rejected; keeping the last good table", "type", discovery.XDSTypeName(typeURL), "version", resp.GetVersionInfo(), "error", err)
		return []*discoverygrpc.DiscoveryRequest{c.request(typeURL, resp.GetNonce(), err)}
	}
	c.Metrics.response(typeURL, "ack")
	s.versions[typeURL] = resp.GetVersionInfo()
	reqs := []*discoverygrpc.DiscoveryRequest{c.request(typeURL, resp.GetNonce(), nil)}
	if typeURL == resource.ClusterType {
		if names := edsServiceNames(s.clusters); !slices.Equal(names, s.edsNames) {
			s.edsNames = names
			for name := range s.assignments {
				if _, ok := slices.BinarySearch(names, name); !ok {
					delete(s.assignments, name)
				}
			}
			reqs = append(reqs, c.request(resource.EndpointType, s.nonces[resource.EndpointType], nil))
		}
	}
	c.rebuild()
	return reqs
}

// accept decodes and checks a response and, if it is usable, replaces the
// state of its type.
func (c *Client) accept(resp *discoverygrpc.DiscoveryResponse) error {
	s := &c.state
	switch resp.GetTypeUrl() {
	case resource.ListenerType:
		ls, err := decodeAll[*listener.Listener](resp)
		if err != nil {
			return err
		}
		for _, l := range ls {
			if _, err := listenerRoutes(l); err != nil {
				return err
			}
		}
		s.listeners = byName(ls, (*listener.Listener).GetName)
	case resource.ClusterType:
		cs, err := decodeAll[*clusterv3.Cluster](resp)
		if err != nil {
			return err
		}
		s.clusters = byName(cs, (*clusterv3.Cluster).GetName)
	case resource.EndpointType:
		as, err := decodeAll[*endpoint.ClusterLoadAssignment](resp)
		if err != nil {
			return err
		}
		// EDS responses need not repeat unchanged assignments (SotW rules
		// for non-LDS/CDS types): merge, keeping only subscribed names.
		next := maps.Clone(s.assignments)
		if next == nil {
			next = map[string]*endpoint.ClusterLoadAssignment{}
		}
		for _, a := range as {
			if _, ok := slices.BinarySearch(s.edsNames, a.GetClusterName()); ok {
				next[a.GetClusterName()] = a
			}
		}
		s.assignments = next
	default:
		return fmt.Errorf("unexpected type %q", resp.GetTypeUrl())
	}
	return nil
}

// decodeAll unmarshals and validates every resource of a response.
func decodeAll[T proto.Message](resp *discoverygrpc.DiscoveryResponse) ([]T, error) {
	out := make([]T, 0, len(resp.GetResources()))
	for i, a := range resp.GetResources() {
		if a.GetTypeUrl() != resp.GetTypeUrl() {
			return nil, fmt.Errorf("resource %d: type %q in a %q response", i, a.GetTypeUrl(), resp.GetTypeUrl())
		}
		var zero T
		m := zero.ProtoReflect().New().Interface()
		if err := a.UnmarshalTo(m); err != nil {
			return nil, fmt.Errorf("resource %d: %w", i, err)
		}
		if v, ok := m.(interface{ Validate() error }); ok {
			if err := v.Validate(); err != nil {
				return nil, fmt.Errorf("resource %d: %w", i, err)
			}
		}
		out = append(out, m.(T))
	}
	return out, nil
}

func byName[T any](items []T, name func(T) string) map[string]T {
	m := make(map[string]T, len(items))
	for _, it := range items {
		m[name(it)] = it
	}
	return m
}

// rebuild computes the table from the accepted state and applies it when it
// changed; readiness comes with the first complete one.
func (c *Client) rebuild() {
	s := &c.state
	table := gatewayTable(s.listeners, s.clusters, s.assignments)
	complete := s.listeners != nil && s.clusters != nil
	for _, n := range s.edsNames {
		if _, ok := s.assignments[n]; !ok {
			complete = false
		}
	}
	if !s.applied || !maps.EqualFunc(table, s.table, slices.Equal) {
		s.table, s.applied = table, true
		endpoints := 0
		for _, addrs := range table {
			endpoints += len(addrs)
		}
		c.Logger.Info("routing table applied", "routes", len(table), "endpoints", endpoints, "complete", complete)
		if c.Apply != nil {
			c.Apply(table)
		}
	}
	if complete && !c.ready.Load() {
		c.ready.Store(true)
		c.Logger.Info("gateway ready")
	}
}
