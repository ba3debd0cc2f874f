// Package health is a control-plane stage of Horizon's pipeline: it probes
// the east-west gateways a ClusterSet hands out and withdraws those that stop
// answering, so that proxies on other networks fail over (by the priorities
// xds renders) without relying on outlier detection.
//
// A Prober sits between the discovery sources and the xDS server:
//
//	file.Watcher / kube.Source ──OnUpdate──► Prober.In
//	                                             │ ClusterSet minus the gateways that are down
//	                                             ▼
//	                                         Options.Out (server.Server.Update)
//
// Every distinct gateway address of every cluster (IP literals only: xds never
// hands out host names) is probed with a TCP connect. Out is called with the
// input ClusterSet minus the gateways that are down whenever the input changes
// or a round of probes changes what is withdrawn, and only when the result's
// version differs from the last one sent. A gateway nobody has probed yet
// counts as up, so a fresh start or a new gateway is served at once.
//
// # Rounds
//
// The Prober probes in rounds. A round probes every gateway once, in address
// order (a gateway that In adds while a round runs joins it), and ends when
// its last probe has ended, which a probe does within Timeout. Only then are
// the round's results applied, all together, and Out called at most once:
// gateways that fail in the same round are judged together. A round starts
// Interval ±10% after the previous one started, or as soon as that one ends
// if it takes longer; between rounds, a gateway In adds starts one at once.
//
// A round is blind when it probed gateways of at least two networks and none
// answered. The Prober then assumes that it is the one cut off, not the whole
// mesh. A blind round changes no gateway's state and starts every gateway's
// counts of failures and successes over (the failures just before a cut are
// most likely its beginning), and after it nothing is withdrawn until a round
// is answered again. So a control plane cut off from every network does not
// publish a withdrawal, not even for a moment (but see the last paragraph);
// gateways that were down before the cut are served until it ends. A gateway
// that fails while any other answers is withdrawn as usual, and so are all the
// gateways of a network while another network's gateways answer, or while it
// is the only network with gateways.
//
// Health, with the defaults (Interval 2s, Timeout 1s, Fall 2, Rise 2), where
// R is how long a round takes (Timeout when one of its probes times out;
// N/Rate, next to nothing, when all N are answered or refused at once):
//
//   - a gateway is down after failing in Fall rounds in a row, and up again
//     after answering in Rise rounds in a row (a gateway never probed before
//     is up after its first success and down after Fall failures);
//   - a gateway that stops accepting connections is withdrawn within
//     Fall × 1.1 × Interval + R ≈ 5.4s (≈ 4.4s when connections are refused
//     rather than dropped and the other gateways answer), and served again
//     within Rise × 1.1 × Interval + R ≈ 5.4s after it listens again;
//   - the xDS server's debounce (20ms by default) comes on top.
//
// These hold while rounds take less than 1.1 × Interval. At most Concurrency
// probes run at once and at most Rate start per second, so a round of N
// gateways takes at least N/Rate, and Timeout more for every Concurrency of
// its probes that time out. A round that takes longer than 1.1 × Interval is
// followed by the next as soon as it ends: each gateway is then probed about
// every R rather than every Interval, and R replaces 1.1 × Interval above.
//
// A cut that begins or ends while a round's probes run splits that round:
// some of its probes answer, so it is not blind. With Fall 1, the gateways a
// round probes after a cut began go down at once: they are withdrawn until
// the next round (blind), and again once the cut ends, until they have
// answered Rise times. With Fall 2, only a cut that begins in one round and
// ends in the next withdraws the gateways it failed in both. With a larger
// Fall, a cut long enough to fail a gateway Fall times spans a whole round,
// which is blind and starts the counts over.
package health

import (
	"cmp"
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

// DialFunc opens a connection; (*net.Dialer).DialContext is one. It must
// return once ctx is done: a round waits for every one of its probes.
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// Clock tells the time and sets timers: rounds and probe timeouts follow it.
// clock.RealClock (k8s.io/utils/clock) is one; that package's
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
	// the Prober; server.Server.Update qualifies.
	Out func(*discovery.ClusterSet)
	// Interval between the starts of two rounds, jittered by ±10%. A round
	// that takes longer is followed by the next as soon as it ends.
	Interval time.Duration
	// Timeout of one TCP connect.
	Timeout time.Duration
	// Fall is how many rounds in a row a gateway must fail in to go down;
	// Rise how many it must answer in to come back. Blind rounds do not
	// count, and start both counts over.
	Fall, Rise int
	// Concurrency bounds the probes in flight (and so the goroutines).
	Concurrency int
	// Rate bounds the probes started per second, over all gateways.
	Rate float64
	// Dial opens probe connections; nil means a net.Dialer.
	Dial DialFunc
	// Clock times rounds and probes; nil means the system clock.
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
	rand        func() float64 // in [0, 1), for the jitter
	log         *slog.Logger
	metrics     *Metrics

	kick chan struct{} // In → Run: gateways were added

	mu        sync.Mutex
	input     *discovery.ClusterSet
	targets   map[discovery.Gateway]*target
	published string // version of the last ClusterSet sent to Out
	round     uint64 // the latest round begun; rounds are numbered from 1
	ended     uint64 // rounds ended
	blind     bool   // the latest round that had results was blind
}

