package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/certs/agent"
	"github.com/horizonmesh/horizon/xds"
)

// agentCommand runs `horizon agent`: it keeps a workload's SVID current in a
// directory that Envoy (static secrets with watched_directory) and grpc-go
// (file_watcher certificate provider) read.
func agentCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	address := fs.String("address", "", "Horizon's mutual-TLS address, host:port (required)")
	trustDomain := fs.String("trust-domain", xds.DefaultTrustDomain.Name(), "SPIFFE trust domain of the mesh")
	serverID := fs.String("server-id", "", "SPIFFE ID Horizon's certificate must carry (default spiffe://<trust domain>/ns/horizon-system/sa/horizon; \"any\" accepts any workload of the trust domain)")
	bundleFile := fs.String("ca-bundle", "", "PEM roots to verify Horizon with until it sends the current bundle (required unless --out already holds bundle.crt)")
	tokenFile := fs.String("token-file", "", "projected ServiceAccount token with Horizon's audience, read for each request (not needed to renew a valid SVID)")
	cluster := fs.String("cluster", "", "member cluster that issued the token")
	out := fs.String("out", "/etc/horizon/certs", "directory for svid.crt, svid.key and bundle.crt")
	ttl := fs.Duration("ttl", 0, "SVID lifetime to ask for (0: Horizon's default)")
	once := fs.Bool("once", false, "obtain an SVID (unless a valid one is in --out) and exit, e.g. in an init container")
	metricsAddr := fs.String("metrics-address", "", "serve /metrics here (e.g. 127.0.0.1:15020)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("agent: unexpected arguments %q", fs.Args())
	}
	if *address == "" {
		return errors.New("agent: --address is required")
	}
	log, err := newLogger(stderr, *logLevel, "text")
	if err != nil {
		return err
	}
	td, err := spiffeid.TrustDomainFromString(*trustDomain)
	if err != nil {
		return fmt.Errorf("--trust-domain: %w", err)
	}
	var sid spiffeid.ID
	switch *serverID {
	case "any":
	case "":
		sid, err = spiffeid.FromSegments(td, "ns", "horizon-system", "sa", "horizon")
	default:
		sid, err = spiffeid.FromString(*serverID)
	}
	if err != nil {
		return fmt.Errorf("--server-id: %w", err)
	}
	if *bundleFile == "" {
		*bundleFile = *out + "/" + certs.BundleFile
	}
	pem, err := os.ReadFile(*bundleFile)
	if err != nil {
		return fmt.Errorf("--ca-bundle: %w", err)
	}
	roots, err := certs.ParseCertificates(pem)
	if err != nil || len(roots) == 0 {
		return fmt.Errorf("--ca-bundle %s: no certificates (%v)", *bundleFile, err)
	}

	reg := prometheus.NewRegistry()
	a, err := agent.New(agent.Config{
		Address: *address, TrustDomain: td, ServerID: sid, Bundle: roots,
		TokenFile: *tokenFile, Cluster: *cluster, Dir: *out, TTL: *ttl,
		Log: log, Metrics: agent.NewMetrics(reg),
	})
	if err != nil {
		return err
	}
	if *once {
		if svid, err := a.GetX509SVID(); err == nil && time.Now().Before(a.RenewAt()) {
			fmt.Fprintf(stdout, "%s: %s is valid until %s\n", *out, svid.ID, svid.Certificates[0].NotAfter.UTC().Format(time.RFC3339))
			return nil
		}
		if err := a.Renew(ctx); err != nil {
			return err
		}
		svid, _ := a.GetX509SVID()
		fmt.Fprintf(stdout, "%s: %s until %s\n", *out, svid.ID, svid.Certificates[0].NotAfter.UTC().Format(time.RFC3339))
		return nil
	}
	if *metricsAddr != "" {
		lis, err := net.Listen("tcp", *metricsAddr)
		if err != nil {
			return fmt.Errorf("--metrics-address: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go hs.Serve(lis)
		defer hs.Close()
	}
	fmt.Fprintf(stdout, "horizon agent: keeping the SVID in %s current from %s\n", *out, *address)
	if err := a.Run(ctx); !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
