// Package health probes the east-west gateways a ClusterSet hands out and
// withdraws those that stop answering, so that proxies on other networks fail
// over (by the priorities xds renders) without relying on outlier detection.
//
// A Prober sits between the discovery sources and the xDS server:
//
//	file.Watcher / kube.Source ──OnUpdate──► Prober.In
//	                                             │ ClusterSet minus the gateways that are down
//	                                             ▼
//	                                         Options.Out (xds.Server.Update)
//
// Every distinct gateway address of every cluster (IP literals only: xds never
// hands out host names) is probed with a TCP connect. Out is called with the
// input ClusterSet minus the gateways that are down whenever the input or a
// gateway's health changes, and only when the result's version differs from
// the last one sent. A gateway nobody has probed yet counts as up, so a fresh
// start or a new gateway is served at once.
//
// Health, with the defaults (Interval 2s with ±10% jitter, Timeout 1s, Fall 2,
// Rise 2):
//
//   - a gateway is down after Fall consecutive failed probes, and up again
//     after Rise consecutive successful ones (a gateway never probed before is
//     up after its first success and down after Fall failures);
//   - a gateway that stops accepting connections is withdrawn within
//     Fall × (1.1 × Interval + Timeout) ≈ 6.4s (≈ 4.4s when connections are
//     refused rather than dropped), and served again within
//     Rise × 1.1 × Interval + Timeout ≈ 5.4s after it listens again;
//   - the xDS server's debounce (20ms by default) comes on top.
//
// These hold while the probe budget keeps up: at most Concurrency probes run at
// once and at most Rate start per second, so with N gateways each is probed
// about every max(Interval, N/Rate), and dropped connections (each holding a
// slot for Timeout) slow the cadence once more than Concurrency/Timeout of them
// fail per second.
//
// When no gateway of any network answers (at least two networks have
// gateways, all of them down) the prober assumes it is the one cut off, not
// the whole mesh, and withdraws nothing until one answers again: the control
// plane never makes config worse on evidence that only says its own network is
// broken. A single network losing all its gateways is withdrawn as usual.
package health

import (
	"cmp"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/horizonmesh/horizon/discovery"
)

// Defaults for Options fields left zero.
const (
	DefaultInterval    = 2 * time.Second
	DefaultTimeout     = time.Second
	DefaultFall        = 2
	DefaultRise        = 2
	DefaultConcurrency = 64
	DefaultRate        = 500 // probe starts per second
)

// DialFunc opens a connection; (*net.Dialer).DialContext is one.
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// Clock tells the time and sets timers: probe schedules and probe timeouts
// follow it. clock.RealClock (k8s.io/utils/clock) is one; that package's
// testing.FakeClock lets a test step time.
type Clock interface {
	Now() time.Time
	NewTimer(time.Duration) clock.Timer
	AfterFunc(time.Duration, func()) clock.Timer
}

// Options configure a Prober. Only Out is required.
type Options struct {
	// Out receives every ClusterSet to serve: the input minus the gateways
	// that are down. It is called with the Prober's lock held, from In's
	// caller or from Run's goroutine, so it must not block and must not call
	// the Prober; xds.Server.Update qualifies.
	Out func(*discovery.ClusterSet)
	// Interval between the end of one probe of a gateway and the start of
	// the next, jittered by ±10%.
	Interval time.Duration
	// Timeout of one TCP connect.
	Timeout time.Duration
	// Fall is how many consecutive failures take a gateway down; Rise how
	// many consecutive successes bring it back.
	Fall, Rise int
	// Concurrency bounds the probes in flight (and so the goroutines).
	Concurrency int
	// Rate bounds the probes started per second, over all gateways.
	Rate float64
	// Dial opens probe connections; nil means a net.Dialer.
	Dial DialFunc
	// Clock times probes; nil means the system clock.
	Clock   Clock
	Logger  *slog.Logger // nil logs nothing
	Metrics *Metrics     // nil records nothing
}

