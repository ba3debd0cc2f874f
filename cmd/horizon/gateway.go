package main

// `horizon gateway`: Horizon's own east-west gateway, for where Envoy is not
// available. It takes the same xDS as an Envoy gateway (a listener whose
// filter chains match SNIs and pass them to tcp_proxy clusters, the clusters,
// their assignments) over ADS, turns it into an SNI → endpoints table
// (gateway/proxy/ads), and forwards TLS connections by SNI without
// terminating them (gateway/proxy/sni). This file wires the two with the
// flags, the node, Horizon's connection and the HTTP endpoints.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/horizonmesh/horizon/certs/tlsfiles"
	"github.com/horizonmesh/horizon/gateway/proxy/ads"
	"github.com/horizonmesh/horizon/gateway/proxy/sni"
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
	maxPerSource   int
	logLevel       string
	logFormat      string
	certDir        string
	trustDomain    string
	serverID       string
}

// run runs `horizon gateway` until ctx ends, then drains.
func (cfg gatewayConfig) run(ctx context.Context, stdout, stderr io.Writer) error {
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
		MaxConns: cfg.maxConns, MaxConnsPerSource: cfg.maxPerSource, DrainTimeout: cfg.drainTimeout,
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
	client := &ads.Client{Conn: conn, Node: node, Logger: log, Metrics: ads.NewMetrics(reg), Apply: proxy.SetTable}

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
		case !client.Ready():
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
	g.Go(func() error { return client.Run(gctx) })
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
