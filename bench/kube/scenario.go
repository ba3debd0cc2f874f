// Package kube runs bench/load's endpoint-change scenario through real
// member clusters: a kube-apiserver and etcd per cluster (envtest, through
// discovery/kube/kubetest), Horizon's production Kubernetes Source feeding
// an server.Server, and a fleet of simulated sidecars. Each change is an
// EndpointSlice update written to an API server, so its convergence
// includes the watch, the informer, the Source's merge and the server's
// debounce (if any) and render, up to the last affected proxy's ACK.
//
// RunMCS (mcs.go) is the MCS controller's scenario: a source EndpointSlice
// change to the MCS EndpointSlice in every member's API server, and to a
// real CoreDNS's clusterset.local answer.
package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/horizonmesh/horizon/bench/gen"
	"github.com/horizonmesh/horizon/bench/load"
	"github.com/horizonmesh/horizon/discovery"
	kubesrc "github.com/horizonmesh/horizon/discovery/kube"
	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
	"github.com/horizonmesh/horizon/internal/connguard"
	"github.com/horizonmesh/horizon/xds/server"
)

// Scenario is one run: K member clusters, one network each; S services with
// E endpoints each in every cluster; P proxies; N changes, each waited for
// (as bench/load's hot-service) before the next.
type Scenario struct {
	Clusters  int // K; 0 means 2
	Services  int // S; 0 means 1
	Endpoints int // E, per service in every cluster; 0 means 10
	Proxies   int // P, spread over the clusters and their zones
	Changes   int // N
	Delta     bool
	Conns     int           // gRPC connections the fleet shares; 0: one per 50 proxies
	Debounce  time.Duration // 0: server.DefaultDebounce
	Timeout   time.Duration // per wait; 0: 60 s
}

func (sc Scenario) withDefaults() Scenario {
	if sc.Clusters == 0 {
		sc.Clusters = 2
	}
	if sc.Services == 0 {
		sc.Services = 1
	}
	if sc.Endpoints == 0 {
		sc.Endpoints = 10
	}
	if sc.Debounce == 0 {
		sc.Debounce = server.DefaultDebounce
	}
	if sc.Timeout == 0 {
		sc.Timeout = time.Minute
	}
	return sc
}

func (sc Scenario) validate() error {
	var errs []error
	if sc.Clusters < 1 || sc.Clusters > maxClusters {
		errs = append(errs, fmt.Errorf("clusters = %d, want 1..%d", sc.Clusters, maxClusters))
	}
	if sc.Services < 1 || sc.Services > maxServices || sc.Endpoints < 1 || sc.Services*sc.Endpoints > maxEndpoints {
		errs = append(errs, fmt.Errorf("%d services × %d endpoints: want 1..%d services of at least 1 endpoint, at most %d endpoints per cluster", sc.Services, sc.Endpoints, maxServices, maxEndpoints))
	}
	if sc.Proxies < 1 {
		errs = append(errs, fmt.Errorf("proxies = %d, want at least 1", sc.Proxies))
	}
	if sc.Changes < 0 {
		errs = append(errs, fmt.Errorf("changes = %d, want at least 0", sc.Changes))
	}
	return errors.Join(errs...)
}

