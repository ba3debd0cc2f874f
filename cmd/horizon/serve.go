package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/horizonmesh/horizon/cmd/horizon/internal/pipeline"
	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/file"
	"github.com/horizonmesh/horizon/discovery/kube"
	"github.com/horizonmesh/horizon/discovery/kube/mcs"
	"github.com/horizonmesh/horizon/discovery/policyfile"
	"github.com/horizonmesh/horizon/examples/local"
	"github.com/horizonmesh/horizon/gateway/health"
	"github.com/horizonmesh/horizon/xds"
	"github.com/horizonmesh/horizon/xds/server"
)

type serveConfig struct {
	clusterSet           string
	xdsAddress           string
	httpAddress          string
	debounce             time.Duration
	sendTimeout          time.Duration
	trustDomain          string
	logLevel             string
	logFormat            string
	debugRemote          bool
	kube                 kubeConfig
	mtlsAddress          string
	tlsCert              string
	tlsKey               string
	tlsClientCA          string
	identity             identityConfig
	spireSocket          string
	svidSource           string
	gatewayProbeInterval time.Duration
	policy               string
}

// run runs `horizon serve`: the control plane, until ctx ends.
func (cfg serveConfig) run(ctx context.Context, stdout, stderr io.Writer) error {
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
	registerBuildInfo(reg)
	xm := server.NewMetrics(reg)
	fm := file.NewMetrics(reg)

	if cfg.svidSource == "" && cfg.spireSocket != "" {
		cfg.svidSource = string(xds.SVIDFromSPIRE)
	}
	provider, err := xds.ParseSVIDProvider(cfg.svidSource)
	if err != nil {
		return fmt.Errorf("--svid-provider: %w", err)
	}
	policy := xds.Policy{TrustDomain: td, SVIDProvider: provider}
	srv := server.New(ctx, server.Options{Logger: log, Metrics: xm, Policy: policy, Debounce: cfg.debounce, AwaitPolicyFile: cfg.policy != ""})

	// The pipeline takes every ClusterSet from the sources through the
	// policy file's topology check and gateway health to srv's views.
	stages := pipeline.Config{Views: srv}
	var policyWatcher *policyfile.Watcher
	if cfg.policy != "" {
		policyWatcher = &policyfile.Watcher{
			Path: cfg.policy, Logger: log.With("component", "policy"),
			OnUpdate: srv.SetPolicy, Metrics: policyfile.NewMetrics(reg),
		}
		stages.Policy = policyWatcher
	}
	if cfg.gatewayProbeInterval > 0 {
		stages.Health = &health.Options{
			Interval: cfg.gatewayProbeInterval,
			Logger:   log.With("component", "gateway-health"), Metrics: health.NewMetrics(reg),
		}
	}
	var latest atomic.Pointer[discovery.ClusterSet] // the MCS controller's: every gateway, probed or not
	if cfg.kube.enabled() {
		stages.Observers = append(stages.Observers, func(cs *discovery.ClusterSet) { latest.Store(cs) })
	}
	pipe := pipeline.New(stages)

	var watcher *file.Watcher
	var source *kube.Source
	var secrets *kube.SecretWatcher
	var controller *mcs.Controller
	var summary func(w io.Writer)
	switch {
	case cfg.kube.enabled() && cfg.clusterSet != "":
		return errors.New("serve: --clusterset and Kubernetes members exclude each other")
	case cfg.kube.enabled():
		k, err := cfg.kube.sources(log, reg, pipe.Publish, latest.Load)
		if err != nil {
			return err
		}
		source, secrets, controller = k.source, k.secrets, k.controller
		summary = func(w io.Writer) { printKubeSummary(w, cfg.kube) }
	default:
		var cs *discovery.ClusterSet
		source := cfg.clusterSet
		if cfg.clusterSet == "" {
			source = local.Name + " (embedded)"
		} else {
			watcher = &file.Watcher{Path: cfg.clusterSet, Logger: log, OnUpdate: pipe.Publish, Metrics: fm}
		}
		cs, err = loadClusterSet(cfg.clusterSet)
		if err != nil {
			return err
		}
		if policyWatcher != nil {
			// The first views carry the policy: check it now, so that a bad
			// file stops serve before anything listens. The watcher loads
			// the same version again and hands it over without a change.
			pol, err := loadPolicy(cfg.policy, cs)
			if err != nil {
				return err
			}
			srv.SetPolicy(pol) // Seed below renders with it
		}
		if err := pipe.Seed(cs); err != nil {
			return err
		}
		summary = func(w io.Writer) { printClusterSet(w, cs, source) }
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
	mtlsConf, registerCerts, closeIdentity, err := mtlsSetup(ctx, cfg, td, source, reg, log)
	if err != nil {
		xdsLis.Close()
		httpLis.Close()
		return err
	}
	defer closeIdentity()
	var mtlsLis net.Listener
	if mtlsConf != nil {
		if mtlsLis, err = net.Listen("tcp", cfg.mtlsAddress); err != nil {
			xdsLis.Close()
			httpLis.Close()
			return fmt.Errorf("mtls listener: %w", err)
		}
	}

	grpcOpts := server.GRPCOptions(cfg.sendTimeout, xm)
	grpcServer := grpc.NewServer(grpcOpts...)
	srv.Register(grpcServer)
	var mtlsServer *grpc.Server
	if mtlsLis != nil {
		mtlsServer = grpc.NewServer(append(grpcOpts, grpc.Creds(credentials.NewTLS(mtlsConf)))...)
		srv.Register(mtlsServer)
		if registerCerts != nil {
			registerCerts(mtlsServer)
		}
	}
	handler := newHTTPHandler(srv, watcher, source, pipe.Prober(), reg, cfg.debugRemote)
	if policyWatcher != nil {
		mux := http.NewServeMux()
		mux.Handle("/", handler)
		mux.Handle("GET /debug/policy", loopbackOnly(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, policyWatcher.Status())
		}), cfg.debugRemote))
		handler = mux
	}
	httpServer := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
	}

	fmt.Fprintf(stdout, "Horizon is serving\n  xDS (ADS, plaintext, dev only)  %s\n", xdsLis.Addr().String())
	if mtlsLis != nil {
		fmt.Fprintf(stdout, "  xDS (ADS, mutual TLS)           %s\n", mtlsLis.Addr().String())
		if registerCerts != nil {
			fmt.Fprintf(stdout, "  certificate API (mutual TLS)    %s\n", mtlsLis.Addr().String())
		}
	}
	fmt.Fprintf(stdout, "  HTTP                            http://%s/metrics  /healthz  /readyz  /debug/syncz  /debug/views\n\n", httpLis.Addr().String())
	summary(stdout)
	fmt.Fprintf(stdout, "\nA proxyless gRPC client:\n  horizon bootstrap --role proxyless --cluster <cluster> --xds-address %s > bootstrap.json\n", dialable(xdsLis.Addr().String()))
	fmt.Fprintf(stdout, "  GRPC_XDS_BOOTSTRAP=bootstrap.json your-client xds:///<svc>.<ns>.svc.clusterset.local:<port>\n")

	if watcher != nil {
		pipe.Add("clusterset file", watcher.Run)
	}
	if secrets != nil {
		pipe.Add("member secrets", secrets.Run)
	}
	if source != nil {
		pipe.Add("kubernetes members", func(ctx context.Context) error {
			// Members configured by Secrets count as configured at start: the
			// first ClusterSet waits for them too.
			if secrets != nil {
				select {
				case <-secrets.Synced():
				case <-ctx.Done():
					return nil
				}
			}
			return source.Run(ctx)
		})
	}
	if controller != nil {
		pipe.Add("mcs controller", controller.Run)
	}
	pipe.Add("xds server", func(context.Context) error { return serveGRPC(grpcServer, xdsLis) })
	if mtlsServer != nil {
		pipe.Add("mtls xds server", func(context.Context) error { return serveGRPC(mtlsServer, mtlsLis) })
	}
	pipe.Add("http server", func(context.Context) error {
		if err := httpServer.Serve(httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	pipe.Add("shutdown", func(ctx context.Context) error {
		<-ctx.Done()
		log.Info("shutting down")
		for _, gs := range []*grpc.Server{grpcServer, mtlsServer} {
			if gs == nil {
				continue
			}
			stopped := make(chan struct{})
			go func() { gs.GracefulStop(); close(stopped) }()
			select {
			case <-stopped:
			case <-time.After(5 * time.Second):
				gs.Stop()
			}
		}
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return httpServer.Shutdown(sctx)
	})
	return pipe.Run(ctx)
}

// serveGRPC serves a gRPC server until it is stopped.
func serveGRPC(gs *grpc.Server, lis net.Listener) error {
	if err := gs.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}
