package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
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
	"github.com/horizonmesh/horizon/discovery/resolve"
	"github.com/horizonmesh/horizon/examples/local"
	"github.com/horizonmesh/horizon/gateway/health"
	"github.com/horizonmesh/horizon/internal/connguard"
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
	xdsAddressSet        bool // --xds-address was given
	plaintextRemote      bool
	debugMTLSAddress     string
	debugAdmins          []string
	identityClusters     []string
	gatewayIdentities    []string
	maxViews             int
	maxResponseBytes     int
	limits               connguard.Limits // of each gRPC port; zero fields take the defaults
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
	injector             injectorConfig
	workloads            workloadsConfig
}

// run runs `horizon serve`: the control plane, until ctx ends.
func (cfg serveConfig) run(ctx context.Context, stdout, stderr io.Writer) error {
	log, err := newLogger(stderr, cfg.logLevel, cfg.logFormat)
	if err != nil {
		return err
	}
	routeKlog(log)
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
	trust, err := cfg.trust(td)
	if err != nil {
		return err
	}
	srv := server.New(ctx, server.Options{Logger: log, Metrics: xm, Policy: policy, Debounce: cfg.debounce, AwaitPolicyFile: cfg.policy != "", Trust: trust, MaxViews: cfg.maxViews, MaxResponseBytes: cfg.maxResponseBytes})

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
	stages.Resolve = &resolve.Options{Logger: log.With("component", "external-dns"), Metrics: resolve.NewMetrics(reg)}
	var latest atomic.Pointer[discovery.ClusterSet] // the MCS controller's: every gateway, probed or not
	if cfg.kube.enabled() || cfg.injector.enabled() {
		stages.Observers = append(stages.Observers, func(cs *discovery.ClusterSet) { latest.Store(cs) })
	}
	wl, err := setupWorkloads(cfg.workloads, &cfg.kube, reg, log)
	if err != nil {
		return err
	}
	stages.Workloads = wl.registry
	pipe := pipeline.New(stages)

	var watcher *file.Watcher
	var source *kube.Source
	var secrets *kube.SecretWatcher
	var controller *mcs.Controller
	var summary func(w io.Writer)
	switch {
	case cfg.kube.enabled() && cfg.clusterSet != "":
		return errors.New("serve: --clusterset and Kubernetes members exclude each other (workload groups and VM networks beside members go in --workloads)")
	case cfg.kube.enabled():
		k, err := cfg.kube.sources(log, reg, td.Name(), pipe.Publish, latest.Load)
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
			merged, err := wl.registry.Merge(cs)
			if merged == nil {
				return fmt.Errorf("workloads: %w", err)
			}
			pol, err := loadPolicy(cfg.policy, merged)
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

	port, err := mtlsSetup(ctx, cfg, td, source, reg, log)
	if err != nil {
		return err
	}
	defer port.close()
	srv.SetBundles(port.bundles)
	if err := wl.api(port, td, cfg.identity.svidTTL, trust.Gateways, log); err != nil {
		return err
	}
	plainAddr, err := cfg.plaintextAddress(port.conf != nil)
	if err != nil {
		return err
	}
	if plainAddr == "" && port.conf == nil {
		return errors.New("nothing to serve xDS on: --xds-address is empty and no mutual-TLS source (--ca-dir, --spire-socket, --tls-cert) is configured")
	}
	if cfg.debugMTLSAddress != "" && (port.conf == nil || len(cfg.debugAdmins) == 0) {
		return errors.New("--debug-mtls-address needs the mutual-TLS port's identity (--ca-dir, --spire-socket or --tls-cert) and at least one --debug-admin-id")
	}

	inj, err := setupInjector(cfg, port, td, &latest, source, reg, log)
	if err != nil {
		return err
	}
	var listeners []net.Listener
	if inj != nil {
		listeners = append(listeners, inj.lis)
	}
	listen := func(what, addr string) (net.Listener, error) {
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range listeners {
				l.Close()
			}
			return nil, fmt.Errorf("%s listener: %w", what, err)
		}
		listeners = append(listeners, lis)
		return lis, nil
	}
	var xdsLis, mtlsLis, debugLis net.Listener
	if plainAddr != "" {
		if xdsLis, err = listen("xds", plainAddr); err != nil {
			return err
		}
		if isLoopback(plainAddr) {
			log.Info("plaintext xDS on loopback: for local development; proxies' identities are not verified", "address", xdsLis.Addr().String())
		} else {
			log.Warn("plaintext xDS beyond loopback (--plaintext-remote): any client that reaches it gets any cluster's view", "address", xdsLis.Addr().String())
		}
	}
	httpLis, err := listen("http", cfg.httpAddress)
	if err != nil {
		return err
	}
	if port.conf != nil {
		if mtlsLis, err = listen("mtls", cfg.mtlsAddress); err != nil {
			return err
		}
	}
	if cfg.debugMTLSAddress != "" {
		if debugLis, err = listen("debug mtls", cfg.debugMTLSAddress); err != nil {
			return err
		}
	}

	// Each port is guarded (internal/connguard): connections in total and
	// per source, TLS handshakes, streams per connection, new streams per
	// second, message sizes, rapid reset.
	grpcOpts := server.GRPCOptions(cfg.sendTimeout, xm)
	gm := connguard.NewMetrics(reg)
	var grpcServer, mtlsServer *grpc.Server
	if xdsLis != nil {
		g := connguard.New(connguard.Config{Port: "plaintext", Limits: cfg.limits, Metrics: gm, Logger: log.With("port", "plaintext")})
		grpcServer = grpc.NewServer(slices.Concat(grpcOpts, g.ServerOptions())...)
		xdsLis = g.Listener(xdsLis)
		srv.Register(grpcServer)
	}
	if mtlsLis != nil {
		g := connguard.New(connguard.Config{Port: "mtls", Creds: credentials.NewTLS(port.conf), Limits: cfg.limits, Metrics: gm, Logger: log.With("port", "mtls")})
		mtlsServer = grpc.NewServer(slices.Concat(grpcOpts, g.ServerOptions())...)
		mtlsLis = g.Listener(mtlsLis)
		srv.Register(mtlsServer)
		if port.register != nil {
			port.register(mtlsServer)
		}
		if wl.register != nil {
			wl.register(mtlsServer)
		}
	}
	mux, debug := newHTTPHandler(srv, watcher, source, pipe.Prober(), reg)
	handleMCSDebug(debug, controller)
	wl.handleDebug(debug)
	if policyWatcher != nil {
		debug.Handle("GET /debug/policy", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, policyWatcher.Status())
		}))
	}
	httpServer := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
	}
	var debugServer *http.Server
	if debugLis != nil {
		debugServer = &http.Server{
			Handler:           adminOnly(debug, cfg.debugAdmins),
			TLSConfig:         debugTLS(port.conf),
			ReadHeaderTimeout: 5 * time.Second,
			MaxHeaderBytes:    16 << 10,
		}
	}

	fmt.Fprintf(stdout, "Horizon is serving\n")
	if xdsLis != nil {
		fmt.Fprintf(stdout, "  xDS (ADS, plaintext, dev only)  %s\n", xdsLis.Addr().String())
	}
	if mtlsLis != nil {
		fmt.Fprintf(stdout, "  xDS (ADS, mutual TLS)           %s\n", mtlsLis.Addr().String())
		if port.register != nil {
			fmt.Fprintf(stdout, "  certificate API (mutual TLS)    %s\n", mtlsLis.Addr().String())
		}
		if wl.register != nil {
			fmt.Fprintf(stdout, "  workload API (VMs, mutual TLS)  %s\n", mtlsLis.Addr().String())
		}
	}
	fmt.Fprintf(stdout, "  HTTP                            http://%s/metrics  /healthz  /readyz  /debug/ (loopback)\n", httpLis.Addr().String())
	if debugLis != nil {
		fmt.Fprintf(stdout, "  /debug/ (mutual TLS, admins)    https://%s/debug/\n", debugLis.Addr().String())
	}
	if inj != nil {
		fmt.Fprintf(stdout, "  sidecar injector (webhook)      https://%s/inject/<cluster>\n", inj.lis.Addr().String())
	}
	fmt.Fprintln(stdout)
	summary(stdout)
	switch {
	case xdsLis != nil:
		fmt.Fprintf(stdout, "\nA proxyless gRPC client:\n  horizon bootstrap --role proxyless --cluster <cluster> --xds-address %s > bootstrap.json\n", dialable(xdsLis.Addr().String()))
		fmt.Fprintf(stdout, "  GRPC_XDS_BOOTSTRAP=bootstrap.json your-client xds:///<svc>.<ns>.svc.clusterset.local:<port>\n")
	case mtlsLis != nil:
		fmt.Fprintf(stdout, "\nA proxyless gRPC client, with the SVID 'horizon agent' keeps in <dir>:\n  horizon bootstrap --role proxyless --cluster <cluster> --mtls-address %s --cert-dir <dir> > bootstrap.json\n", dialable(mtlsLis.Addr().String()))
		fmt.Fprintf(stdout, "  GRPC_XDS_BOOTSTRAP=bootstrap.json GRPC_EXPERIMENTAL_XDS_MTLS_SPIFFE=true your-client xds:///<svc>.<ns>.svc.clusterset.local:<port>\n")
	}

	if watcher != nil {
		pipe.Add("clusterset file", watcher.Run)
	}
	if wl.watcher != nil {
		pipe.Add("workloads file", wl.watcher.Run)
	}
	if wl.crd != nil {
		pipe.Add("workload groups", wl.crd.Run)
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
	if inj != nil {
		for _, name := range slices.Sorted(maps.Keys(inj.tasks)) {
			pipe.Add(name, inj.tasks[name])
		}
	}
	if grpcServer != nil {
		pipe.Add("xds server", func(context.Context) error { return serveGRPC(grpcServer, xdsLis) })
	}
	if mtlsServer != nil {
		pipe.Add("mtls xds server", func(context.Context) error { return serveGRPC(mtlsServer, mtlsLis) })
	}
	pipe.Add("http server", func(context.Context) error {
		if err := httpServer.Serve(httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	if debugServer != nil {
		pipe.Add("debug server", func(context.Context) error {
			if err := debugServer.ServeTLS(debugLis, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
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
		if debugServer != nil {
			debugServer.Shutdown(sctx)
		}
		return httpServer.Shutdown(sctx)
	})
	return pipe.Run(ctx)
}

// trust is what binds the claims of mTLS streams to their credential, from
// the flags (the chain verification source is set once the mTLS port is).
func (cfg serveConfig) trust(td spiffeid.TrustDomain) (server.Trust, error) {
	var t server.Trust
	for _, s := range cfg.identityClusters {
		r, err := server.ParseClusterRule(s)
		if err != nil {
			return t, fmt.Errorf("--identity-cluster %w", err)
		}
		t.Clusters = append(t.Clusters, r)
	}
	t.Gateways = cfg.gatewayIdentities
	if len(t.Gateways) == 0 {
		t.Gateways = []string{"spiffe://" + td.Name() + "/ns/horizon-system/sa/horizon-eastwest"}
	}
	for _, p := range append(slices.Clone(t.Gateways), cfg.debugAdmins...) {
		if err := server.CheckIDPattern(p); err != nil {
			return t, err
		}
	}
	return t, nil
}

// serveGRPC serves a gRPC server until it is stopped.
func serveGRPC(gs *grpc.Server, lis net.Listener) error {
	if err := gs.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}