// State is a gateway's health as the Prober sees it.
type State uint8

// Gateway states. Unprobed gateways are served.
const (
	Unprobed State = iota
	Up
	Down
)

func (s State) String() string {
	switch s {
	case Up:
		return "up"
	case Down:
		return "down"
	}
	return "unprobed"
}

// Prober probes the gateways of the latest ClusterSet and passes it on
// without the ones that are down. Create it with New, feed it with In, and
// run it with Run.
type Prober struct {
	out         func(*discovery.ClusterSet)
	interval    time.Duration
	timeout     time.Duration
	fall, rise  int
	concurrency int
	gap         time.Duration // 1/Rate
	dial        DialFunc
	clock       Clock
	log         *slog.Logger
	metrics     *Metrics

	kick chan struct{} // In → Run: targets were added

	mu        sync.Mutex
	input     *discovery.ClusterSet
	targets   map[discovery.Gateway]*target
	published string // version of the last ClusterSet sent to Out
	blind     bool
}

// target is one gateway address being probed. Its fields are guarded by
// Prober.mu; gw, addr and the labels never change.
type target struct {
	gw       discovery.Gateway
	addr     string   // host:port
	networks []string // the networks that list it, sorted
	network  string   // metric label: networks joined by ","

	state      State
	fails, oks int // consecutive
	lastErr    error
	lastProbe  time.Time
	scheduled  bool // Run has it in its schedule
	removed    bool // no longer in the input
}