// Run starts the member clusters, seeds them, serves them to a fleet
// through the Kubernetes Source and an server.Server in this process, and
// measures the changes. The clusters are stopped before it returns.
//
// The server is wired as `horizon serve --member ... --gateway-probe-interval=0
// --mcs-controller=false` wires it: Source.OnUpdate hands every ClusterSet
// to server.Server.Update. The gateway prober is left out because it would
// withdraw the gateways (their addresses are data, nothing answers), the
// MCS controller because its writes (ServiceImports, export conditions)
// would be changes of their own; neither is in an endpoint change's path.
// That wiring lives in package main (cmd/horizon), so it is repeated here.
func Run(ctx context.Context, sc Scenario, startFleet load.StartFleet, log *slog.Logger) (*Result, error) {
	sc = sc.withDefaults()
	if err := sc.validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	res := &Result{Scenario: sc}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Member clusters, seeded before anything watches them.
	members, stop, started, err := launchMembers(sc.Clusters, log)
	defer stop()
	if err != nil {
		return nil, err
	}
	res.ClusterStart = started
	begin := time.Now()
	seeded := make([][]*discoveryv1.EndpointSlice, len(members))
	g, gctx := errgroup.WithContext(ctx)
	for i, m := range members {
		g.Go(func() error {
			var err error
			seeded[i], err = seed(gctx, m, sc.Services, sc.Endpoints, 0)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	res.Seed = time.Since(begin)
	log.Info("member clusters seeded", "clusters", sc.Clusters, "start", res.ClusterStart, "seed", res.Seed)
	changes := plan(members, seeded, sc.Changes)
	res.Changes = changes

	// Horizon: the Source feeds the server; the tracker notes when the
	// Source publishes each change's marker.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := server.New(ctx, server.Options{Debounce: sc.Debounce})
	// As cmd/horizon serve configures it, guard included (connguard's
	// defaults), except the per-source connection limit: every simulated
	// proxy connects from 127.0.0.1.
	lim := connguard.DefaultLimits()
	lim.MaxConnsPerSource = lim.MaxConns
	guard := connguard.New(connguard.Config{Port: "plaintext", Limits: lim})
	gs := grpc.NewServer(slices.Concat(server.GRPCOptions(server.DefaultSendTimeout, nil), guard.ServerOptions())...)
	lis = guard.Listener(lis)
	srv.Register(gs)
	tr := &tracker{}
	src := kubesrc.NewSource(kubesrc.SourceOptions{Logger: log.With("component", "kube"), OnUpdate: func(cs *discovery.ClusterSet) {
		at := time.Now()
		srv.Update(cs)
		tr.published(cs, at)
	}})
	for _, m := range members {
		if err := src.Set(m.config()); err != nil {
			lis.Close()
			return nil, err
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Run(ctx) })
	wg.Go(func() { _ = gs.Serve(lis) })
	wg.Go(func() {
		if err := src.Run(ctx); err != nil {
			log.Error("kube source ended", "error", err)
		}
	})
	defer func() {
		gs.Stop()
		cancel()
		wg.Wait()
	}()

	// The first ClusterSet: every member synced, rendered by the server.
	begin = time.Now()
	if err := poll(ctx, sc.Timeout, func() bool { return srv.Current() != nil }); err != nil {
		return nil, fmt.Errorf("waiting for the first ClusterSet: %w", err)
	}
	res.SourceSync = time.Since(begin)
	if err := checkSeeded(srv.Current(), members, sc.Services, sc.Endpoints); err != nil {
		return nil, fmt.Errorf("first ClusterSet: %w", err)
	}
	log.Info("source synced", "duration", res.SourceSync, "version", srv.Current().Version())

	fleet, err := startFleet(ctx, load.FleetConfig{
		Address: lis.Addr().String(), Proxies: sc.Proxies, Conns: sc.Conns, Delta: sc.Delta,
		Networks: sc.Clusters, ClustersPerNetwork: 1,
	})
	if err != nil {
		return nil, err
	}
	defer fleet.Close()
	start := time.Now()
	if err := fleet.Start(); err != nil {
		return nil, err
	}
	last, err := fleet.Sync(1, sc.Timeout)
	if err != nil {
		return nil, err
	}
	res.FleetSync = time.Duration(last - start.UnixNano())
	log.Info("fleet synced", "proxies", sc.Proxies, "duration", res.FleetSync)
	time.Sleep(time.Second) // let the streams settle before measuring
	before, _, err := fleet.Report()
	if err != nil {
		return nil, err
	}

	// Changes, one at a time: write, then wait for every affected proxy.
	res.Written = make([]int64, len(changes))
	res.Answered = make([]int64, len(changes))
	res.Published = make([]int64, len(changes))
	res.Applied = make([]int64, len(changes))
	versions := map[[2]int]string{} // (member, service) -> the slice's resourceVersion
	for mi, ss := range seeded {
		for s, slice := range ss {
			versions[[2]int{mi, s}] = slice.ResourceVersion
		}
	}
	var errs []error
	cpu := load.CPUSeconds()
	t0 := time.Now()
	for i := range changes {
		ch := &changes[i]
		k := [2]int{ch.member, ch.service}
		slice := ch.slice
		slice.ResourceVersion = versions[k]
		tr.expect(ch)
		applied := make(chan int64, 1)
		go func() { applied <- awaitApplied(ctx, srv, ch, sc.Timeout) }()

		res.Written[i] = time.Now().UnixNano()
		updated, err := members[ch.member].cluster.Kube.DiscoveryV1().EndpointSlices(slice.Namespace).Update(ctx, slice, metav1.UpdateOptions{})
		res.Answered[i] = time.Now().UnixNano()
		if err != nil {
			return nil, fmt.Errorf("change %d: update endpointslice %s/%s in %s: %w", i, slice.Namespace, slice.Name, ch.Cluster, err)
		}
		versions[k] = updated.ResourceVersion
		if _, err := fleet.Await(i, ch.Affected, sc.Timeout); err != nil {
			errs = append(errs, err)
		}
		res.Applied[i] = <-applied
		res.Published[i] = tr.publishedAt(i)
	}
	res.ChangeCPU = load.CPUSeconds() - cpu
	res.ChangeWall = time.Since(t0)
	time.Sleep(200 * time.Millisecond) // anything late to unaffected proxies still counts
	after, _, err := fleet.Report()
	if err != nil {
		return nil, err
	}
	res.compute(before, after)
	log.Info("changes done", "changes", len(changes), "p50", res.Converge.P50, "max", res.Converge.Max)
	res.Errors = errs
	return res, errors.Join(errs...)
}

// poll calls done every 5 ms until it is true, ctx ends or timeout passes.
func poll(ctx context.Context, timeout time.Duration, done func() bool) error {
	return pollEvery(ctx, timeout, 5*time.Millisecond, done)
}

// pollEvery is poll with another interval.
func pollEvery(ctx context.Context, timeout, interval time.Duration, done func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(interval)
	defer t.Stop()
	for !done() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// awaitApplied polls the server's current ClusterSet every millisecond
// until it holds the change's marker, and returns when it first did (Unix
// ns; 0 if it never did within timeout). The server sets its current
// ClusterSet once every view is rendered, so this is the write plus the
// watch, the Source, any debounce and the render, within a millisecond.
func awaitApplied(ctx context.Context, srv *server.Server, ch *Change, timeout time.Duration) int64 {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	var seen *discovery.ClusterSet
	for {
		if cs := srv.Current(); cs != seen {
			seen = cs
			if holds(cs, ch) {
				return time.Now().UnixNano()
			}
		}
		select {
		case <-ctx.Done():
			return 0
		case <-t.C:
		}
	}
}

// tracker notes when the Source first published a ClusterSet holding the
// awaited change's marker: from the OnUpdate callback, after handing the
// set to the server, so that it adds nothing to the server's path.
type tracker struct {
	mu   sync.Mutex
	want *Change
	at   map[int]int64
}

func (t *tracker) expect(ch *Change) {
	t.mu.Lock()
	t.want = ch
	t.mu.Unlock()
}

func (t *tracker) published(cs *discovery.ClusterSet, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.want == nil || t.at[t.want.Index] != 0 || !holds(cs, t.want) {
		return
	}
	if t.at == nil {
		t.at = map[int]int64{}
	}
	t.at[t.want.Index] = at.UnixNano()
}

// publishedAt is when change i was published (Unix ns), 0 if never.
func (t *tracker) publishedAt(i int) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.at[i]
}

// launchMembers starts n member clusters (real kube-apiservers, named as
// gen names them) and returns them with how long they took to start. stop
// stops them, logging a failure; it is never nil, also when err is not.
func launchMembers(n int, log *slog.Logger) (members []member, stop func(), started time.Duration, err error) {
	names := make([]string, n)
	for i := range names {
		names[i] = gen.ClusterName(i, 0)
	}
	begin := time.Now()
	clusters, stopClusters, err := kubetest.Launch(names...)
	stop = func() {
		if err := stopClusters(); err != nil {
			log.Warn("stopping the member clusters", "error", err)
		}
	}
	if err != nil {
		return nil, stop, 0, err
	}
	members = make([]member, len(clusters))
	for i, c := range clusters {
		members[i] = newMember(i, c)
	}
	return members, stop, time.Since(begin), nil
}
