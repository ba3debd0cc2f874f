// Command horizon-load measures Horizon under a fleet of simulated Envoy
// sidecars (see bench/load and bench/README.md).
//
//	horizon-load run [flags]    serve scenarios from an in-process Horizon (or,
//	                            with -horizon, a horizon serve process whose
//	                            ClusterSet file it rewrites) and drive a fleet
//	                            in a child process (this binary, re-executed
//	                            as "fleet"); print a table
//	horizon-load kube [flags]   the same changes through real kube-apiservers
//	                            (bench/kube; needs make kube-tools)
//	horizon-load fleet [flags]  run a fleet: driven over stdin/stdout by "run",
//	                            or, with -standalone, against any Horizon
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/horizonmesh/horizon/bench/load"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "horizon-load:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: horizon-load run|fleet|kube [flags] (-h for flags)")
	}
	switch args[0] {
	case "run":
		return runScenarios(ctx, args[1:], stdout, stderr)
	case "fleet":
		return runFleet(ctx, args[1:], stdin, stdout, stderr)
	case "kube":
		return runKube(ctx, args[1:], stdout, stderr)
	}
	return fmt.Errorf("unknown command %q: want run, fleet or kube", args[0])
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

func runScenarios(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	scenarios := fs.String("scenario", load.HotService, "scenarios, comma-separated: "+strings.Join(load.Scenarios, ", "))
	proxies := fs.String("proxies", "100", "fleet sizes P, comma-separated")
	endpoints := fs.String("endpoints", "10", "endpoints per service E, comma-separated")
	modes := fs.String("mode", "sotw", "protocols, comma-separated: sotw, delta")
	services := fs.Int("services", 0, "services (0: 1 for hot-service, 10 for churn)")
	networks := fs.Int("networks", 0, "networks, one gateway'd network per cluster group (0: 4)")
	clustersPerNetwork := fs.Int("clusters-per-network", 0, "clusters per network (0: 1)")
	changes := fs.Int("changes", 20, "changes per scenario")
	rate := fs.Float64("rate", 10, "churn: changes per second")
	conns := fs.Int("conns", 0, "gRPC connections the fleet shares (0: one per 50 proxies)")
	debounce := fs.Duration("debounce", 0, "server debounce (0: server.DefaultDebounce)")
	storm := fs.Bool("storm", true, "end each scenario with a reconnect storm")
	timeout := fs.Duration("timeout", 2*time.Minute, "longest wait for a sync or a change")
	verbose := fs.Bool("v", false, "log progress to stderr")
	cpuProfile := fs.String("cpuprofile", "", "write the server's CPU profile (every scenario) to this file")
	forge := fs.Bool("forge-subzone", false, "every proxy declares a sub-zone of its own that no endpoint has (forged-<i>)")
	rates := fs.String("rates", "", "churn: a stepping search instead of -rate: a step at each rate (comma-separated changes/s) on one synced fleet, max(-changes, rate × -step) changes each, until a step's p99 exceeds -p99-limit")
	step := fs.Duration("step", 3*time.Second, "with -rates: how long a step lasts")
	maxStep := fs.Int("max-step-changes", 300, "with -rates: most changes in a step")
	p99Limit := fs.Duration("p99-limit", 0, "with -rates: stop after the first step whose p99 exceeds this (0: run every rate)")
	jsonOut := fs.String("json", "", "also write every result's figures to this file, one JSON object per line (bench/scale reads them)")
	horizon := fs.String("horizon", "", "serve from this horizon binary (`horizon serve` in a process of its own), changing its ClusterSet file, instead of in-process: hot-service, churn and gateway")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ps, err := ints(*proxies)
	if err != nil {
		return fmt.Errorf("-proxies: %w", err)
	}
	es, err := ints(*endpoints)
	if err != nil {
		return fmt.Errorf("-endpoints: %w", err)
	}
	var rs []float64
	if *rates != "" {
		for _, f := range strings.Split(*rates, ",") {
			r, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
			if err != nil || r <= 0 {
				return fmt.Errorf("-rates: %q is not a rate", f)
			}
			rs = append(rs, r)
		}
	}
	log := slog.New(slog.DiscardHandler)
	if *verbose {
		log = slog.New(slog.NewTextHandler(stderr, nil))
	}
	machine := load.Machine()
	var results []*load.Result
	var errs []error
	for _, name := range strings.Split(*scenarios, ",") {
		for _, mode := range strings.Split(*modes, ",") {
			for _, p := range ps {
				for _, e := range es {
					sc := load.Scenario{
						Name: name, Proxies: p, Endpoints: e, Services: *services, Changes: *changes, Rate: *rate,
						Networks: *networks, ClustersPerNetwork: *clustersPerNetwork,
						Delta: mode == "delta", Conns: *conns, Debounce: *debounce, Storm: *storm, Timeout: *timeout,
						ForgeSubZone: *forge, Rates: rs, StepFor: *step, MaxStepChanges: *maxStep, P99Limit: *p99Limit,
					}
					log.Info("scenario", "name", name, "mode", mode, "proxies", p, "endpoints", e)
					var r *load.Result
					var err error
					if *horizon != "" {
						r, err = load.RunFile(ctx, sc, childFleet(stderr), *horizon, log)
					} else {
						r, err = load.Run(ctx, sc, childFleet(stderr), log)
					}
					if err != nil {
						errs = append(errs, fmt.Errorf("%s %s P=%d E=%d: %w", name, mode, p, e, err))
					}
					if r != nil {
						results = append(results, r)
					}
					if ctx.Err() != nil {
						return errors.Join(append(errs, ctx.Err())...)
					}
				}
			}
		}
	}
	if err := load.WriteTable(stdout, machine, results); err != nil {
		return err
	}
	if err := load.WriteKinds(stdout, results); err != nil {
		return err
	}
	if err := load.WriteSteps(stdout, results); err != nil {
		return err
	}
	if *jsonOut != "" {
		f, err := os.Create(*jsonOut)
		if err != nil {
			return err
		}
		if err := errors.Join(load.WriteJSON(f, results), f.Close()); err != nil {
			return fmt.Errorf("-json: %w", err)
		}
	}
	return errors.Join(errs...)
}

