package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"

	"github.com/horizonmesh/horizon/bench/gen"
	"github.com/horizonmesh/horizon/bench/load"
	"github.com/horizonmesh/horizon/discovery"
	kubesrc "github.com/horizonmesh/horizon/discovery/kube"
	"github.com/horizonmesh/horizon/discovery/kube/mcs"
)

// MCSScenario is the MCS EndpointSlice benchmark: K member clusters, all on
// one network (so that split horizon leaves every endpoint in every
// member's slices), each exporting the same S services with E endpoints;
// Horizon's Source and MCS controller, wired as `horizon serve` wires them
// (no leader election: one replica), write the MCS EndpointSlices of every
// (service, source cluster) into every member. Each change replaces one
// endpoint address of one source EndpointSlice, as the xDS scenario's do,
// and is waited for in every member's MCS slice before the next.
//
// Service svc-0 is headless. With a DNS starter, a real CoreDNS runs
// against the last member and DNSChanges more changes, all of svc-0 and
// rotating over the source members, are each also waited for in
// CoreDNS's answer for svc-0.ns-0.svc.clusterset.local.
type MCSScenario struct {
	Clusters   int // K; 0 means 3
	Services   int // S; 0 means 50
	Endpoints  int // E, per service in every cluster; 0 means 30
	Changes    int // N, round-robin over the members and the services
	DNSChanges int // D, of the headless service (needs a DNS starter)
	Timeout    time.Duration
}

func (sc MCSScenario) withDefaults() MCSScenario {
	if sc.Clusters == 0 {
		sc.Clusters = 3
	}
	if sc.Services == 0 {
		sc.Services = 50
	}
	if sc.Endpoints == 0 {
		sc.Endpoints = 30
	}
	if sc.Timeout == 0 {
		sc.Timeout = time.Minute
	}
	return sc
}

func (sc MCSScenario) validate() error {
	var errs []error
	if sc.Clusters < 1 || sc.Clusters > maxClusters {
		errs = append(errs, fmt.Errorf("clusters = %d, want 1..%d", sc.Clusters, maxClusters))
	}
	if sc.Services < 1 || sc.Services > maxServices || sc.Endpoints < 1 || sc.Services*sc.Endpoints > maxEndpoints {
		errs = append(errs, fmt.Errorf("%d services × %d endpoints: want 1..%d services of at least 1 endpoint, at most %d endpoints per cluster", sc.Services, sc.Endpoints, maxServices, maxEndpoints))
	}
	if sc.Endpoints > mcs.DefaultMaxEndpointsPerSlice {
		errs = append(errs, fmt.Errorf("endpoints = %d: at most %d, one MCS slice per (service, source)", sc.Endpoints, mcs.DefaultMaxEndpointsPerSlice))
	}
	if sc.Changes < 0 || sc.DNSChanges < 0 || sc.Changes+sc.DNSChanges > 1<<16 {
		errs = append(errs, fmt.Errorf("changes = %d, DNS changes = %d: want 0..%d in all", sc.Changes, sc.DNSChanges, 1<<16))
	}
	return errors.Join(errs...)
}

// Resolver answers DNS questions: dnstest.Server does.
type Resolver interface {
	Query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error)
}

// StartDNS starts a CoreDNS against the member cluster cfg reaches, serving
// clusterset.local from its ServiceImports and MCS EndpointSlices, and
// stops it when the caller's test or benchmark ends (dnstest.Start).
type StartDNS func(cfg *rest.Config) (Resolver, error)

// MCSResult is what one MCS scenario measured.
type MCSResult struct {
	Scenario MCSScenario
	Changes  []Change // the N changes, then the D changes of svc-0

	// Slice: from just before the source EndpointSlice update was sent to
	// the member's watch delivering its MCS slice holding the marker, over
	// every (change, member). LastMember: to the last member's, per
	// change. Missing counts the (change, member) never seen.
	Slice, LastMember Summary
	Missing           int

	// Per change, over all N + D: EndpointSlice writes by the controller
	// (horizon_mcs_endpointslice_writes_total, created + updated +
	// deleted), failed ones, events of Horizon's MCS slices the members'
	// watches delivered (writes that changed something), and the
	// controller's other writes (horizon_mcs_writes_total:
	// ServiceImports, statuses).
	SliceWrites, FailedWrites, SliceEvents, OtherWrites float64
	// LagMean is horizon_mcs_endpointslice_lag_seconds' mean over the
	// changes: the controller's own view, from the ClusterSet change
	// reaching it to its last member's write.
	LagMean time.Duration

	// DNS: from the write to CoreDNS's first answer for the headless
	// service holding the marker (polled every 2 ms), over the D changes;
	// DNSSlice: to the MCS slice in CoreDNS's member, same changes.
	// DNSInitial is the A records CoreDNS answered before the changes
	// (want K × E).
	DNS, DNSSlice Summary
	DNSInitial    int

	// InitialSync: controller start to every MCS slice written, to 100 ms.
	ClusterStart, Seed, InitialSync time.Duration
	ChangeCPU                       float64 // this process's CPU s over the changes
	ChangeWall                      time.Duration
}

