package main

// `horizon gateway`: Horizon's own east-west gateway, for where Envoy is not
// available. It takes the same xDS as an Envoy gateway (a listener whose
// filter chains match SNIs and pass them to tcp_proxy clusters, the clusters,
// their assignments) over ADS, turns it into an SNI → endpoints table, and
// forwards TLS connections by SNI without terminating them (gateway/sni).

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sync/errgroup"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/horizonmesh/horizon/certs/tlsfiles"
	"github.com/horizonmesh/horizon/gateway/sni"
	"github.com/horizonmesh/horizon/xds"
)

type gatewayConfig struct {
	xdsAddress     string
	cluster        string
	network        string
	id             string
	listen         string
	httpAddress    string
	drainTimeout   time.Duration
	helloTimeout   time.Duration
	connectTimeout time.Duration
	maxConns       int
	logLevel       string
	logFormat      string
	certDir        string
	trustDomain    string
	serverID       string
}

// gatewayCommand runs `horizon gateway`.
func gatewayCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg gatewayConfig
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.xdsAddress, "xds-address", "127.0.0.1:15010", "Horizon's xDS address (host:port): its plaintext port, or with --cert-dir its mutual-TLS port")
	fs.StringVar(&cfg.certDir, "cert-dir", "", "directory with the gateway's svid.crt, svid.key and bundle.crt (kept current by `horizon agent`): connect to --xds-address with mutual TLS; re-read at each connection")
	fs.StringVar(&cfg.trustDomain, "trust-domain", xds.DefaultTrustDomain.Name(), "SPIFFE trust domain of the mesh (with --cert-dir)")
	fs.StringVar(&cfg.serverID, "xds-server-id", "", "SPIFFE ID Horizon's certificate must carry (with --cert-dir; default spiffe://<trust domain>/ns/horizon-system/sa/horizon)")
	fs.StringVar(&cfg.cluster, "cluster", "", "member cluster this gateway belongs to (node metadata CLUSTER_ID; required)")
	fs.StringVar(&cfg.network, "network", "", "network of the cluster (node metadata NETWORK; default: the cluster's, as Horizon knows it)")
	fs.StringVar(&cfg.id, "id", "", "node id (default gateway~<cluster>~<hostname>)")
	fs.StringVar(&cfg.listen, "listen", ":15443", "address for TLS from other networks")
	fs.StringVar(&cfg.httpAddress, "http-address", ":15021", "HTTP address for /metrics, /healthz and /readyz")
	fs.DurationVar(&cfg.drainTimeout, "drain-timeout", sni.DefaultDrainTimeout, "on shutdown, how long open connections may finish before they are closed")
	fs.DurationVar(&cfg.helloTimeout, "hello-timeout", sni.DefaultHelloTimeout, "close a connection whose TLS ClientHello has not arrived in this time")
	fs.DurationVar(&cfg.connectTimeout, "connect-timeout", sni.DefaultConnectTimeout, "timeout of each attempt to connect to an endpoint")
	fs.IntVar(&cfg.maxConns, "max-connections", sni.DefaultMaxConns, "connections open at once; more are refused")
	fs.StringVar(&cfg.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&cfg.logFormat, "log-format", "text", "text or json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("gateway: unexpected arguments %q", fs.Args())
	}
	if cfg.cluster == "" {
		return errors.New("gateway: --cluster is required")
	}
	log, err := newLogger(stderr, cfg.logLevel, cfg.logFormat)
	if err != nil {
		return err
	}
	node, err := gatewayNode(cfg)
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	proxy := sni.New(sni.Options{
		Logger: log, Metrics: sni.NewMetrics(reg),
		HelloTimeout: cfg.helloTimeout, ConnectTimeout: cfg.connectTimeout,
		MaxConns: cfg.maxConns, DrainTimeout: cfg.drainTimeout,
	})
	creds := insecure.NewCredentials()
	if cfg.certDir != "" {
		tlsConf, err := svidDirClientTLS(cfg.certDir, cfg.trustDomain, cfg.serverID)
		if err != nil {
			return err
		}
		creds = credentials.NewTLS(tlsConf)
	} else {
		log.Warn("xDS from Horizon in plaintext: for local development only", "address", cfg.xdsAddress)
	}
	conn, err := grpc.NewClient(cfg.xdsAddress,
		grpc.WithTransportCredentials(creds),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	)
	if err != nil {
		return fmt.Errorf("--xds-address: %w", err)
	}
	defer conn.Close()
	ads := &adsClient{Conn: conn, Node: node, Logger: log, Metrics: newADSMetrics(reg), Apply: proxy.SetTable}

	lis, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("gateway listener: %w", err)
	}
	httpLis, err := net.Listen("tcp", cfg.httpAddress)
	if err != nil {
		lis.Close()
		return fmt.Errorf("http listener: %w", err)
	}
	var draining atomic.Bool
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		switch {
		case draining.Load():
			http.Error(w, "draining", http.StatusServiceUnavailable)
		case !ads.Ready():
			http.Error(w, "no routing table from xDS yet", http.StatusServiceUnavailable)
		default:
			w.Write([]byte("ok\n"))
		}
	})
	httpServer := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	fmt.Fprintf(stdout, "Horizon gateway for cluster %s (node %s)\n  TLS by SNI  %s\n  xDS         %s (ADS, plaintext)\n  HTTP        http://%s/metrics  /healthz  /readyz\n",
		cfg.cluster, node.GetId(), lis.Addr().String(), cfg.xdsAddress, httpLis.Addr().String())

	g, gctx := errgroup.WithContext(ctx)
	proxyDone := make(chan struct{})
	g.Go(func() error { return ads.Run(gctx) })
	g.Go(func() error {
		defer close(proxyDone)
		return proxy.Serve(gctx, lis)
	})
	g.Go(func() error {
		if err := httpServer.Serve(httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		draining.Store(true)
		log.Info("shutting down: draining connections", "timeout", cfg.drainTimeout)
		<-proxyDone // /readyz answers "draining" while connections finish
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return httpServer.Shutdown(sctx)
	})
	return g.Wait()
}