// childFleet runs the fleet in a child process: this binary, "fleet".
func childFleet(stderr io.Writer) load.StartFleet {
	return func(ctx context.Context, cfg load.FleetConfig) (*load.FleetClient, error) {
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(cfg)
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(self, "fleet", "-config", string(b))
		cmd.Stderr = stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("start fleet: %w", err)
		}
		return load.NewFleetClient(in, out, func() error {
			in.Close()
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				return err
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				return errors.Join(errors.New("fleet did not quit; killed"), <-done)
			}
		}), nil
	}
}

func runFleet(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fleet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", "", "fleet configuration as JSON (set by run)")
	var cfg load.FleetConfig
	fs.StringVar(&cfg.Address, "xds", "127.0.0.1:15010", "Horizon's plaintext xDS address")
	fs.IntVar(&cfg.Proxies, "proxies", 100, "proxies")
	fs.IntVar(&cfg.Conns, "conns", 0, "gRPC connections shared by the proxies (0: one per 50)")
	fs.BoolVar(&cfg.Delta, "delta", false, "delta xDS instead of state of the world")
	fs.IntVar(&cfg.Networks, "networks", 4, "bench/gen topology: networks")
	fs.IntVar(&cfg.ClustersPerNetwork, "clusters-per-network", 1, "bench/gen topology: clusters per network")
	clusters := fs.String("clusters", "", "spread proxies over these clusters instead: name/network/region/zone[/zone...],...")
	standalone := fs.Bool("standalone", false, "connect, wait for the sync, print what each type cost, and exit")
	hold := fs.Duration("hold", 0, "with -standalone: stay connected this long after the sync")
	timeout := fs.Duration("timeout", 2*time.Minute, "with -standalone: longest wait for the sync")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *config != "" {
		cfg = load.FleetConfig{}
		if err := json.Unmarshal([]byte(*config), &cfg); err != nil {
			return fmt.Errorf("-config: %w", err)
		}
	}
	if *clusters != "" {
		for _, c := range strings.Split(*clusters, ",") {
			f := strings.Split(c, "/")
			if len(f) < 3 {
				return fmt.Errorf("-clusters: %q: want name/network/region[/zone...]", c)
			}
			ref := load.ClusterRef{Name: f[0], Network: f[1]}
			for _, z := range f[3:] {
				ref.Localities = append(ref.Localities, load.Locality(f[2], z))
			}
			if len(f) == 3 {
				ref.Localities = append(ref.Localities, load.Locality(f[2], ""))
			}
			cfg.Clusters = append(cfg.Clusters, ref)
		}
	}
	if !*standalone {
		return load.ServeFleet(ctx, cfg, stdin, stdout)
	}
	f, err := load.NewFleet(cfg)
	if err != nil {
		return err
	}
	defer f.Stop()
	start := time.Now()
	if err := f.Start(ctx); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, *timeout)
	last, err := f.WaitSynced(wctx, 1)
	cancel()
	if err != nil {
		return err
	}
	var bytes, resps [4]int64
	for _, p := range f.Stats() {
		for t := range bytes {
			bytes[t] += p.Bytes[t]
			resps[t] += p.Responses[t]
		}
	}
	fmt.Fprintf(stdout, "# machine: %s\n%d proxies synced in %.1f ms\n", load.Machine(), cfg.Proxies, float64(last-start.UnixNano())/1e6)
	for t, name := range load.TypeNames {
		fmt.Fprintf(stdout, "%s: %d responses, %d bytes (%.0f per proxy)\n", name, resps[t], bytes[t], float64(bytes[t])/float64(cfg.Proxies))
	}
	if *hold > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(*hold):
		}
	}
	return nil
}
