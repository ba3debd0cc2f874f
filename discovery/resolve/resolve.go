// Package resolve is a control-plane stage of Horizon's pipeline: it
// resolves the DNS names of external services (discovery/external.go) for
// the views that cannot resolve them themselves. Envoy resolves a
// STRICT_DNS or LOGICAL_DNS cluster on its own; grpc-go has no STRICT_DNS
// cluster (its CDS parser accepts EDS, LOGICAL_DNS and aggregate clusters
// only), so a proxyless client is served the addresses Horizon found, as
// EDS endpoints, for both DNS resolutions alike.
//
//	file.Watcher / kube.Source ──OnUpdate──► Resolver.In
//	                                             │ ClusterSet.WithResolved(answers)
//	                                             ▼
//	                                         Options.Out (gateway health, then the views)
//
// In passes every ClusterSet on at once with the answers it has (a change
// never waits for DNS), and resolves the names it has no answer for right
// away. Every Interval (30s by default) it resolves every name again; Go's
// resolver does not expose record TTLs, so the interval bounds how stale an
// answer gets: a changed record reaches proxyless clients within Interval
// plus the time one round of lookups takes (each at most Timeout). Out is
// called only when the result's version changes.
//
// A failed lookup (an error, a timeout, or no address) keeps the name's last
// good addresses, is logged and counted
// (horizon_external_dns_lookups_total{result="failed"}), and the name's
// error goes into the ClusterSet (ExternalService.ResolveErrors), which the
// proxyless views' notes show. Names no longer in the input are forgotten.
// At most discovery.MaxResolvedAddresses addresses of a name are kept, and
// at most Concurrency lookups run at once.
package resolve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/horizonmesh/horizon/discovery"
)

// Lookup resolves a host name to IP addresses; *net.Resolver is one.
type Lookup interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Defaults of Options.
const (
	DefaultInterval    = 30 * time.Second
	DefaultTimeout     = 5 * time.Second
	DefaultConcurrency = 8
)

// Options configure a Resolver. Out is required.
type Options struct {
	// Lookup resolves names; nil uses net.DefaultResolver.
	Lookup Lookup
	// Interval is how often every name is resolved again (0: DefaultInterval).
	Interval time.Duration
	// Timeout bounds one lookup (0: DefaultTimeout).
	Timeout time.Duration
	// Concurrency bounds the lookups in flight (0: DefaultConcurrency).
	Concurrency int
	// Out takes each ClusterSet with the answers, when its version changes.
	// It is called from In's and Run's goroutines, one call at a time, and
	// must not block for long.
	Out     func(*discovery.ClusterSet)
	Logger  *slog.Logger // nil logs nothing
	Metrics *Metrics     // nil records nothing
}

// Resolver is the stage. Create it with New; run it with Run.
type Resolver struct {
	o    Options
	kick chan struct{}

	outMu sync.Mutex // one Out at a time, in order
	mu    sync.Mutex
	input *discovery.ClusterSet
	good  map[string][]string // last good answer, by name
	fail  map[string]string   // why the last lookup failed, by name
	sent  string              // version of the last ClusterSet sent
}

// New returns a Resolver of o.
func New(o Options) *Resolver {
	if o.Out == nil {
		panic("resolve.New: Options.Out is nil")
	}
	if o.Lookup == nil {
		o.Lookup = net.DefaultResolver
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Resolver{o: o, kick: make(chan struct{}, 1), good: map[string][]string{}, fail: map[string]string{}}
}

// In takes a ClusterSet from the source: it is passed on at once with the
// answers at hand, and names without one are resolved soon (by Run). It
// never blocks on DNS.
func (r *Resolver) In(cs *discovery.ClusterSet) {
	if cs == nil {
		return
	}
	r.mu.Lock()
	r.input = cs
	names := names(cs)
	for n := range r.good {
		if !names[n] {
			delete(r.good, n)
		}
	}
	for n := range r.fail {
		if !names[n] {
			delete(r.fail, n)
		}
	}
	fresh := false
	for n := range names {
		if _, ok := r.good[n]; !ok {
			if _, failed := r.fail[n]; !failed {
				fresh = true
			}
		}
	}
	r.mu.Unlock()
	r.o.Metrics.unreachable(cs)
	r.publish()
	if fresh {
		select {
		case r.kick <- struct{}{}:
		default:
		}
	}
}

// Run resolves names until ctx is done: those In has no answer for at
// once, every name every Interval. It returns nil when ctx is done.
func (r *Resolver) Run(ctx context.Context) error {
	tick := time.NewTicker(r.o.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.kick:
			r.round(ctx, true)
		case <-tick.C:
			r.round(ctx, false)
		}
	}
}