// headlessFQDN is the clusterset.local name of the headless service svc-0.
func headlessFQDN() string {
	return gen.ServiceName(0) + "." + gen.NamespaceName(0) + ".svc.clusterset.local"
}

// RunMCS starts the member clusters, seeds them, runs the Source and the
// MCS controller in this process, waits for every MCS slice, and measures
// the changes. startDNS may be nil (then D must be 0). The clusters are
// stopped before it returns.
func RunMCS(ctx context.Context, sc MCSScenario, startDNS StartDNS, log *slog.Logger) (*MCSResult, error) {
	sc = sc.withDefaults()
	if err := sc.validate(); err != nil {
		return nil, err
	}
	if sc.DNSChanges > 0 && startDNS == nil {
		return nil, errors.New("DNS changes need a DNS starter")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	res := &MCSResult{Scenario: sc}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	members, stop, started, err := launchMembers(sc.Clusters, log)
	defer stop()
	if err != nil {
		return nil, err
	}
	res.ClusterStart = started
	for i := range members {
		members[i].network = gen.NetworkName(0) // one network: every endpoint in every member's slices
	}
	begin := time.Now()
	seeded, err := seedAll(ctx, members, sc.Services, sc.Endpoints, 1)
	if err != nil {
		return nil, err
	}
	res.Seed = time.Since(begin)
	log.Info("member clusters seeded", "clusters", sc.Clusters, "start", res.ClusterStart, "seed", res.Seed)
	p := newPlanner(members, seeded)
	for i := range sc.Changes {
		mi := i % len(members)
		res.Changes = append(res.Changes, p.next(i, mi, (i/len(members))%sc.Services))
	}
	for d := range sc.DNSChanges {
		res.Changes = append(res.Changes, p.next(sc.Changes+d, d%len(members), 0))
	}

	// Horizon, as `horizon serve --member ...` wires the Source and the
	// MCS controller (cmd/horizon/kube.go), without an xDS server.
	var latest atomic.Pointer[discovery.ClusterSet]
	var src *kubesrc.Source
	reg := prometheus.NewRegistry()
	ctrl, err := mcs.New(mcs.Config{
		Members: func() []mcs.Member {
			var out []mcs.Member
			for _, m := range src.SyncedMembers() {
				out = append(out, m)
			}
			return out
		},
		ClusterSet: latest.Load,
		Logger:     log,
		Metrics:    mcs.NewMetrics(reg),
	})
	if err != nil {
		return nil, err
	}
	src = kubesrc.NewSource(kubesrc.SourceOptions{Logger: log.With("component", "kube"), OnChange: ctrl.Notify, OnUpdate: latest.Store})
	for _, m := range members {
		if err := src.Set(m.config()); err != nil {
			return nil, err
		}
	}
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	begin = time.Now()
	wg.Go(func() {
		if err := src.Run(ctx); err != nil {
			log.Error("kube source ended", "error", err)
		}
	})
	wg.Go(func() {
		if err := ctrl.Run(ctx); err != nil {
			log.Error("mcs controller ended", "error", err)
		}
	})

	// Every member holds an MCS slice of every (service, source), complete:
	// listed every 100 ms, not to load the API servers while they are written.
	want := sc.Services * sc.Clusters
	var rvs []string
	if err := pollEvery(ctx, 4*sc.Timeout, 100*time.Millisecond, func() bool {
		rvs = rvs[:0]
		for _, m := range members {
			n, rv, err := completeSlices(ctx, m, sc.Endpoints)
			if err != nil || n != want {
				return false
			}
			rvs = append(rvs, rv)
		}
		return true
	}); err != nil {
		return nil, fmt.Errorf("waiting for %d complete MCS slices in every member: %w", want, err)
	}
	res.InitialSync = time.Since(begin)
	log.Info("mcs slices written", "per member", want, "duration", res.InitialSync)

	var resolver Resolver
	if startDNS != nil {
		dnsMember := members[len(members)-1]
		if resolver, err = startDNS(dnsMember.cluster.Config); err != nil {
			return nil, fmt.Errorf("coredns for %s: %w", dnsMember.name, err)
		}
		var n int
		if err := poll(ctx, sc.Timeout, func() bool {
			n = answers(ctx, resolver, "")
			return n == sc.Clusters*sc.Endpoints
		}); err != nil {
			return nil, fmt.Errorf("coredns answered %d A records for %s, want %d: %w", n, headlessFQDN(), sc.Clusters*sc.Endpoints, err)
		}
		res.DNSInitial = n
	}

	// The members' watches of Horizon's MCS slices, from the listed state on.
	w := newSliceWatch(res.Changes, len(members))
	for i, m := range members {
		wg.Go(func() { w.run(ctx, i, m, rvs[i]) })
	}

	versions := make([][]string, len(members))
	for mi, ss := range seeded {
		for _, slice := range ss {
			versions[mi] = append(versions[mi], slice.ResourceVersion)
		}
	}
	metricsBefore, err := gatherMCS(reg)
	if err != nil {
		return nil, err
	}
	events := w.events.Load()
	written := make([]int64, len(res.Changes))
	resolved := make([]int64, len(res.Changes))
	cpu := load.CPUSeconds()
	t0 := time.Now()
	for i := range res.Changes {
		ch := &res.Changes[i]
		isDNS := i >= sc.Changes
		dnsDone := make(chan int64, 1)
		dnsCtx, dnsCancel := context.WithTimeout(ctx, sc.Timeout)
		if isDNS {
			go func() { dnsDone <- awaitAnswer(dnsCtx, resolver, load.MarkerAddress(ch.Index)) }()
		}
		slice := ch.slice
		slice.ResourceVersion = versions[ch.member][ch.service]
		written[i] = time.Now().UnixNano()
		updated, err := members[ch.member].cluster.Kube.DiscoveryV1().EndpointSlices(slice.Namespace).Update(ctx, slice, metav1.UpdateOptions{})
		if err != nil {
			dnsCancel()
			return nil, fmt.Errorf("change %d: update endpointslice %s/%s in %s: %w", i, slice.Namespace, slice.Name, ch.Cluster, err)
		}
		versions[ch.member][ch.service] = updated.ResourceVersion
		err = poll(ctx, sc.Timeout, func() bool { return w.complete(i) })
		if isDNS {
			resolved[i] = <-dnsDone
		}
		dnsCancel()
		if err != nil {
			log.Warn("change not seen in every member", "change", i, "error", err)
		}
	}
	res.ChangeCPU = load.CPUSeconds() - cpu
	res.ChangeWall = time.Since(t0)
	// Anything the controller writes late (a resync round) still counts.
	time.Sleep(time.Second)
	metricsAfter, err := gatherMCS(reg)
	if err != nil {
		return nil, err
	}
	n := float64(max(1, len(res.Changes)))
	d := metricsAfter.minus(metricsBefore)
	res.SliceWrites, res.FailedWrites, res.OtherWrites = d.sliceWrites/n, d.failedWrites/n, d.otherWrites/n
	if d.lagCount > 0 {
		res.LagMean = time.Duration(d.lagSum / float64(d.lagCount) * float64(time.Second))
	}
	res.SliceEvents = float64(w.events.Load()-events) / n
	w.summarize(res, written, resolved, sc.Changes, len(members)-1)
	log.Info("mcs changes done", "changes", len(res.Changes), "p50", res.Slice.P50, "p99", res.Slice.P99)
	if res.Missing > 0 {
		return res, fmt.Errorf("%d (change, member) pairs never saw their MCS slice updated", res.Missing)
	}
	return res, nil
}

// seedAll seeds every member in parallel.
func seedAll(ctx context.Context, members []member, services, endpoints, headless int) ([][]*discoveryv1.EndpointSlice, error) {
	seeded := make([][]*discoveryv1.EndpointSlice, len(members))
	errs := make([]error, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Go(func() { seeded[i], errs[i] = seed(ctx, m, services, endpoints, headless) })
	}
	wg.Wait()
	return seeded, errors.Join(errs...)
}

// horizonSlices selects the MCS EndpointSlices Horizon manages.
var horizonSlices = metav1.ListOptions{LabelSelector: discoveryv1.LabelManagedBy + "=" + mcs.ControllerName}

// completeSlices counts the member's MCS slices of Horizon's that hold
// endpoints endpoints, and returns the list's resourceVersion.
func completeSlices(ctx context.Context, m member, endpoints int) (int, string, error) {
	list, err := m.cluster.Kube.DiscoveryV1().EndpointSlices(gen.NamespaceName(0)).List(ctx, horizonSlices)
	if err != nil {
		return 0, "", err
	}
	n := 0
	for _, es := range list.Items {
		if len(es.Endpoints) == endpoints {
			n++
		}
	}
	return n, list.ResourceVersion, nil
}

// answers is the number of A records CoreDNS answers for the headless
// service, or, with a marker, 1 if the marker is among them and 0 if not.
func answers(ctx context.Context, r Resolver, marker string) int {
	msg, err := r.Query(ctx, headlessFQDN(), dns.TypeA)
	if err != nil || msg.Rcode != dns.RcodeSuccess {
		return 0
	}
	n := 0
	for _, rr := range msg.Answer {
		if a, ok := rr.(*dns.A); ok {
			if marker == "" {
				n++
			} else if addr, ok := netip.AddrFromSlice(a.A.To4()); ok && addr.String() == marker {
				return 1
			}
		}
	}
	return n
}

// awaitAnswer queries CoreDNS every 2 ms until it answers with marker, and
// returns when (Unix ns; 0 if never before ctx ended).
func awaitAnswer(ctx context.Context, r Resolver, marker string) int64 {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		if answers(ctx, r, marker) == 1 {
			return time.Now().UnixNano()
		}
		select {
		case <-ctx.Done():
			return 0
		case <-t.C:
		}
	}
}