// New returns a Prober that sends its ClusterSets to opts.Out.
func New(opts Options) *Prober {
	if opts.Out == nil {
		panic("health.New: Options.Out is nil")
	}
	p := &Prober{
		out:         opts.Out,
		interval:    cmp.Or(max(opts.Interval, 0), DefaultInterval),
		timeout:     cmp.Or(max(opts.Timeout, 0), DefaultTimeout),
		fall:        cmp.Or(max(opts.Fall, 0), DefaultFall),
		rise:        cmp.Or(max(opts.Rise, 0), DefaultRise),
		concurrency: cmp.Or(max(opts.Concurrency, 0), DefaultConcurrency),
		dial:        opts.Dial,
		clock:       opts.Clock,
		log:         opts.Logger,
		metrics:     opts.Metrics,
		kick:        make(chan struct{}, 1),
		targets:     map[discovery.Gateway]*target{},
	}
	rate := opts.Rate
	if rate <= 0 {
		rate = DefaultRate
	}
	p.gap = time.Duration(float64(time.Second) / rate)
	if p.dial == nil {
		p.dial = (&net.Dialer{}).DialContext
	}
	if p.clock == nil {
		p.clock = clock.RealClock{}
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	return p
}

// In takes a new ClusterSet from a source; it has the signature of the
// sources' OnUpdate. It never waits for a probe: it calls Out at once with cs
// minus the gateways already known to be down (none on a fresh start), and
// Run probes the gateways that are new. In may be called before Run starts.
func (p *Prober) In(cs *discovery.ClusterSet) {
	if cs == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.input = cs
	want := map[discovery.Gateway][]string{}
	for _, c := range cs.Clusters {
		for _, g := range c.Gateways {
			if _, err := netip.ParseAddr(g.Address); err != nil {
				continue // xds does not hand out host names; nothing to probe
			}
			want[g] = append(want[g], c.Network)
		}
	}
	for g, nets := range want {
		slices.Sort(nets)
		want[g] = slices.Compact(nets)
	}
	moved := map[discovery.Gateway]*target{}
	for g, t := range p.targets {
		if nets, ok := want[g]; !ok || !slices.Equal(nets, t.networks) {
			p.metrics.forget(t.network, t.addr)
			delete(p.targets, g)
			t.removed = true
			if ok {
				moved[g] = t // listed by other networks now: new labels, same health
			}
		}
	}
	for g, nets := range want {
		if _, ok := p.targets[g]; ok {
			continue
		}
		t := &target{gw: g, addr: g.String(), networks: nets, network: strings.Join(nets, ",")}
		if old := moved[g]; old != nil {
			t.state, t.fails, t.oks, t.lastErr, t.lastProbe = old.state, old.fails, old.oks, old.lastErr, old.lastProbe
		}
		p.targets[g] = t
		p.metrics.add(t.network, t.addr, t.state != Down)
	}
	p.publishLocked()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// publishLocked sends Out the input minus the gateways that are down, unless
// that is what it sent last.
func (p *Prober) publishLocked() {
	if p.input == nil {
		return
	}
	// Blind: at least two networks have probed gateways, and none has one up.
	alive := map[string]bool{}
	down := 0
	for _, t := range p.targets {
		if t.state == Down {
			down++
		}
		for _, n := range t.networks {
			alive[n] = alive[n] || t.state != Down
		}
	}
	blind := len(alive) >= 2
	for _, up := range alive {
		blind = blind && !up
	}
	if blind != p.blind {
		p.blind = blind
		if blind {
			p.log.Error("no gateway of any network answers: the control plane's own network is suspect; withdrawing none", "gateways", len(p.targets), "networks", len(alive))
		} else {
			p.log.Info("gateways answer again; withdrawing the ones that are down", "down", down)
		}
	}
	out := p.input
	if down > 0 && !blind {
		out = p.input.WithoutGateways(func(g discovery.Gateway) bool {
			t := p.targets[g]
			return t != nil && t.state == Down
		})
	} else {
		down = 0
	}
	p.metrics.state(down, blind)
	if out.Version() == p.published {
		return
	}
	p.published = out.Version()
	p.out(out)
}

// result is the outcome of one probe.
type result struct {
	t          *target
	err        error
	start, end time.Time
}

// item is a probe due at a time.
type item struct {
	t  *target
	at time.Time
}

// schedule is a min-heap of probes by due time.
type schedule []item

func (s schedule) Len() int           { return len(s) }
func (s schedule) Less(i, j int) bool { return s[i].at.Before(s[j].at) }
func (s schedule) Swap(i, j int)      { s[i], s[j] = s[j], s[i] }
func (s *schedule) Push(x any)        { *s = append(*s, x.(item)) }
func (s *schedule) Pop() any {
	old := *s
	it := old[len(old)-1]
	*s = old[:len(old)-1]
	return it
}

// Run probes the gateways of the latest ClusterSet until ctx is done, and
// returns nil then, after the probes in flight have ended. It starts at most
// Concurrency goroutines at a time, one per probe in flight. Run must not be
// called twice at once.
func (p *Prober) Run(ctx context.Context) error {
	var (
		wg       sync.WaitGroup
		results  = make(chan result, p.concurrency) // room for every probe in flight: a probe never blocks
		queue    schedule
		inflight int
		earliest time.Time   // rate limit: no probe starts before this
		timer    clock.Timer // a new one each time: a stopped fake timer may hold a stale tick
	)
	defer wg.Wait()
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	p.scheduleNew(&queue, p.clock.Now())
	for {
		var wake <-chan time.Time
		if timer != nil {
			timer.Stop()
		}
		if inflight < p.concurrency && queue.Len() > 0 {
			at := queue[0].at
			if earliest.After(at) {
				at = earliest
			}
			timer = p.clock.NewTimer(at.Sub(p.clock.Now()))
			wake = timer.C()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-p.kick:
			p.scheduleNew(&queue, p.clock.Now())
		case r := <-results:
			inflight--
			if p.record(r) {
				heap.Push(&queue, item{t: r.t, at: r.end.Add(p.jittered())})
			}
		case now := <-wake:
			it := heap.Pop(&queue).(item)
			if p.gone(it.t) {
				continue
			}
			inflight++
			earliest = later(now, earliest).Add(p.gap)
			wg.Add(1)
			go func() {
				defer wg.Done()
				results <- p.probe(ctx, it.t)
			}()
		}
	}
}

// scheduleNew puts the targets Run does not know yet into its schedule, due
// now: the rate limit spreads them out.
func (p *Prober) scheduleNew(queue *schedule, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range p.targets {
		if !t.scheduled {
			t.scheduled = true
			heap.Push(queue, item{t: t, at: now})
		}
	}
}

func (p *Prober) gone(t *target) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return t.removed
}

func (p *Prober) jittered() time.Duration {
	return time.Duration(float64(p.interval) * (0.9 + 0.2*rand.Float64()))
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// errNoAnswer cancels a probe that has not connected within Timeout.
var errNoAnswer = errors.New("no answer within the probe timeout")

// probe connects to the gateway and closes the connection at once.
func (p *Prober) probe(ctx context.Context, t *target) result {
	start := p.clock.Now()
	dctx, cancel := context.WithCancelCause(ctx)
	timeout := p.clock.AfterFunc(p.timeout, func() { cancel(errNoAnswer) })
	conn, err := p.dial(dctx, "tcp", t.addr)
	timeout.Stop()
	if err != nil && context.Cause(dctx) == errNoAnswer {
		err = fmt.Errorf("dial tcp %s: no answer within %v", t.addr, p.timeout)
	}
	cancel(nil)
	if err == nil {
		// Reset rather than close gracefully: thousands of probes a minute
		// would otherwise leave as many sockets in TIME_WAIT here.
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = conn.Close()
	}
	return result{t: t, err: err, start: start, end: p.clock.Now()}
}

// record applies a probe's result and publishes on a change of state. It
// reports whether the target is still probed.
func (p *Prober) record(r result) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := r.t
	if t.removed {
		return false
	}
	p.metrics.probed(t.network, t.addr, r.err == nil, r.end.Sub(r.start).Seconds())
	t.lastProbe, t.lastErr = r.end, r.err
	was := t.state
	if r.err == nil {
		t.oks, t.fails = t.oks+1, 0
		if t.state == Unprobed || (t.state == Down && t.oks >= p.rise) {
			t.state = Up
		}
	} else {
		t.fails, t.oks = t.fails+1, 0
		if t.state != Down && t.fails >= p.fall {
			t.state = Down
		}
	}
	if t.state == was {
		return true
	}
	p.metrics.setUp(t.network, t.addr, t.state != Down)
	switch {
	case t.state == Down:
		p.log.Warn("gateway down", "network", t.network, "address", t.addr, "failures", t.fails, "error", r.err)
	case was == Down:
		p.log.Info("gateway up again", "network", t.network, "address", t.addr)
	}
	p.publishLocked()
	return true
}

// GatewayStatus is one probed gateway, for debug pages.
type GatewayStatus struct {
	Gateway             discovery.Gateway
	Networks            []string
	State               State
	ConsecutiveFailures int
	LastProbe           time.Time // zero before the first probe
	LastError           string
}

// Status is the Prober's current view.
type Status struct {
	// Blind is set while no network's gateway answers and nothing is withdrawn.
	Blind    bool
	Gateways []GatewayStatus // sorted by address, port
}

// Status returns every probed gateway and its health.
func (p *Prober) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := Status{Blind: p.blind, Gateways: make([]GatewayStatus, 0, len(p.targets))}
	for _, t := range p.targets {
		gs := GatewayStatus{Gateway: t.gw, Networks: slices.Clone(t.networks), State: t.state, ConsecutiveFailures: t.fails, LastProbe: t.lastProbe}
		if t.lastErr != nil {
			gs.LastError = t.lastErr.Error()
		}
		st.Gateways = append(st.Gateways, gs)
	}
	slices.SortFunc(st.Gateways, func(a, b GatewayStatus) int {
		return cmp.Or(cmp.Compare(a.Gateway.Address, b.Gateway.Address), cmp.Compare(a.Gateway.Port, b.Gateway.Port))
	})
	return st
}