// target is one gateway address being probed. Its fields are guarded by
// Prober.mu; gw, addr and the labels never change.
type target struct {
	gw       discovery.Gateway
	addr     string   // host:port
	networks []string // the networks that list it, sorted
	network  string   // metric label: networks joined by ","

	state      State
	fails, oks int // consecutive rounds
	lastErr    error
	lastProbe  time.Time
	round      uint64 // the latest round it joined
	removed    bool   // no longer in the input
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
		rand:        rand.Float64,
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
			k := probeKey(g)
			want[k] = append(want[k], c.Network)
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
	added := false
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
		added = true
	}
	p.publishLocked()
	if added {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
}

// probeKey is what is probed for a gateway: its address and port. An
// address advertised to one network only (ForNetwork) and the same address
// advertised to all are one target, probed once, and withdrawn together.
func probeKey(g discovery.Gateway) discovery.Gateway {
	return discovery.Gateway{Address: g.Address, Port: g.Port}
}

// publishLocked sends Out the input minus the gateways that are down, unless
// the latest round was blind, and unless that is what it sent last.
func (p *Prober) publishLocked() {
	if p.input == nil {
		return
	}
	down := 0
	for _, t := range p.targets {
		if t.state == Down {
			down++
		}
	}
	out := p.input
	if down > 0 && !p.blind {
		out = p.input.WithoutGateways(func(g discovery.Gateway) bool {
			t := p.targets[probeKey(g)]
			return t != nil && t.state == Down
		})
	} else {
		down = 0
	}
	p.metrics.state(down, p.blind)
	if out.Version() == p.published {
		return
	}
	p.published = out.Version()
	p.out(out)
}

// round is the round of probes in progress. Only Run's goroutine uses it.
type round struct {
	id      uint64
	todo    []*target // not probed yet, in address order
	probing int       // probes started and not ended
	results []result
}

// result is the outcome of one probe.
type result struct {
	t          *target
	err        error
	start, end time.Time
}

// Run probes the gateways of the latest ClusterSet, round after round, until
// ctx is done, and returns nil then, after the probes in flight have ended.
// It starts at most Concurrency goroutines at a time, one per probe in
// flight. Run must not be called twice at once.
func (p *Prober) Run(ctx context.Context) error {
	var (
		wg       sync.WaitGroup
		results  = make(chan result, p.concurrency) // room for every probe in flight: a probe never blocks
		cur      *round                             // nil between rounds
		next     = p.clock.Now()                    // the next round is due then; zero: once In adds a gateway
		earliest time.Time                          // rate limit: no probe starts before this
		timer    clock.Timer                        // a new one for each wait: a stopped fake timer may hold a stale tick
	)
	defer wg.Wait()
	defer func() { stopTimer(timer) }()
	for {
		now := p.clock.Now()
		if cur == nil && !next.IsZero() && !now.Before(next) {
			next = time.Time{}
			if cur = p.beginRound(); cur != nil {
				next = now.Add(p.jittered())
			}
		}
		if cur != nil {
			for cur.probing < p.concurrency && len(cur.todo) > 0 && !now.Before(earliest) {
				t := cur.todo[0]
				cur.todo = cur.todo[1:]
				if p.gone(t) {
					continue
				}
				cur.probing++
				earliest = now.Add(p.gap)
				wg.Add(1)
				go func() {
					defer wg.Done()
					results <- p.probe(ctx, t)
				}()
			}
			if cur.probing == 0 && len(cur.todo) == 0 {
				p.endRound(cur.results)
				cur = nil
				continue // the next round may be due already
			}
		}
		// Wait for a result, for In, or until the next probe may start or
		// the next round is due.
		var at time.Time
		switch {
		case cur == nil:
			at = next
		case cur.probing < p.concurrency && len(cur.todo) > 0:
			at = earliest
		}
		stopTimer(timer)
		var wake <-chan time.Time
		if !at.IsZero() {
			timer = p.clock.NewTimer(at.Sub(now))
			wake = timer.C()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-p.kick:
			if cur != nil {
				p.join(cur)
			} else {
				next = now // gateways not probed yet: a round now
			}
		case r := <-results:
			cur.probing--
			cur.results = append(cur.results, r)
		case <-wake:
		}
	}
}