// gatewayNode is the node a gateway presents: the metadata contract of
// xds.ParseNode, with ROLE=gateway.
func gatewayNode(cfg gatewayConfig) (*core.Node, error) {
	id := cfg.id
	if id == "" {
		host, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("--id not given and no hostname: %w", err)
		}
		id = string(xds.Gateway) + "~" + cfg.cluster + "~" + host
	}
	meta := map[string]any{xds.MetaClusterID: cfg.cluster, xds.MetaRole: string(xds.Gateway)}
	if cfg.network != "" {
		meta[xds.MetaNetwork] = cfg.network
	}
	md, err := structpb.NewStruct(meta)
	if err != nil {
		return nil, err
	}
	node := &core.Node{Id: id, Metadata: md, UserAgentName: "horizon-gateway"}
	if _, err := xds.ParseNode(node); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	return node, nil
}

// adsMetrics are the gateway's xDS client metrics.
type adsMetrics struct {
	responses *prometheus.CounterVec
	connected prometheus.Gauge
}

func newADSMetrics(reg prometheus.Registerer) *adsMetrics {
	m := &adsMetrics{
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "horizon_gateway_xds_responses_total", Help: "xDS responses received, by type (lds, cds, eds, other) and result (ack, nack).",
		}, []string{"type", "result"}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "horizon_gateway_xds_connected", Help: "1 while the ADS stream to Horizon is open.",
		}),
	}
	reg.MustRegister(m.responses, m.connected)
	return m
}

func (m *adsMetrics) response(typeURL, result string) {
	if m != nil {
		m.responses.WithLabelValues(shortType(typeURL), result).Inc()
	}
}

func (m *adsMetrics) setConnected(up bool) {
	if m != nil {
		v := 0.0
		if up {
			v = 1
		}
		m.connected.Set(v)
	}
}

