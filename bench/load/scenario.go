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

	"github.com/prometheus/client_golang/prometheus"
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
	// ForgeSubZone has every proxy declare its zone with a sub-zone of its
	// own that no endpoint has ("forged-<i>"): a client trying to make the
	// server render a view per proxy.
	ForgeSubZone bool
	// Rates, for churn, replaces Rate and Changes by a stepping search on
	// one synced fleet: a step of changes at each rate in turn, each waited
	// for before the next step (see Step). The search stops after the
	// first step whose p99 exceeds P99Limit or that does not converge.
	Rates []float64
	// StepFor is how long each step of Rates lasts: a step makes
	// max(Changes, rate × StepFor) changes, at most MaxStepChanges
	// (0: 3 s, 300).
	StepFor        time.Duration
	MaxStepChanges int
	// P99Limit ends the search of Rates (0: never, every rate is run).
	P99Limit time.Duration
}

// stepChanges is how many changes the step at rate makes.
func (sc Scenario) stepChanges(rate float64) int {
	return min(max(sc.Changes, int(rate*sc.StepFor.Seconds()+0.5)), max(sc.Changes, sc.MaxStepChanges))
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
	if sc.StepFor == 0 {
		sc.StepFor = 3 * time.Second
	}
	if sc.MaxStepChanges == 0 {
		sc.MaxStepChanges = 300
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
	base, g, err := sc.generator()
	if err != nil {
		return nil, nil, err
	}
	changes := make([]Change, 0, sc.Changes)
	for range sc.Changes {
		ch, err := g.next()
		if err != nil {
			return nil, nil, err
		}
		changes = append(changes, ch)
	}
	return base, changes, nil
}

// changer makes a scenario's changes one after the other, each from the
// ClusterSet of the one before (see Build).
type changer struct {
	sc          Scenario
	base        *discovery.ClusterSet
	changed     []int // indices into Clusters where endpoints change
	allNetworks []string
	services    int
	slots       map[slotKey][]string
	turns       map[slotKey]int
	gwSlots     []string // n0-c0's gateway addresses, by slot
	endpoints   int      // endpoint changes made so far
	cur         []discovery.Cluster
	i           int // the next change's index
}

type slotKey struct{ cluster, service int }

// generator returns the scenario's base ClusterSet and a changer that makes
// its changes, as many as asked for.
func (sc Scenario) generator() (*discovery.ClusterSet, *changer, error) {
	sc = sc.withDefaults()
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
	g := &changer{sc: sc, base: base, services: 1, slots: map[slotKey][]string{}, turns: map[slotKey]int{}, cur: base.Clusters}
	for i, c := range base.Clusters {
		switch sc.Name {
		case HotService, NewService, Gateway:
			if c.Name == gen.ClusterName(0, 0) {
				g.changed = append(g.changed, i)
			}
		case Churn:
			if c.Network != gen.NetworkName(sc.Networks-1) || sc.Networks == 1 {
				g.changed = append(g.changed, i)
			}
		}
	}
	for n := range sc.Networks {
		g.allNetworks = append(g.allNetworks, gen.NetworkName(n))
	}
	if sc.Name == Churn {
		g.services = sc.Services
	}
	return base, g, nil
}

// next makes the next change.
func (g *changer) next() (Change, error) {
	sc, base, cur, i := g.sc, g.base, g.cur, g.i
	if i >= maxMarkers {
		return Change{}, fmt.Errorf("at most %d changes", maxMarkers-1)
	}
	if len(g.changed) == 0 {
		return Change{}, fmt.Errorf("scenario %s makes no changes", sc.Name)
	}
	next := slices.Clone(cur)
	var ch Change
	switch {
	case sc.Name == Gateway:
		ci := g.changed[0]
		gws := slices.Clone(cur[ci].Gateways)
		if len(gws) == 0 {
			return Change{}, fmt.Errorf("cluster %s has no gateway", cur[ci].Name)
		}
		if g.gwSlots == nil {
			for _, gw := range gws {
				g.gwSlots = append(g.gwSlots, gw.Address)
			}
		}
		old := g.gwSlots[i%len(g.gwSlots)]
		g.gwSlots[i%len(g.gwSlots)] = MarkerAddress(i)
		j := slices.IndexFunc(gws, func(gw discovery.Gateway) bool { return gw.Address == old })
		if j < 0 {
			return Change{}, fmt.Errorf("change %d: gateway %s vanished", i, old)
		}
		gws[j].Address = MarkerAddress(i)
		next[ci].Gateways = gws
		var others []string
		for _, n := range g.allNetworks {
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
		ch = Change{Kind: KindService, Cluster: "*", Network: "*", Service: ns + "/" + name, Affected: g.allNetworks}
	default:
		k := g.endpoints
		g.endpoints++
		ci := g.changed[k%len(g.changed)]
		si := (k / len(g.changed)) % g.services
		kk := slotKey{ci, si}
		if _, ok := g.slots[kk]; !ok {
			// First change of this service here: its endpoints are the base's.
			for _, e := range base.Clusters[ci].Services[si].Endpoints {
				g.slots[kk] = append(g.slots[kk], e.Address)
			}
		}
		if len(g.slots[kk]) == 0 {
			return Change{}, fmt.Errorf("cluster %s has no endpoint of service %s to change: use at least one endpoint per cluster", cur[ci].Name, base.Clusters[ci].Services[si].Name)
		}
		slot := g.turns[kk] % len(g.slots[kk])
		g.turns[kk]++
		old := g.slots[kk][slot]
		g.slots[kk][slot] = MarkerAddress(i)
		next[ci].Services = slices.Clone(cur[ci].Services)
		// Services are sorted and new-service adds some: find the
		// base's service si by key.
		want := base.Clusters[ci].Services[si].Key()
		sj := slices.IndexFunc(next[ci].Services, func(s discovery.Service) bool { return s.Key() == want })
		svc := &next[ci].Services[sj]
		svc.Endpoints = slices.Clone(svc.Endpoints)
		j := slices.IndexFunc(svc.Endpoints, func(e discovery.Endpoint) bool { return e.Address == old })
		if j < 0 {
			return Change{}, fmt.Errorf("change %d: endpoint %s vanished", i, old)
		}
		svc.Endpoints[j].Address = MarkerAddress(i)
		ch = Change{Kind: KindEndpoint, Cluster: next[ci].Name, Network: next[ci].Network, Service: svc.Key().String(), Removed: old, Affected: []string{next[ci].Network}}
	}
	cs, err := discovery.New(next)
	if err != nil {
		return Change{}, fmt.Errorf("change %d: %w", i, err)
	}
	ch.Index, ch.Set = i, cs
	g.cur = cs.Clusters
	g.i++
	return ch, nil
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
	var base *discovery.ClusterSet
	var more *changer
	var err error
	if len(sc.Rates) > 0 {
		if sc.Name != Churn {
			return nil, fmt.Errorf("%s: rates are for %s", sc.Name, Churn)
		}
		// The steps' changes are made between steps, out of the measured
		// windows, so that the server's heap holds only the base when the
		// fleet connects.
		base, more, err = sc.generator()
	} else {
		base, res.Changes, err = sc.Build()
	}
	if err != nil {
		return nil, err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	// Metrics as horizon serve registers them; the harness reads
	// horizon_xds_views from them.
	reg := prometheus.NewRegistry()
	srv := server.New(ctx, server.Options{Debounce: sc.Debounce, Metrics: server.NewMetrics(reg)})
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
		views:   func() int { return gaugeValue(reg, "horizon_xds_views") },
		more:    more,
	}, log)
}

// gaugeValue reads a gauge without labels from reg; -1 if it is not there.
func gaugeValue(reg prometheus.Gatherer, name string) int {
	mfs, err := reg.Gather()
	if err != nil {
		return -1
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return int(mf.GetMetric()[0].GetGauge().GetValue())
		}
	}
	return -1
}

// target is the server a scenario drives: where it listens, how a change is
// made, and how its CPU (seconds) and memory are read.
type target struct {
	address string
	apply   func(*Change) error
	cpu     func() float64
	mem     func() Mem
	views   func() int // horizon_xds_views; nil: not visible
	more    *changer   // makes the changes of sc.Rates' steps
}

// drive connects the fleet to t, waits for its sync, makes the scenario's
// changes through t.apply (or, with sc.Rates, the steps of its search)
// and measures them, and, with sc.Storm, a reconnect storm.
func drive(ctx context.Context, sc Scenario, res *Result, startFleet StartFleet, t target, log *slog.Logger) (*Result, error) {
	res.Idle0 = t.mem()
	fleet, err := startFleet(ctx, FleetConfig{
		Address: t.address, Proxies: sc.Proxies, Conns: sc.Conns, Delta: sc.Delta,
		Networks: sc.Networks, ClustersPerNetwork: sc.ClustersPerNetwork, ForgeSubZone: sc.ForgeSubZone,
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
	res.ViewsSynced = views(t)
	before, _, err := fleet.Report()
	if err != nil {
		return nil, err
	}
	var errs []error
	if t.more != nil {
		errs, err = search(sc, res, fleet, t, before, log)
	} else {
		// The changes' sets are built (and held) before any is served; a
		// set indexes its localities when first served. Index them now, so
		// that the heap after the changes less this one is what the server
		// keeps, not what serving added to the harness's sets.
		for _, ch := range res.Changes {
			if ch.Set != nil {
				ch.Set.Localities(func(discovery.Locality) {})
			}
		}
		res.Idle1R = t.mem()
		errs, err = changeAll(sc, res, fleet, t, before, log)
		res.Idle2 = t.mem()
	}
	if err != nil {
		return nil, err
	}

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

// changeAll makes the scenario's changes (at sc.Rate for churn, else each
// waited for) and measures them. Changes that did not converge are the
// errors it returns first; the second is a failure of the run.
func changeAll(sc Scenario, res *Result, fleet *FleetClient, t target, before []ProxyStats, log *slog.Logger) ([]error, error) {
	changes := res.Changes
	res.Applied = make([]int64, len(changes))
	cpu := t.cpu()
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
	res.ViewsEnd = views(t)
	res.compute(before, after)
	log.Info("changes done", "changes", len(changes), "p50", res.P50, "max", res.Max)
	return errs, nil
}

func views(t target) int {
	if t.views == nil {
		return -1
	}
	return t.views()
}

// search runs the steps of sc.Rates on the synced fleet: at each rate, its
// changes (made before the step starts) at that rate, then every one
// awaited; the step's convergence and server CPU are the step's. It stops
// after the first step over sc.P99Limit or with a change that did not
// converge. Traffic (bytes to unaffected proxies, CDS) is counted over all
// steps. A step over the limit is the search's answer, not an error; a
// change that never converged is (the first result, as changeAll's).
func search(sc Scenario, res *Result, fleet *FleetClient, t target, before []ProxyStats, log *slog.Logger) ([]error, error) {
	var errs []error
	for _, rate := range sc.Rates {
		n := sc.stepChanges(rate)
		step := make([]Change, 0, n)
		for range n {
			ch, err := t.more.next()
			if err != nil {
				return nil, err
			}
			step = append(step, ch)
		}
		applied := make([]int64, n)
		time.Sleep(500 * time.Millisecond) // the previous step's stragglers, and the garbage of making these
		cpu := t.cpu()
		t0 := time.Now()
		for i := range step {
			if d := time.Until(t0.Add(time.Duration(float64(i) / rate * float64(time.Second)))); d > 0 {
				time.Sleep(d)
			}
			applied[i] = time.Now().UnixNano()
			if err := t.apply(&step[i]); err != nil {
				return nil, fmt.Errorf("change %d: %w", step[i].Index, err)
			}
		}
		st := Step{Rate: rate, Changes: n}
		var lat []time.Duration
		for i, ch := range step {
			last, err := fleet.Await(ch.Index, ch.Affected, sc.Timeout)
			if err != nil {
				errs = append(errs, fmt.Errorf("rate %g: %w", rate, err))
				break
			}
			lat = append(lat, time.Duration(last-applied[i]))
		}
		st.CPU = t.cpu() - cpu
		st.Wall = time.Since(t0)
		st.Converged = len(lat)
		if len(lat) > 0 {
			slices.Sort(lat)
			st.P50, st.P99, st.Max = quantile(lat, 0.50), quantile(lat, 0.99), lat[len(lat)-1]
		}
		st.Within = st.Converged == n && (sc.P99Limit == 0 || st.P99 <= sc.P99Limit)
		res.Steps = append(res.Steps, st)
		for i := range step {
			step[i].Set = nil // what is served now holds it; the record need not
		}
		res.Changes = append(res.Changes, step...)
		res.Applied = append(res.Applied, applied...)
		res.ChangeCPU += st.CPU
		res.ChangeWall += st.Wall
		log.Info("step done", "rate", rate, "changes", n, "p99", st.P99, "within", st.Within)
		if !st.Within {
			break
		}
	}
	time.Sleep(200 * time.Millisecond) // anything late to unaffected proxies still counts
	after, fleetHeap, err := fleet.Report()
	if err != nil {
		return nil, err
	}
	res.FleetHeap = fleetHeap
	res.ViewsEnd = views(t)
	res.compute(before, after)
	return errs, nil
}