// sliceWatch records, per (change, member), when the member's watch first
// delivered the changed (service, source)'s MCS slice holding the change's
// marker, and counts the events of Horizon's MCS slices.
type sliceWatch struct {
	changes []Change
	byAddr  map[string]int // marker -> change
	members int
	events  atomic.Int64

	mu   sync.Mutex
	seen [][]int64 // [change][member] Unix ns
	left []int     // members yet to see each change
}

func newSliceWatch(changes []Change, members int) *sliceWatch {
	w := &sliceWatch{changes: changes, byAddr: map[string]int{}, members: members, seen: make([][]int64, len(changes)), left: make([]int, len(changes))}
	for i, c := range changes {
		w.byAddr[load.MarkerAddress(c.Index)] = i
		w.seen[i] = make([]int64, members)
		w.left[i] = members
	}
	return w
}

// run watches member mi's MCS slices from resourceVersion rv until ctx
// ends, re-listing when the watch closes.
func (w *sliceWatch) run(ctx context.Context, mi int, m member, rv string) {
	api := m.cluster.Kube.DiscoveryV1().EndpointSlices(gen.NamespaceName(0))
	for ctx.Err() == nil {
		opts := horizonSlices
		opts.ResourceVersion = rv
		opts.AllowWatchBookmarks = false
		wi, err := api.Watch(ctx, opts)
		if err == nil {
			for ev := range wi.ResultChan() {
				at := time.Now().UnixNano()
				es, ok := ev.Object.(*discoveryv1.EndpointSlice)
				if !ok {
					break // an error event: list again
				}
				rv = es.ResourceVersion
				w.events.Add(1)
				if ev.Type != watch.Deleted {
					w.saw(mi, es, at)
				}
			}
			wi.Stop()
		}
		if ctx.Err() != nil {
			return
		}
		// Closed or failed: list again; what changed meanwhile is seen now.
		list, err := api.List(ctx, horizonSlices)
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		at := time.Now().UnixNano()
		for i := range list.Items {
			w.saw(mi, &list.Items[i], at)
		}
		rv = list.ResourceVersion
	}
}

