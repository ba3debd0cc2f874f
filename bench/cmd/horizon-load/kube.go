package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/horizonmesh/horizon/bench/kube"
	"github.com/horizonmesh/horizon/bench/load"
)

// runKube is "horizon-load kube": the endpoint-change scenario through real
// member clusters (kube-apiserver and etcd each, from KUBEBUILDER_ASSETS or
// bin/k8s: `make kube-tools`), Horizon's Kubernetes Source and an
// in-process server.Server, with the fleet in a child process as for "run".
// It prints a markdown table, one row per mode.
func runKube(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kube", flag.ContinueOnError)
	fs.SetOutput(stderr)
	clusters := fs.Int("clusters", 2, "member clusters K, one network each (the last one's proxies are the control group)")
	services := fs.Int("services", 1, "services S, in every cluster")
	endpoints := fs.Int("endpoints", 10, "endpoints E per service, in every cluster")
	proxies := fs.Int("proxies", 100, "proxies P, spread over the clusters")
	changes := fs.Int("changes", 20, "changes, each an EndpointSlice update waited for before the next")
	modes := fs.String("mode", "sotw", "protocols, comma-separated: sotw, delta (each starts its own clusters)")
	conns := fs.Int("conns", 0, "gRPC connections the fleet shares (0: one per 50 proxies)")
	timeout := fs.Duration("timeout", 2*time.Minute, "longest wait for a sync or a change")
	verbose := fs.Bool("v", false, "log progress to stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("kube: unexpected arguments %q", fs.Args())
	}
	log := slog.New(slog.DiscardHandler)
	if *verbose {
		log = slog.New(slog.NewTextHandler(stderr, nil))
	}
	machine := load.Machine()
	var results []*kube.Result
	var errs []error
	for _, mode := range strings.Split(*modes, ",") {
		if mode != "sotw" && mode != "delta" {
			return fmt.Errorf("-mode %q: want sotw or delta", mode)
		}
		sc := kube.Scenario{
			Clusters: *clusters, Services: *services, Endpoints: *endpoints, Proxies: *proxies,
			Changes: *changes, Delta: mode == "delta", Conns: *conns, Timeout: *timeout,
		}
		log.Info("scenario", "mode", mode, "clusters", *clusters, "services", *services, "endpoints", *endpoints, "proxies", *proxies)
		r, err := kube.Run(ctx, sc, childFleet(stderr), log)
		if err != nil {
			errs = append(errs, fmt.Errorf("kube %s K=%d P=%d: %w", mode, *clusters, *proxies, err))
		}
		if r != nil {
			results = append(results, r)
		}
		if ctx.Err() != nil {
			return errors.Join(append(errs, ctx.Err())...)
		}
	}
	if err := kube.WriteTable(stdout, machine, results); err != nil {
		return err
	}
	return errors.Join(errs...)
}