func shortType(typeURL string) string {
	switch typeURL {
	case resource.ListenerType:
		return "lds"
	case resource.ClusterType:
		return "cds"
	case resource.EndpointType:
		return "eds"
	}
	return "other"
}

// Backoff between ADS streams.
const (
	adsBackoffMin = 500 * time.Millisecond
	adsBackoffMax = 30 * time.Second
)

// adsClient keeps a routing table in step with Horizon over one ADS stream
// (state of the world): LDS and CDS by wildcard, EDS for the clusters CDS
// names. A response it cannot use is NACKed and changes nothing: the last
// good table keeps routing, across reconnects too.
type adsClient struct {
	Conn    grpc.ClientConnInterface
	Node    *core.Node
	Logger  *slog.Logger
	Metrics *adsMetrics
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
func (c *adsClient) Ready() bool { return c.ready.Load() }

// Run keeps an ADS stream open until ctx is done, reconnecting with
// exponential backoff and jitter.
func (c *adsClient) Run(ctx context.Context) error {
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
		c.Logger.Warn("xDS stream ended; reconnecting", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		backoff = min(2*backoff, adsBackoffMax)
	}
}

// stream runs one ADS stream; got says whether any response arrived.
func (c *adsClient) stream(ctx context.Context) (got bool, err error) {
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
			return false, fmt.Errorf("send %s request: %w", shortType(typeURL), err)
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
				return got, fmt.Errorf("send %s request: %w", shortType(req.GetTypeUrl()), err)
			}
		}
	}
}