func (w *sliceWatch) saw(mi int, es *discoveryv1.EndpointSlice, at int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, e := range es.Endpoints {
		for _, a := range e.Addresses {
			i, ok := w.byAddr[a]
			if !ok || w.seen[i][mi] != 0 {
				continue
			}
			c := w.changes[i]
			if es.Labels[mcs.LabelServiceName] != c.Service.Name || es.Labels[mcs.LabelSourceCluster] != c.Cluster {
				continue
			}
			w.seen[i][mi] = at
			w.left[i]--
		}
	}
}

// complete reports whether every member saw change i.
func (w *sliceWatch) complete(i int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.left[i] == 0
}

// summarize fills the result's latencies: changes from dnsFrom on are the
// DNS changes, CoreDNS runs against member dnsMember.
func (w *sliceWatch) summarize(res *MCSResult, written, resolved []int64, dnsFrom, dnsMember int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var all, last, dnsSlice, answered []time.Duration
	for i, seen := range w.seen {
		var latest int64
		complete := true
		for _, at := range seen {
			if at == 0 {
				res.Missing++
				complete = false
				continue
			}
			all = append(all, time.Duration(at-written[i]))
			latest = max(latest, at)
		}
		if complete {
			last = append(last, time.Duration(latest-written[i]))
		}
		if i >= dnsFrom {
			if at := seen[dnsMember]; at != 0 {
				dnsSlice = append(dnsSlice, time.Duration(at-written[i]))
			}
			if resolved[i] != 0 {
				answered = append(answered, time.Duration(resolved[i]-written[i]))
			}
		}
	}
	res.Slice, res.LastMember = summarize(all), summarize(last)
	res.DNSSlice, res.DNS = summarize(dnsSlice), summarize(answered)
}