func stopTimer(t clock.Timer) {
	if t != nil {
		t.Stop()
	}
}

// beginRound starts a round of every gateway, or returns nil if there are
// none.
func (p *Prober) beginRound() *round {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.targets) == 0 {
		return nil
	}
	p.round++
	r := &round{id: p.round}
	p.joinLocked(r)
	return r
}

// join adds to r the gateways In added since it began.
func (p *Prober) join(r *round) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.joinLocked(r)
}

func (p *Prober) joinLocked(r *round) {
	var add []*target
	for _, t := range p.targets {
		if t.round != r.id {
			t.round = r.id
			add = append(add, t)
		}
	}
	slices.SortFunc(add, func(a, b *target) int { return compareGateways(a.gw, b.gw) })
	r.todo = append(r.todo, add...)
}

func compareGateways(a, b discovery.Gateway) int {
	return cmp.Or(cmp.Compare(a.Address, b.Address), cmp.Compare(a.Port, b.Port))
}

func (p *Prober) gone(t *target) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return t.removed
}

func (p *Prober) jittered() time.Duration {
	return time.Duration(float64(p.interval) * (0.9 + 0.2*p.rand()))
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

// endRound applies a round's results together and publishes once: either
// the round is blind, and no gateway's state changes, or every gateway's
// result counts.
func (p *Prober) endRound(results []result) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ended++
	var (
		live     []result
		networks = map[string]bool{}
		answered bool
	)
	for _, r := range results {
		t := r.t
		if t.removed {
			continue
		}
		live = append(live, r)
		p.metrics.probed(t.network, t.addr, r.err == nil, r.end.Sub(r.start).Seconds())
		t.lastProbe, t.lastErr = r.end, r.err
		answered = answered || r.err == nil
		for _, n := range t.networks {
			networks[n] = true
		}
	}
	if len(live) == 0 {
		return // its gateways all left the input: nothing learnt
	}
	blind := !answered && len(networks) >= 2
	for _, r := range live {
		if blind {
			r.t.fails, r.t.oks = 0, 0
		} else {
			p.applyLocked(r)
		}
	}
	if blind != p.blind {
		p.blind = blind
		if blind {
			p.log.Error("no gateway of any network answers: the control plane's own network is suspect; withdrawing none", "gateways", len(live), "networks", len(networks))
		} else {
			down := 0
			for _, t := range p.targets {
				if t.state == Down {
					down++
				}
			}
			p.log.Info("gateways answer again; withdrawing the ones that are down", "down", down)
		}
	}
	p.publishLocked()
}

// applyLocked counts a probe's result towards its gateway's state.
func (p *Prober) applyLocked(r result) {
	t := r.t
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
		return
	}
	p.metrics.setUp(t.network, t.addr, t.state != Down)
	switch {
	case t.state == Down:
		p.log.Warn("gateway down", "network", t.network, "address", t.addr, "failures", t.fails, "error", r.err)
	case was == Down:
		p.log.Info("gateway up again", "network", t.network, "address", t.addr)
	}
}

// GatewayStatus is one probed gateway, for debug pages.
type GatewayStatus struct {
	Gateway  discovery.Gateway
	Networks []string
	State    State
	// ConsecutiveFailures counts rounds; a blind round starts it over.
	ConsecutiveFailures int
	LastProbe           time.Time // zero before the first probe
	LastError           string
}

// Status is the Prober's current view.
type Status struct {
	// Blind is set from a blind round (gateways of two networks or more
	// probed, none answered) until a round is answered: meanwhile nothing is
	// withdrawn.
	Blind bool
	// Rounds counts the rounds of probes that have ended.
	Rounds   uint64
	Gateways []GatewayStatus // sorted by address, port
}

// Status returns every probed gateway and its health.
func (p *Prober) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := Status{Blind: p.blind, Rounds: p.ended, Gateways: make([]GatewayStatus, 0, len(p.targets))}
	for _, t := range p.targets {
		gs := GatewayStatus{Gateway: t.gw, Networks: slices.Clone(t.networks), State: t.state, ConsecutiveFailures: t.fails, LastProbe: t.lastProbe}
		if t.lastErr != nil {
			gs.LastError = t.lastErr.Error()
		}
		st.Gateways = append(st.Gateways, gs)
	}
	slices.SortFunc(st.Gateways, func(a, b GatewayStatus) int { return compareGateways(a.Gateway, b.Gateway) })
	return st
}