// round resolves the input's names (only those without an answer when
// onlyNew), records the answers and passes the result on.
func (r *Resolver) round(ctx context.Context, onlyNew bool) {
	r.mu.Lock()
	cs := r.input
	var todo []string
	if cs != nil {
		for n := range names(cs) {
			if _, ok := r.good[n]; onlyNew && ok {
				continue
			}
			todo = append(todo, n)
		}
	}
	r.mu.Unlock()
	if len(todo) == 0 {
		return
	}
	slices.Sort(todo)
	type answer struct {
		addrs []string
		err   error
	}
	answers := make([]answer, len(todo))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.o.Concurrency)
	for i, n := range todo {
		g.Go(func() error {
			addrs, err := r.lookup(gctx, n)
			answers[i] = answer{addrs, err}
			return nil
		})
	}
	g.Wait()
	if ctx.Err() != nil {
		return
	}
	r.mu.Lock()
	current := names(r.input)
	for i, n := range todo {
		if !current[n] {
			continue // dropped while it was looked up
		}
		a := answers[i]
		if a.err != nil {
			r.o.Metrics.lookup(false)
			r.o.Logger.Warn("external service name not resolved; its last good addresses keep serving", "name", n, "error", a.err)
			r.fail[n] = a.err.Error()
			continue
		}
		r.o.Metrics.lookup(true)
		delete(r.fail, n)
		r.good[n] = a.addrs
	}
	r.o.Metrics.names(len(r.good), len(r.fail))
	r.mu.Unlock()
	r.publish()
}

// lookup resolves one name to its sorted IP addresses, at most
// discovery.MaxResolvedAddresses of them; no address is an error.
func (r *Resolver) lookup(ctx context.Context, name string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, r.o.Timeout)
	defer cancel()
	ips, err := r.o.Lookup.LookupNetIP(ctx, "ip", name)
	if err != nil {
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) {
			return nil, fmt.Errorf("%s", dnsErr.Err) // the reason, without the server's address
		}
		return nil, err
	}
	var out []string
	for _, ip := range ips {
		out = append(out, ip.Unmap().String())
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) == 0 {
		return nil, errors.New("no address")
	}
	if len(out) > discovery.MaxResolvedAddresses {
		out = out[:discovery.MaxResolvedAddresses]
	}
	return out, nil
}

// publish passes the input on with the current answers, when that changes
// the version last sent.
func (r *Resolver) publish() {
	r.outMu.Lock()
	defer r.outMu.Unlock()
	r.mu.Lock()
	cs := r.input
	var out *discovery.ClusterSet
	if cs != nil {
		out = cs.WithResolved(r.good, r.fail)
	}
	if out == nil || out.Version() == r.sent {
		r.mu.Unlock()
		return
	}
	r.sent = out.Version()
	r.mu.Unlock()
	r.o.Out(out)
}

// Answers returns the last good addresses of every name, for debug pages.
func (r *Resolver) Answers() map[string][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string][]string, len(r.good))
	for n, a := range r.good {
		out[n] = slices.Clone(a)
	}
	return out
}

// names returns the DNS names of cs's external services.
func names(cs *discovery.ClusterSet) map[string]bool {
	out := map[string]bool{}
	if cs == nil {
		return out
	}
	for i := range cs.External {
		for _, n := range cs.External[i].DNSNames() {
			out[n] = true
		}
	}
	return out
}

// Once resolves every DNS name of cs's external services now, once, and
// returns cs with the answers (failures included): for one-shot tools such
// as `horizon view`, which show what a running server would serve. o.Out
// is not used.
func Once(ctx context.Context, cs *discovery.ClusterSet, o Options) *discovery.ClusterSet {
	out := cs
	o.Out = func(c *discovery.ClusterSet) { out = c }
	r := New(o)
	r.In(cs)
	r.round(ctx, false)
	return out
}
