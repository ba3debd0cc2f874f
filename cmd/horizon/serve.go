package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"k8s.io/client-go/kubernetes"

	"github.com/horizonmesh/horizon/cmd/horizon/internal/pipeline"
	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/file"
	"github.com/horizonmesh/horizon/discovery/kube"
	"github.com/horizonmesh/horizon/discovery/kube/mcs"
	"github.com/horizonmesh/horizon/examples/local"
	"github.com/horizonmesh/horizon/gateway/health"
	"github.com/horizonmesh/horizon/xds"
	"github.com/horizonmesh/horizon/xds/policyfile"
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
	xm := xds.NewMetrics(reg)
	fm := file.NewMetrics(reg)

	if cfg.svidSource == "" && cfg.spireSocket != "" {
		cfg.svidSource = string(xds.SVIDFromSPIRE)
	}
	provider, err := xds.ParseSVIDProvider(cfg.svidSource)
	if err != nil {
		return fmt.Errorf("--svid-provider: %w", err)
	}
	policy := xds.Policy{TrustDomain: td, SVIDProvider: provider}
	srv := xds.NewServer(ctx, xds.Options{Logger: log, Metrics: xm, Policy: policy, Debounce: cfg.debounce, AwaitPolicyFile: cfg.policy != ""})

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
		members, err := cfg.kube.memberConfigs()
		if err != nil {
			return err
		}
		var cp kubernetes.Interface
		if cfg.kube.secretsNamespace != "" || cfg.kube.kubeconfig != "" || os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
			if cp, err = cfg.kube.controlPlane(); err != nil {
				return err
			}
		}
		var onChange func()
		if cfg.kube.mcs {
			alloc, err := mcs.NewAllocator(strings.Split(cfg.kube.clusterSetCIDRs, ",")...)
			if err != nil {
				return fmt.Errorf("--clusterset-cidrs: %w", err)
			}
			election := mcs.Election{Namespace: cfg.kube.leaseNamespace}
			if cp != nil {
				election.Client = cp.CoordinationV1()
			} else {
				log.Warn("no control plane cluster: the MCS controller writes without leader election; run a single replica")
			}
			controller, err = mcs.New(mcs.Config{
				Members: func() []mcs.Member { return mcsMembers(source) }, ClusterSet: latest.Load, Allocator: alloc,
				Election: election, Logger: log, Metrics: mcs.NewMetrics(reg),
			})
			if err != nil {
				return err
			}
			onChange = controller.Notify
		}
		source = kube.NewSource(kube.SourceOptions{
			Logger: log, Metrics: kube.NewMetrics(reg), StaleTTL: cfg.kube.staleTTL, OnChange: onChange,
			OnUpdate: pipe.Publish, // the observers keep latest for the MCS controller
		})
		reserved := map[string]bool{}
		for _, m := range members {
			reserved[m.Name] = true
			if err := source.Set(m); err != nil {
				return err
			}
		}
		if cfg.kube.secretsNamespace != "" {
			secrets = &kube.SecretWatcher{
				Kube: cp, Namespace: cfg.kube.secretsNamespace, Members: flagMembers{Members: source, reserved: reserved},
				AllowPlugins: cfg.kube.allowPlugins, Logger: log, Metrics: kube.NewSecretMetrics(reg),
			}
		}
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

	grpcOpts := xds.ServerOptions(cfg.sendTimeout, xm)
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

// loadPolicy reads and checks a policy file against a ClusterSet's topology,
// as serve does before it listens (its watcher, on every reload, too): the
// one way view and explain read their --policy.
func loadPolicy(path string, cs *discovery.ClusterSet) (*policyfile.Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--policy: %w", err)
	}
	pol, err := policyfile.Parse(path, data, policyfile.TopologyOf(cs))
	if err != nil {
		return nil, fmt.Errorf("--policy: %w", err)
	}
	return pol, nil
}

// loadClusterSet reads a ClusterSet file, or the embedded example for "",
// as serve does at start: how view and explain take --clusterset.
func loadClusterSet(path string) (*discovery.ClusterSet, error) {
	if path == "" {
		return file.Parse(local.Name, local.ClusterSet)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return file.Parse(path, data)
}

// printClusterSet tells a new user, on one screen, what is being served.
func printClusterSet(w io.Writer, cs *discovery.ClusterSet, source string) {
	var b strings.Builder
	fmt.Fprintf(&b, "ClusterSet %s (version %s)\n", source, cs.Version())
	for _, network := range cs.Networks() {
		fmt.Fprintf(&b, "network %s\n", network)
		for _, c := range cs.Clusters {
			if c.Network != network {
				continue
			}
			gws := make([]string, 0, len(c.Gateways))
			for _, g := range c.Gateways {
				if g.ForNetwork != "" {
					gws = append(gws, g.String()+" (for network "+g.ForNetwork+")")
					continue
				}
				gws = append(gws, g.String())
			}
			gw := strings.Join(gws, ", ")
			if gw == "" {
				gw = "none (unreachable from other networks)"
			}
			loc := c.Locality.Region
			if c.Locality.Zone != "" {
				loc += "/" + c.Locality.Zone
			}
			fmt.Fprintf(&b, "  cluster %-12s %-28s gateway %s\n", c.Name, loc, gw)
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
	fmt.Fprint(w, b.String())
}

func printKubeSummary(w io.Writer, k kubeConfig) {
	fmt.Fprintln(w, "Kubernetes member clusters (xDS is served once every one has synced; see /debug/members)")
	for _, m := range k.members {
		fmt.Fprintf(w, "  %-12s network %-12s kubeconfig %s\n", m.name, m.network, m.kubeconfig)
	}
	if k.secretsNamespace != "" {
		fmt.Fprintf(w, "  and every member-cluster Secret in namespace %s\n", k.secretsNamespace)
	}
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
