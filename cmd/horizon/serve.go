package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/file"
	"github.com/horizonmesh/horizon/examples/local"
	"github.com/horizonmesh/horizon/xds"
)

type serveConfig struct {
	clusterSet  string
	xdsAddress  string
	httpAddress string
	debounce    time.Duration
	trustDomain string
	logLevel    string
	logFormat   string
	debugRemote bool
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg serveConfig
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.clusterSet, "clusterset", "", "ClusterSet YAML file to serve and watch (default: the embedded "+local.Name+")")
	fs.StringVar(&cfg.xdsAddress, "xds-address", ":15010", "plaintext xDS gRPC address (local development only)")
	fs.StringVar(&cfg.httpAddress, "http-address", ":15014", "HTTP address for /metrics, /healthz, /readyz and /debug/")
	fs.DurationVar(&cfg.debounce, "debounce", xds.DefaultDebounce, "how long a change waits for others before views are rendered")
	fs.StringVar(&cfg.trustDomain, "trust-domain", xds.DefaultTrustDomain.Name(), "SPIFFE trust domain of the mesh")
	fs.StringVar(&cfg.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&cfg.logFormat, "log-format", "text", "text or json")
	fs.BoolVar(&cfg.debugRemote, "debug-remote", false, "serve /debug/ to non-loopback clients too")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected arguments %q", fs.Args())
	}
	log, err := newLogger(stderr, cfg.logLevel, cfg.logFormat)
	if err != nil {
		return err
	}
	td, err := spiffeid.TrustDomainFromString(cfg.trustDomain)
	if err != nil {
		return fmt.Errorf("--trust-domain: %w", err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	xm := xds.NewMetrics(reg)
	fm := file.NewMetrics(reg)

	srv := xds.NewServer(ctx, xds.Options{Logger: log, Metrics: xm, Policy: xds.Policy{TrustDomain: td}, Debounce: cfg.debounce})

	var watcher *file.Watcher
	var cs *discovery.ClusterSet
	source := cfg.clusterSet
	if cfg.clusterSet == "" {
		source = local.Name + " (embedded)"
		cs, err = file.Parse(local.Name, local.ClusterSet)
	} else {
		watcher = &file.Watcher{Path: cfg.clusterSet, Logger: log, OnUpdate: srv.Update, Metrics: fm}
		cs, err = watcher.Load()
	}
	if err != nil {
		return err
	}
	if err := srv.Apply(cs); err != nil {
		return fmt.Errorf("initial ClusterSet: %w", err)
	}

	xdsLis, err := net.Listen("tcp", cfg.xdsAddress)
	if err != nil {
		return fmt.Errorf("xds listener: %w", err)
	}
	httpLis, err := net.Listen("tcp", cfg.httpAddress)
	if err != nil {
		xdsLis.Close()
		return fmt.Errorf("http listener: %w", err)
	}
	log.Warn("xDS is served in plaintext: for local development only; proxies' identities are not verified", "address", xdsLis.Addr().String())

	grpcServer := grpc.NewServer(
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	)
	srv.Register(grpcServer)
	httpServer := &http.Server{
		Handler:           newHTTPHandler(srv, watcher, reg, cfg.debugRemote),
		ReadHeaderTimeout: 5 * time.Second,
	}

	printSummary(stdout, cs, source, xdsLis.Addr().String(), httpLis.Addr().String())

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Run(gctx) })
	if watcher != nil {
		g.Go(func() error { return watcher.Run(gctx) })
	}
	g.Go(func() error {
		if err := grpcServer.Serve(xdsLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("xds server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := httpServer.Serve(httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		log.Info("shutting down")
		stopped := make(chan struct{})
		go func() { grpcServer.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			grpcServer.Stop()
		}
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return httpServer.Shutdown(sctx)
	})
	return g.Wait()
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// printSummary tells a new user, on one screen, what is being served.
func printSummary(w io.Writer, cs *discovery.ClusterSet, source, xdsAddr, httpAddr string) {
	var b strings.Builder
	fmt.Fprintf(&b, "Horizon is serving %s (version %s)\n", source, cs.Version())
	fmt.Fprintf(&b, "  xDS (ADS, plaintext, dev only)  %s\n", xdsAddr)
	fmt.Fprintf(&b, "  HTTP                            http://%s/metrics  /healthz  /readyz  /debug/syncz  /debug/views\n\n", httpAddr)
	for _, network := range cs.Networks() {
		fmt.Fprintf(&b, "network %s\n", network)
		for _, c := range cs.Clusters {
			if c.Network != network {
				continue
			}
			gws := make([]string, 0, len(c.Gateways))
			for _, g := range c.Gateways {
				gws = append(gws, g.String())
			}
			gw := strings.Join(gws, ", ")
			if gw == "" {
				gw = "none (unreachable from other networks)"
			}
			fmt.Fprintf(&b, "  cluster %-12s %-28s gateway %s\n", c.Name, c.Locality.Region+"/"+c.Locality.Zone, gw)
			for _, s := range c.Services {
				ready := 0
				for _, e := range s.Endpoints {
					if e.Ready {
						ready++
					}
				}
				exported := "local"
				if s.Exported {
					exported = "exported"
				}
				fmt.Fprintf(&b, "    %-28s %-8s %d/%d endpoints ready\n", s.Key(), exported, ready, len(s.Endpoints))
			}
		}
	}
	fmt.Fprintf(&b, "\nA proxyless gRPC client in cluster %s:\n", firstCluster(cs))
	fmt.Fprintf(&b, "  horizon bootstrap --role proxyless --cluster %s --xds-address %s > bootstrap.json\n", firstCluster(cs), dialable(xdsAddr))
	fmt.Fprintf(&b, "  GRPC_XDS_BOOTSTRAP=bootstrap.json your-client xds:///<svc>.<ns>.svc.clusterset.local:<port>\n")
	fmt.Fprint(w, b.String())
}

func firstCluster(cs *discovery.ClusterSet) string {
	if len(cs.Clusters) == 0 {
		return "<cluster>"
	}
	return cs.Clusters[0].Name
}

// dialable turns a listen address into one a local client can dial.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
