// Command horizon-scale runs the scale issue's target matrix (bench/scale)
// with one or two horizon-load binaries and prints the tables of
// bench/RESULTS.md's "Scale (issue 21)" section.
//
//	horizon-scale run -before OLD [-after NEW] [-quick] [-out FILE]
//	    run every row, each protocol, before and after interleaved; write
//	    the raw output to FILE (default bench/results/scale-<time>.txt)
//	    and print the markdown tables
//	horizon-scale report FILE
//	    the tables again from a raw output
//	horizon-scale extrapolate [flags] FILE
//	    what one replica needs for a large mesh, from a raw output's figures
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/horizonmesh/horizon/bench/scale"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "horizon-scale:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: horizon-scale run|report|extrapolate [flags] (-h for flags)")
	}
	switch args[0] {
	case "run":
		return runMatrix(ctx, args[1:], stdout, stderr)
	case "report":
		fs := flag.NewFlagSet("report", flag.ContinueOnError)
		fs.SetOutput(stderr)
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		fig, err := readFigures(fs.Args())
		if err != nil {
			return err
		}
		return report(stdout, fig, scale.DefaultMesh())
	case "extrapolate":
		return extrapolate(args[1:], stdout, stderr)
	}
	return fmt.Errorf("unknown command %q: want run, report or extrapolate", args[0])
}

func runMatrix(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	before := fs.String("before", "", "horizon-load built from the tree before the change")
	after := fs.String("after", "", "horizon-load built from the tree after it (optional)")
	benchBefore := fs.String("bench-before", "", "optional: `go test -c ./bench/` of the tree before, for BenchmarkTranslate")
	benchAfter := fs.String("bench-after", "", "optional: the same, after")
	quick := fs.Bool("quick", false, "tiny rows: a smoke check of the tooling, nothing measured")
	modes := fs.String("modes", "sotw,delta", "protocols, comma-separated")
	rows := fs.String("rows", "", "only these rows, comma-separated (default: all)")
	out := fs.String("out", "", "raw output file (default bench/results/scale-<UTC time>.txt)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg := scale.Config{Modes: strings.Split(*modes, ","), Rows: scale.Rows(*quick), Progress: stderr}
	for _, b := range []scale.Binary{{Label: "before", Path: *before}, {Label: "after", Path: *after}} {
		if b.Path != "" {
			cfg.Binaries = append(cfg.Binaries, b)
		}
	}
	for _, b := range []scale.Binary{{Label: "before", Path: *benchBefore}, {Label: "after", Path: *benchAfter}} {
		if b.Path != "" {
			cfg.Bench = append(cfg.Bench, b)
		}
	}
	if len(cfg.Binaries) == 0 {
		return errors.New("run: -before or -after: at least one horizon-load binary")
	}
	if *rows != "" {
		var keep []scale.Row
		for _, r := range cfg.Rows {
			if strings.Contains(","+*rows+",", ","+r.ID+",") {
				keep = append(keep, r)
			}
		}
		cfg.Rows = keep
	}
	if *out == "" {
		*out = "bench/results/scale-" + time.Now().UTC().Format("20060102-1504") + ".txt"
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	defer f.Close()
	cfg.Raw = f
	fig, runErr := scale.Run(ctx, cfg)
	fmt.Fprintf(stderr, "raw output: %s\n", *out)
	if fig == nil {
		return runErr
	}
	fmt.Fprintln(f, "\n# tables")
	err = report(io.MultiWriter(stdout, f), fig, scale.DefaultMesh())
	return errors.Join(runErr, err)
}

// report prints the targets, the details and the extrapolation; an
// extrapolation the figures do not determine (some rows were not run) is
// noted, not an error.
func report(w io.Writer, fig *scale.Figures, m scale.Mesh) error {
	scale.WriteTargets(w, fig)
	scale.WriteDetails(w, fig)
	fmt.Fprintln(w)
	if err := scale.WriteExtrapolation(w, fig, m); err != nil {
		fmt.Fprintf(w, "\nExtrapolation not computed for every label and protocol: %v\n", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return nil
}

func readFigures(paths []string) (*scale.Figures, error) {
	if len(paths) != 1 {
		return nil, errors.New("want one raw output file")
	}
	f, err := os.Open(paths[0])
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fig, err := scale.ReadFigures(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", paths[0], err)
	}
	return fig, nil
}

func extrapolate(args []string, stdout, stderr io.Writer) error {
	m := scale.DefaultMesh()
	fs := flag.NewFlagSet("extrapolate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&m.Clusters, "clusters", m.Clusters, "member clusters, a network each")
	fs.IntVar(&m.Endpoints, "endpoints", m.Endpoints, "endpoints in the ClusterSet")
	fs.IntVar(&m.Proxies, "proxies", m.Proxies, "proxies, spread evenly over the replicas")
	fs.IntVar(&m.ServicesInView, "services-in-view", m.ServicesInView, "services in each proxy's view")
	fs.IntVar(&m.EndpointsPerServiceCluster, "endpoints-per-service", m.EndpointsPerServiceCluster, "endpoints of a service in each cluster")
	fs.IntVar(&m.Zones, "zones", m.Zones, "zones per cluster (views per cluster)")
	fs.Float64Var(&m.ChurnPer1k, "churn", m.ChurnPer1k, "endpoint changes per second per 1,000 endpoints")
	fs.Float64Var(&m.Cores, "cores", m.Cores, "a replica's cores")
	mem := fs.Float64("mem-gib", m.MemBytes/(1<<30), "a replica's memory, GiB")
	egress := fs.Float64("egress-mbps", m.EgressBps*8/1e6, "a replica's egress, Mbit/s")
	replicas := fs.String("replicas", "1,2,5,10,20,50,100", "replica counts, comma-separated")
	if err := fs.Parse(args); err != nil {
		return err
	}
	m.MemBytes, m.EgressBps = *mem*(1<<30), *egress*1e6/8
	m.Replicas = nil
	for _, s := range strings.Split(*replicas, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("-replicas: %q", s)
		}
		m.Replicas = append(m.Replicas, n)
	}
	fig, err := readFigures(fs.Args())
	if err != nil {
		return err
	}
	return scale.WriteExtrapolation(stdout, fig, m)
}