// mcsCounters are the controller's metrics a scenario reads.
type mcsCounters struct {
	sliceWrites, failedWrites, otherWrites float64
	lagSum                                 float64
	lagCount                               uint64
}

func (a mcsCounters) minus(b mcsCounters) mcsCounters {
	return mcsCounters{
		sliceWrites: a.sliceWrites - b.sliceWrites, failedWrites: a.failedWrites - b.failedWrites,
		otherWrites: a.otherWrites - b.otherWrites, lagSum: a.lagSum - b.lagSum, lagCount: a.lagCount - b.lagCount,
	}
}

func gatherMCS(reg *prometheus.Registry) (mcsCounters, error) {
	var c mcsCounters
	mfs, err := reg.Gather()
	if err != nil {
		return c, err
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			result := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" {
					result = l.GetValue()
				}
			}
			switch mf.GetName() {
			case "horizon_mcs_endpointslice_writes_total":
				if result == "failed" {
					c.failedWrites += m.GetCounter().GetValue()
				} else {
					c.sliceWrites += m.GetCounter().GetValue()
				}
			case "horizon_mcs_writes_total":
				c.otherWrites += m.GetCounter().GetValue()
			case "horizon_mcs_endpointslice_lag_seconds":
				c.lagSum += m.GetHistogram().GetSampleSum()
				c.lagCount += m.GetHistogram().GetSampleCount()
			}
		}
	}
	return c, nil
}

// WriteMCSTable prints the machine, then a markdown table with one row per
// result.
func WriteMCSTable(w io.Writer, machine string, results []*MCSResult) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Machine: %s\n\n", machine)
	cols := []string{
		"K", "S", "E/cluster", "changes", "write→MCS slice, each member p50 / p99 / max", "write→last member p50 / p99 / max",
		"missing", "slice writes/change", "slice events/change", "other writes/change", "failed", "controller lag mean",
		"DNS changes", "write→DNS answer p50 / p99 / max", "write→slice in DNS member p50 / p99 / max", "CPU ms/change", "initial sync",
	}
	fmt.Fprintf(&b, "| %s |\n|%s\n", strings.Join(cols, " | "), strings.Repeat("---:|", len(cols)))
	for _, r := range results {
		sc := r.Scenario
		n := float64(max(1, len(r.Changes)))
		row := []string{
			strconv.Itoa(sc.Clusters), strconv.Itoa(sc.Services), strconv.Itoa(sc.Endpoints), strconv.Itoa(sc.Changes + sc.DNSChanges),
			r.Slice.String(), r.LastMember.String(), strconv.Itoa(r.Missing),
			f2(r.SliceWrites), f2(r.SliceEvents), f2(r.OtherWrites), f2(r.FailedWrites), ms(r.LagMean),
			strconv.Itoa(sc.DNSChanges), r.DNS.String(), r.DNSSlice.String(),
			strconv.FormatFloat(r.ChangeCPU/n*1000, 'f', 1, 64), ms(r.InitialSync),
		}
		fmt.Fprintf(&b, "| %s |\n", strings.Join(row, " | "))
	}
	_, err := w.Write(b.Bytes())
	return err
}

func f2(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }
