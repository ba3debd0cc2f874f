package load

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"

	"google.golang.org/grpc"

	"github.com/horizonmesh/horizon/bench/gen"
	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/internal/connguard"
	"github.com/horizonmesh/horizon/xds/server"
)

// Scenario names.
const (
	// HotService changes one endpoint of one service in one cluster (n0-c0)
	// at a time, and waits for every proxy on that cluster's network to ACK
	// it before the next: a clean latency per change. Proxies on the other
	// networks see only the gateway, whose weight does not change, so they
	// must receive nothing.
	HotService = "hot-service"
	// Churn changes endpoints at a steady rate, round-robin over the
	// services and over the clusters of every network but the last, without
	// waiting: the last network's proxies are the control group that must
	// receive nothing.
	Churn = "churn"
	// NewService alternates two kinds of change, each waited for like
	// hot-service: even changes add a service (defined and exported by
	// every cluster, one endpoint each, all at the change's marker address),
	// which every proxy must receive as CDS + EDS (and LDS/RDS if its view
	// changes); odd changes replace one endpoint of svc-0 in n0-c0, which
	// must reach net-0's proxies as EDS alone, never CDS. Bytes are
	// attributed to each change (the fleet reports after every change).
	NewService = "new-service"
	// Gateway replaces one gateway address of n0-c0 (rotating over its
	// gateways) with the change's marker address: every proxy on another
	// network sees it as an endpoint of every service and is affected;
	// net-0's proxies (which reach n0-c0's endpoints directly) must receive
	// nothing.
	Gateway = "gateway"
	// Idle connects the fleet, waits for the sync and makes no change: the
	// server's memory per connected proxy.
	Idle = "idle"
)

// Kinds of change.
const (
	KindEndpoint = "endpoint" // an endpoint's address replaced (EDS only)
	KindService  = "service"  // a service added (CDS + EDS ...)
	KindGateway  = "gateway"  // a gateway address replaced
)

// Scenarios lists every scenario name.
var Scenarios = []string{HotService, Churn, NewService, Gateway, Idle}

// Scenario is one run of the harness.
type Scenario struct {
	Name      string
	Proxies   int
	Endpoints int // per service, over the whole ClusterSet
	Services  int // 0: 1 for hot-service, 10 for churn
	// Topology; 0 means 4 networks of one cluster each (as bench/).
	Networks           int
	ClustersPerNetwork int
	Changes            int
	Rate               float64 // churn: changes per second; 0 means 10
	Delta              bool
	Conns              int           // gRPC connections the fleet shares; 0: one per 50 proxies
	Debounce           time.Duration // 0: server.DefaultDebounce
	Storm              bool          // end with a reconnect storm
	Timeout            time.Duration // per wait; 0: 60 s
	// Settle is how long new-service waits after each change converged
	// before it asks the fleet what it received; 0: 200 ms.
	Settle time.Duration
}

func (sc Scenario) withDefaults() Scenario {
	if sc.Services == 0 {
		sc.Services = 1
		if sc.Name == Churn {
			sc.Services = 10
		}
	}
	if sc.Networks == 0 {
		sc.Networks = 4
	}
	if sc.ClustersPerNetwork == 0 {
		sc.ClustersPerNetwork = 1
	}
	if sc.Rate == 0 {
		sc.Rate = 10
	}
	if sc.Debounce == 0 {
		sc.Debounce = server.DefaultDebounce
	}
	if sc.Settle == 0 {
		sc.Settle = 200 * time.Millisecond
	}
	if sc.Timeout == 0 {
		sc.Timeout = time.Minute
	}
	return sc
}

// Spec is the ClusterSet the scenario starts from.
func (sc Scenario) Spec() gen.Spec {
	sc = sc.withDefaults()
	return gen.Spec{
		Networks: sc.Networks, ClustersPerNetwork: sc.ClustersPerNetwork, GatewaysPerCluster: 2,
		Services: sc.Services, EndpointsPerService: sc.Endpoints,
	}
}

// Change is one step of a scenario: the ClusterSet after it, and where it
// happened.
type Change struct {
	Index   int
	Kind    string // KindEndpoint, KindService or KindGateway
	Cluster string
	Network string
	Service string
	Removed string // the endpoint (or gateway) address replaced by MarkerAddress(Index)
	// Affected are the networks whose proxies must ACK the change's marker.
	Affected []string
	Set      *discovery.ClusterSet
}

// Build builds the base ClusterSet and every change of the scenario. An
// endpoint change replaces one endpoint's address by the change's marker
// address: the endpoint count, and so every other network's gateway
// weight, stays the same. A gateway change replaces a gateway address the
// same way; a service change adds a service whose endpoints hold the
// marker. All of them are built before any is served (discovery.New
// normalises in place what consecutive sets share).
func (sc Scenario) Build() (*discovery.ClusterSet, []Change, error) {
	sc = sc.withDefaults()
	if sc.Name == Idle {
		sc.Changes = 0
	}
	if sc.Changes >= maxMarkers {
		return nil, nil, fmt.Errorf("at most %d changes", maxMarkers-1)
	}
	if !slices.Contains(Scenarios, sc.Name) {
		return nil, nil, fmt.Errorf("unknown scenario %q (want one of %v)", sc.Name, Scenarios)
	}
	base, err := gen.Generate(sc.Spec())
	if err != nil {
		return nil, nil, err
	}
	var changed []int // indices into Clusters where endpoints change
	for i, c := range base.Clusters {
		switch sc.Name {
		case HotService, NewService, Gateway:
			if c.Name == gen.ClusterName(0, 0) {
				changed = append(changed, i)
			}
		case Churn:
			if c.Network != gen.NetworkName(sc.Networks-1) || sc.Networks == 1 {
				changed = append(changed, i)
			}
		}
	}
	var allNetworks []string
	for n := range sc.Networks {
		allNetworks = append(allNetworks, gen.NetworkName(n))
	}
	services := 1
	if sc.Name == Churn {
		services = sc.Services
	}
	type key struct{ cluster, service int }
	slots := map[key][]string{}
	turns := map[key]int{}
	var gwSlots []string // n0-c0's gateway addresses, by slot
	endpointChanges := 0
	cur := base.Clusters
	changes := make([]Change, 0, sc.Changes)
	for i := range sc.Changes {
		next := slices.Clone(cur)
		var ch Change
		switch {
		case sc.Name == Gateway:
			ci := changed[0]
			gws := slices.Clone(cur[ci].Gateways)
			if len(gws) == 0 {
				return nil, nil, fmt.Errorf("cluster %s has no gateway", cur[ci].Name)
			}
			if gwSlots == nil {
				for _, g := range gws {
					gwSlots = append(gwSlots, g.Address)
				}
			}
			old := gwSlots[i%len(gwSlots)]
			gwSlots[i%len(gwSlots)] = MarkerAddress(i)
			j := slices.IndexFunc(gws, func(g discovery.Gateway) bool { return g.Address == old })
			if j < 0 {
				return nil, nil, fmt.Errorf("change %d: gateway %s vanished", i, old)
			}
			gws[j].Address = MarkerAddress(i)
			next[ci].Gateways = gws
			var others []string
			for _, n := range allNetworks {
				if n != cur[ci].Network {
					others = append(others, n)
				}
			}
			ch = Change{Kind: KindGateway, Cluster: cur[ci].Name, Network: cur[ci].Network, Removed: old, Affected: others}
		case sc.Name == NewService && i%2 == 0:
			// A new service in every cluster, one endpoint each at the
			// marker (the networks are distinct address spaces).
			name, ns := fmt.Sprintf("new-%d", i), gen.NamespaceName(0)
			vip := netip.AddrFrom4([4]byte{10, 200 + byte(i>>16), byte(i >> 8), byte(i)}).String()
			for ci := range next {
				next[ci].Services = append(slices.Clone(cur[ci].Services), discovery.Service{
					Namespace: ns, Name: name, Type: discovery.ClusterSetIP, ClusterIP: vip,
					Exported: true, ExportedAt: gen.Epoch.Add(time.Duration(ci) * time.Second),
					Ports: []discovery.Port{{Name: "http", Port: 80, TargetPort: 8080, Protocol: "TCP", AppProtocol: "http"}},
					Endpoints: []discovery.Endpoint{{
						Address: MarkerAddress(i), Locality: cur[ci].Locality, Ready: true,
						ServiceAccount: name, MTLS: true, Labels: map[string]string{"app": name},
					}},
				})
			}
			ch = Change{Kind: KindService, Cluster: "*", Network: "*", Service: ns + "/" + name, Affected: allNetworks}
		default:
			k := endpointChanges
			endpointChanges++
			ci := changed[k%len(changed)]
			si := (k / len(changed)) % services
			kk := key{ci, si}
			if _, ok := slots[kk]; !ok {
				// First change of this service here: its endpoints are the base's.
				for _, e := range base.Clusters[ci].Services[si].Endpoints {
					slots[kk] = append(slots[kk], e.Address)
				}
			}
			if len(slots[kk]) == 0 {
				return nil, nil, fmt.Errorf("cluster %s has no endpoint of service %s to change: use at least one endpoint per cluster", cur[ci].Name, base.Clusters[ci].Services[si].Name)
			}
			slot := turns[kk] % len(slots[kk])
			turns[kk]++
			old := slots[kk][slot]
			slots[kk][slot] = MarkerAddress(i)
			next[ci].Services = slices.Clone(cur[ci].Services)
			// Services are sorted and new-service adds some: find the
			// base's service si by key.
			want := base.Clusters[ci].Services[si].Key()
			sj := slices.IndexFunc(next[ci].Services, func(s discovery.Service) bool { return s.Key() == want })
			svc := &next[ci].Services[sj]
			svc.Endpoints = slices.Clone(svc.Endpoints)
			j := slices.IndexFunc(svc.Endpoints, func(e discovery.Endpoint) bool { return e.Address == old })
			if j < 0 {
				return nil, nil, fmt.Errorf("change %d: endpoint %s vanished", i, old)
			}
			svc.Endpoints[j].Address = MarkerAddress(i)
			ch = Change{Kind: KindEndpoint, Cluster: next[ci].Name, Network: next[ci].Network, Service: svc.Key().String(), Removed: old, Affected: []string{next[ci].Network}}
		}
		cs, err := discovery.New(next)
		if err != nil {
			return nil, nil, fmt.Errorf("change %d: %w", i, err)
		}
		ch.Index, ch.Set = i, cs
		changes = append(changes, ch)
		cur = cs.Clusters
	}
	return base, changes, nil
}

// StartFleet starts the proxies of cfg somewhere (another process, or this
// one in tests) and returns a client to drive them.
type StartFleet func(ctx context.Context, cfg FleetConfig) (*FleetClient, error)

// Run serves the scenario's ClusterSets from an in-process Horizon, drives
// a fleet against it, and measures. The server side is this process: its
// CPU and memory are what is reported, so the fleet belongs elsewhere.
func Run(ctx context.Context, sc Scenario, startFleet StartFleet, log *slog.Logger) (*Result, error) {
	sc = sc.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	res := &Result{Scenario: sc}
	base, changes, err := sc.Build()
	if err != nil {
		return nil, err
	}
	res.Changes = changes

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
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
	if err := srv.Apply(base); err != nil {
		return nil, fmt.Errorf("apply base: %w", err)
	}
	done := make(chan struct{}, 2)
	go func() { _ = srv.Run(ctx); done <- struct{}{} }()
	go func() { _ = gs.Serve(lis); done <- struct{}{} }()
	defer func() {
		gs.Stop()
		cancel()
		<-done
		<-done
	}()

	return drive(ctx, sc, res, startFleet, target{
		address: lis.Addr().String(),
		apply:   func(ch *Change) error { srv.Update(ch.Set); return nil },
		cpu:     cpuSeconds,
		mem:     readMem,
	}, log)
}

// target is the server a scenario drives: where it listens, how a change is
// made, and how its CPU (seconds) and memory are read.
type target struct {
	address string
	apply   func(*Change) error
	cpu     func() float64
	mem     func() Mem
}

// drive connects the fleet to t, waits for its sync, makes the scenario's
// changes through t.apply and measures them (and, with sc.Storm, a
// reconnect storm).
func drive(ctx context.Context, sc Scenario, res *Result, startFleet StartFleet, t target, log *slog.Logger) (*Result, error) {
	changes := res.Changes
	res.Idle0 = t.mem()
	fleet, err := startFleet(ctx, FleetConfig{
		Address: t.address, Proxies: sc.Proxies, Conns: sc.Conns, Delta: sc.Delta,
		Networks: sc.Networks, ClustersPerNetwork: sc.ClustersPerNetwork,
	})
	if err != nil {
		return nil, err
	}
	defer fleet.Close()

	// Initial sync: every proxy connects at once.
	cpu := t.cpu()
	start := time.Now()
	if err := fleet.Start(); err != nil {
		return nil, err
	}
	last, err := fleet.Sync(1, sc.Timeout)
	if err != nil {
		return nil, err
	}
	res.SyncTime = time.Duration(last - start.UnixNano())
	res.SyncCPU = t.cpu() - cpu
	log.Info("fleet synced", "proxies", sc.Proxies, "duration", res.SyncTime)

	time.Sleep(time.Second) // let the streams settle before measuring
	res.Idle1 = t.mem()
	before, _, err := fleet.Report()
	if err != nil {
		return nil, err
	}

	// Changes.
	res.Applied = make([]int64, len(changes))
	cpu = t.cpu()
	t0 := time.Now()
	var errs []error
	prev := before
	for i, ch := range changes {
		if sc.Name == Churn {
			if d := time.Until(t0.Add(time.Duration(float64(i) / sc.Rate * float64(time.Second)))); d > 0 {
				time.Sleep(d)
			}
		}
		res.Applied[i] = time.Now().UnixNano()
		if err := t.apply(&ch); err != nil {
			return nil, fmt.Errorf("change %d: %w", i, err)
		}
		if sc.Name == Churn {
			continue
		}
		if _, err := fleet.Await(i, ch.Affected, sc.Timeout); err != nil {
			errs = append(errs, err)
		}
		if sc.Name == NewService {
			// Attribute bytes to this change: let what trails the marker
			// (LDS/RDS after EDS, other proxies' copies) land, then ask.
			time.Sleep(sc.Settle)
			cur, _, err := fleet.Report()
			if err != nil {
				return nil, err
			}
			res.addKind(ch.Kind, prev, cur)
			prev = cur
		}
	}
	if sc.Name == Churn {
		for _, ch := range changes {
			if _, err := fleet.Await(ch.Index, ch.Affected, sc.Timeout); err != nil {
				errs = append(errs, err)
			}
		}
	}
	res.ChangeCPU = t.cpu() - cpu
	res.ChangeWall = time.Since(t0)
	time.Sleep(200 * time.Millisecond) // anything late to unaffected proxies still counts
	after, fleetHeap, err := fleet.Report()
	if err != nil {
		return nil, err
	}
	res.FleetHeap = fleetHeap
	res.compute(before, after)
	log.Info("changes done", "changes", len(changes), "p50", res.P50, "max", res.Max)

	if sc.Storm {
		peak := startPeakWatch()
		cpu := t.cpu()
		at, err := fleet.Storm()
		if err != nil {
			return nil, err
		}
		last, err := fleet.Sync(1, sc.Timeout)
		res.StormCPU = t.cpu() - cpu
		res.StormTime = time.Duration(last - at)
		res.StormPeak = peak()
		if err != nil {
			errs = append(errs, fmt.Errorf("storm: %w", err))
		}
		log.Info("storm done", "duration", res.StormTime)
	}
	res.Errors = errs
	return res, errors.Join(errs...)
}
