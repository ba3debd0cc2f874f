package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/certs/agent"
)

// agentConfig is what `horizon agent` is asked for.
type agentConfig struct {
	mtlsAddress, trustDomain, serverID string
	bundleFile, tokenFile, cluster     string
	certDir                            string // the directory of the SVID files
	ttl                                time.Duration
	once                               bool
	check                              bool
	metricsAddress                     string
	logLevel, logFormat                string
	vm                                 vmAgentConfig
}

// run runs `horizon agent`: it keeps a workload's SVID current in a
// directory that Envoy (static secrets with watched_directory) and grpc-go
// (file_watcher certificate provider) read.
func (cfg agentConfig) run(ctx context.Context, stdout, stderr io.Writer) error {
	if cfg.check {
		return checkSVID(cfg.certDir, time.Now(), stdout)
	}
	log, err := newLogger(stderr, cfg.logLevel, cfg.logFormat)
	if err != nil {
		return err
	}
	td, err := spiffeid.TrustDomainFromString(cfg.trustDomain)
	if err != nil {
		return fmt.Errorf("--trust-domain: %w", err)
	}
	var sid spiffeid.ID
	switch cfg.serverID {
	case "any":
	case "":
		sid, err = spiffeid.FromSegments(td, "ns", "horizon-system", "sa", "horizon")
	default:
		sid, err = spiffeid.FromString(cfg.serverID)
	}
	if err != nil {
		return fmt.Errorf("--xds-server-id: %w", err)
	}
	if cfg.bundleFile == "" {
		cfg.bundleFile = cfg.certDir + "/" + certs.BundleFile
	}
	pem, err := os.ReadFile(cfg.bundleFile)
	if err != nil {
		return fmt.Errorf("--ca-bundle: %w", err)
	}
	roots, err := certs.ParseCertificates(pem)
	if err != nil || len(roots) == 0 {
		return fmt.Errorf("--ca-bundle %s: no certificates (%v)", cfg.bundleFile, err)
	}

	reg := prometheus.NewRegistry()
	acfg := agent.Config{
		Address: cfg.mtlsAddress, TrustDomain: td, ServerID: sid, Bundle: roots,
		TokenFile: cfg.tokenFile, Cluster: cfg.cluster, Dir: cfg.certDir, TTL: cfg.ttl,
		Log: log, Metrics: agent.NewMetrics(reg),
	}
	if cfg.vm.enabled() {
		return cfg.vm.run(ctx, acfg, cfg.metricsAddress, reg, stdout)
	}
	a, err := agent.New(acfg)
	if err != nil {
		return err
	}
	if cfg.once {
		if svid, err := a.GetX509SVID(); err == nil && time.Now().Before(a.RenewAt()) {
			fmt.Fprintf(stdout, "%s: %s is valid until %s\n", cfg.certDir, svid.ID, svid.Certificates[0].NotAfter.UTC().Format(time.RFC3339))
			return nil
		}
		if err := a.Renew(ctx); err != nil {
			return err
		}
		svid, _ := a.GetX509SVID()
		fmt.Fprintf(stdout, "%s: %s until %s\n", cfg.certDir, svid.ID, svid.Certificates[0].NotAfter.UTC().Format(time.RFC3339))
		return nil
	}
	stop, err := serveAgentMetrics(cfg.metricsAddress, reg)
	if err != nil {
		return err
	}
	defer stop()
	fmt.Fprintf(stdout, "horizon agent: keeping the SVID in %s current from %s\n", cfg.certDir, cfg.mtlsAddress)
	if err := a.Run(ctx); !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// checkSVID is `horizon agent --check`: nil when dir holds an SVID valid
// at now (the agent's startup probe in injected pods).
func checkSVID(dir string, now time.Time, stdout io.Writer) error {
	pem, err := os.ReadFile(filepath.Join(dir, certs.SVIDFile))
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	chain, err := certs.ParseCertificates(pem)
	if err != nil || len(chain) == 0 {
		return fmt.Errorf("check: %s: no certificate (%v)", certs.SVIDFile, err)
	}
	leaf := chain[0]
	if now.Before(leaf.NotBefore) || !now.Before(leaf.NotAfter) {
		return fmt.Errorf("check: %s is not valid now (%s to %s)", certs.SVIDFile, leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if _, err := os.Stat(filepath.Join(dir, certs.SVIDKeyFile)); err != nil {
		return fmt.Errorf("check: %w", err)
	}
	fmt.Fprintf(stdout, "%s: valid until %s\n", dir, leaf.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// serveAgentMetrics serves reg's /metrics on addr ("" serves nothing)
// until stop.
func serveAgentMetrics(addr string, reg *prometheus.Registry) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-address: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(lis)
	return func() { hs.Close() }, nil
}