// request is a subscription request for typeURL at the last accepted
// version; a non-nil nack makes it a NACK.
func (c *adsClient) request(typeURL, nonce string, nack error) *discoverygrpc.DiscoveryRequest {
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
func (c *adsClient) handle(resp *discoverygrpc.DiscoveryResponse) []*discoverygrpc.DiscoveryRequest {
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
		c.Logger.Warn("xDS response rejected; keeping the last good table", "type", shortType(typeURL), "version", resp.GetVersionInfo(), "err", err)
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
func (c *adsClient) accept(resp *discoverygrpc.DiscoveryResponse) error {
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

// edsServiceNames are the assignment names the clusters need, sorted.
func edsServiceNames(clusters map[string]*clusterv3.Cluster) []string {
	var names []string
	for _, c := range clusters {
		if c.GetType() == clusterv3.Cluster_EDS {
			names = append(names, edsName(c))
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

func edsName(c *clusterv3.Cluster) string {
	if n := c.GetEdsClusterConfig().GetServiceName(); n != "" {
		return n
	}
	return c.GetName()
}

// rebuild computes the table from the accepted state and applies it when it
// changed; readiness comes with the first complete one.
func (c *adsClient) rebuild() {
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

// listenerRoutes reads a listener's SNI → cluster routes: every filter chain
// that matches server names and ends in a tcp_proxy to one cluster. Chains
// without server names or without tcp_proxy route nothing here; a tcp_proxy
// that cannot be read, weighted clusters, or one name matched by two chains
// make the listener unusable.
func listenerRoutes(l *listener.Listener) (map[string]string, error) {
	routes := map[string]string{}
	for i, fc := range l.GetFilterChains() {
		names := fc.GetFilterChainMatch().GetServerNames()
		if len(names) == 0 {
			continue
		}
		var target string
		for _, f := range fc.GetFilters() {
			tc := f.GetTypedConfig()
			if f.GetName() != wellknown.TCPProxy && (tc == nil || !strings.HasSuffix(tc.GetTypeUrl(), "tcp_proxy.v3.TcpProxy")) {
				continue
			}
			var tp tcpproxy.TcpProxy
			if tc == nil {
				return nil, fmt.Errorf("listener %q: filter chain %d: tcp_proxy without typed config", l.GetName(), i)
			}
			if err := tc.UnmarshalTo(&tp); err != nil {
				return nil, fmt.Errorf("listener %q: filter chain %d: tcp_proxy: %w", l.GetName(), i, err)
			}
			if tp.GetCluster() == "" {
				return nil, fmt.Errorf("listener %q: filter chain %d: tcp_proxy without a single cluster (weighted clusters are not supported)", l.GetName(), i)
			}
			target = tp.GetCluster()
			break
		}
		if target == "" {
			continue
		}
		for _, n := range names {
			n = strings.ToLower(n)
			if strings.HasPrefix(n, "*") {
				continue // wildcards: the table matches exact names only
			}
			if prev, ok := routes[n]; ok && prev != target {
				return nil, fmt.Errorf("listener %q: server name %q matched by two filter chains", l.GetName(), n)
			}
			routes[n] = target
		}
	}
	return routes, nil
}

// gatewayTable is the routing table of the accepted resources, pure: for each
// server name a listener routes, the usable endpoints of its cluster. When
// listeners disagree on a name, the first listener by name wins. Names whose
// cluster is unknown or has no usable endpoint are left out (refused as
// unknown_sni until their endpoints arrive).
func gatewayTable(listeners map[string]*listener.Listener, clusters map[string]*clusterv3.Cluster, assignments map[string]*endpoint.ClusterLoadAssignment) sni.Table {
	table := sni.Table{}
	for _, name := range slices.Sorted(maps.Keys(listeners)) {
		routes, err := listenerRoutes(listeners[name])
		if err != nil {
			continue // not accepted in the first place
		}
		for server, clusterName := range routes {
			if _, ok := table[server]; ok {
				continue
			}
			c, ok := clusters[clusterName]
			if !ok {
				continue
			}
			var cla *endpoint.ClusterLoadAssignment
			switch c.GetType() {
			case clusterv3.Cluster_EDS:
				cla = assignments[edsName(c)]
			case clusterv3.Cluster_STATIC, clusterv3.Cluster_STRICT_DNS, clusterv3.Cluster_LOGICAL_DNS:
				cla = c.GetLoadAssignment()
			}
			if addrs := usableEndpoints(cla); len(addrs) > 0 {
				table[server] = addrs
			}
		}
	}
	return table
}

// usableEndpoints are the addresses of the healthy or unknown-health
// endpoints of the assignment's best priority that has any, in order,
// without duplicates. Weights are not used: the gateway balances round robin.
func usableEndpoints(cla *endpoint.ClusterLoadAssignment) []string {
	byPriority := map[uint32][]string{}
	for _, le := range cla.GetEndpoints() {
		for _, lb := range le.GetLbEndpoints() {
			switch lb.GetHealthStatus() {
			case core.HealthStatus_UNKNOWN, core.HealthStatus_HEALTHY:
			default:
				continue
			}
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			port, ok := sa.GetPortSpecifier().(*core.SocketAddress_PortValue)
			if sa == nil || !ok || sa.GetAddress() == "" {
				continue
			}
			addr := net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(port.PortValue)))
			p := le.GetPriority()
			if !slices.Contains(byPriority[p], addr) {
				byPriority[p] = append(byPriority[p], addr)
			}
		}
	}
	if len(byPriority) == 0 {
		return nil
	}
	return byPriority[slices.Min(slices.Collect(maps.Keys(byPriority)))]
}

// svidDirClientTLS is the gateway's mutual TLS to Horizon from --cert-dir,
// checking Horizon's SPIFFE ID (--xds-server-id, default
// spiffe://<--trust-domain>/ns/horizon-system/sa/horizon).
func svidDirClientTLS(dir, trustDomain, serverID string) (*tls.Config, error) {
	td, err := spiffeid.TrustDomainFromString(trustDomain)
	if err != nil {
		return nil, fmt.Errorf("--trust-domain: %w", err)
	}
	want, err := spiffeid.FromSegments(td, "ns", "horizon-system", "sa", "horizon")
	if serverID != "" {
		want, err = spiffeid.FromString(serverID)
	}
	if err != nil {
		return nil, fmt.Errorf("--xds-server-id: %w", err)
	}
	conf, err := tlsfiles.SVIDDirClient(dir, td, want)
	if err != nil {
		return nil, fmt.Errorf("--cert-dir: %w", err)
	}
	return conf, nil
}
