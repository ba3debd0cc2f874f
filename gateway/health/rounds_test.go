package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/horizonmesh/horizon/discovery"
)

// tick is how far the fake clock moves at a time. Every duration the fake
// tests use (Interval, 1.1 × Interval, Timeout, 1/Rate) is a whole number of
// ticks, so every timer fires exactly when it is due.
const tick = time.Millisecond

// reply is how the fake network answers a dial.
type reply uint8

const (
	accept reply = iota
	refuse       // at once, as a host with nothing listening does
	drop         // never: the dial waits for the probe's timeout
)

// fakeNet stands in for the network between the Prober and the gateways.
type fakeNet struct {
	mu    sync.Mutex
	reply map[string]reply // by host:port; accept when missing
	dials map[string]int
}

func (n *fakeNet) set(r reply, addrs ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, a := range addrs {
		n.reply[a] = r
	}
}

func (n *fakeNet) dialed(addr string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.dials[addr]
}

func (n *fakeNet) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	n.mu.Lock()
	r := n.reply[addr]
	n.dials[addr]++
	n.mu.Unlock()
	switch r {
	case refuse:
		return nil, errors.New("connection refused")
	case drop:
		<-ctx.Done()
		return nil, ctx.Err()
	}
	client, server := net.Pipe()
	server.Close()
	return client, nil
}

// sent is one ClusterSet the Prober sent to Out, and when.
type sent struct {
	at time.Duration // since the test began, on the fake clock
	cs *discovery.ClusterSet
}

// fake runs a Prober on a fake clock and a fake network, inside a synctest
// bubble. The Prober reads only the fake clock (Options.Clock), which the
// test steps; the bubble is there for synctest.Wait, which lets the Prober's
// loop and its probes catch up after each step before the test looks.
type fake struct {
	t     *testing.T
	clock *clocktesting.FakeClock
	begin time.Time
	net   *fakeNet
	p     *Prober

	mu   sync.Mutex
	sent []sent // every call of Out, in order
}

// fakeOptions are the defaults (Interval 2s, Timeout 1s, Fall 2, Rise 2, Rate
// 500): on the fake clock they cost nothing, and the documented numbers apply.
func fakeOptions() Options { return Options{} }

// runFake runs test against a Prober built from opts, with Out, Dial and
// Clock set to the fake's.
func runFake(t *testing.T, opts Options, test func(f *fake)) {
	t.Helper()
	noLeaks(t)
	synctest.Test(t, func(t *testing.T) {
		begin := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
		f := &fake{t: t, clock: clocktesting.NewFakeClock(begin), begin: begin,
			net: &fakeNet{reply: map[string]reply{}, dials: map[string]int{}}}
		opts.Out, opts.Dial, opts.Clock = f.out, f.net.dial, f.clock
		f.p = New(opts)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- f.p.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
		synctest.Wait()
		test(f)
	})
}

func (f *fake) out(cs *discovery.ClusterSet) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, sent{at: f.now(), cs: cs})
}

// now is the time since the test began, on the fake clock.
func (f *fake) now() time.Duration { return f.clock.Since(f.begin) }

// advance moves the fake clock on by d, a tick at a time, letting the Prober
// catch up after each.
func (f *fake) advance(d time.Duration) {
	for range d / tick {
		f.clock.Step(tick)
		synctest.Wait()
	}
}

// until advances the clock a tick at a time until cond holds, and fails the
// test if it does not within limit.
func (f *fake) until(limit time.Duration, what string, cond func() bool) time.Duration {
	f.t.Helper()
	begin := f.now()
	for !cond() {
		if f.now()-begin >= limit {
			f.t.Fatalf("after %v on the fake clock: %s", limit, what)
		}
		f.advance(tick)
	}
	return f.now() - begin
}

func (f *fake) latest() *discovery.ClusterSet {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.sent) == 0 {
		return nil
	}
	return f.sent[len(f.sent)-1].cs
}

func (f *fake) serves(gw string) bool { return gateways(f.latest())[gw] }

// missing returns every ClusterSet sent to Out that lacks one of gws.
func (f *fake) missing(gws ...string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var bad []string
	for _, s := range f.sent {
		have := gateways(s.cs)
		var lost []string
		for _, g := range gws {
			if !have[g] {
				lost = append(lost, g)
			}
		}
		if len(lost) > 0 {
			bad = append(bad, fmt.Sprintf("at %v without %s", s.at, strings.Join(lost, ", ")))
		}
	}
	return bad
}

// gateways returns the gateway addresses cs serves.
func gateways(cs *discovery.ClusterSet) map[string]bool {
	out := map[string]bool{}
	if cs == nil {
		return out
	}
	for _, c := range cs.Clusters {
		for _, g := range c.Gateways {
			out[g.String()] = true
		}
	}
	return out
}

// Test gateways: network east has two, west one.
var (
	east1 = discovery.Gateway{Address: "192.0.2.1", Port: 15443}
	east2 = discovery.Gateway{Address: "192.0.2.2", Port: 15443}
	west1 = discovery.Gateway{Address: "198.51.100.1", Port: 15443}
)

func twoNetworks(t *testing.T) *discovery.ClusterSet {
	return clusterSet(t,
		member{"east-1", "east", []discovery.Gateway{east1}},
		member{"east-2", "east", []discovery.Gateway{east2}},
		member{"west-1", "west", []discovery.Gateway{west1}},
	)
}

// The control plane is cut off: every gateway of both networks stops
// answering at once, for many rounds, and then answers again. At no point
// is a ClusterSet without one of them sent out: not when the first of them
// has failed Fall times, not while the others catch up, and not on the way
// back.
func TestCutOffWithdrawsNothing(t *testing.T) {
	all := []string{east1.String(), east2.String(), west1.String()}
	for _, tc := range []struct {
		name string
		cut  reply
		// midRound cuts right after the first gateway's probe of a round
		// has started, so the round's later probes fail and its first
		// one does not.
		midRound bool
	}{
		{"dropped", drop, false},
		{"refused", refuse, false},
		{"dropped mid-round", drop, true},
		{"refused mid-round", refuse, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runFake(t, fakeOptions(), func(f *fake) {
				f.p.In(twoNetworks(t))
				f.until(time.Minute, "every gateway up", func() bool {
					for _, g := range f.p.Status().Gateways {
						if g.State != Up {
							return false
						}
					}
					return true
				})
				f.advance(3 * time.Second)
				if tc.midRound {
					n := f.net.dialed(all[0])
					f.until(time.Minute, "a new round", func() bool { return f.net.dialed(all[0]) > n })
				}
				f.net.set(tc.cut, all...)
				f.until(time.Minute, "blind", func() bool { return f.p.Status().Blind })
				f.advance(time.Minute)
				if !f.p.Status().Blind {
					t.Error("no longer blind while nothing answers")
				}
				f.net.set(accept, all...)
				f.until(time.Minute, "not blind", func() bool { return !f.p.Status().Blind })
				f.advance(time.Minute)
				for _, g := range f.p.Status().Gateways {
					if g.State != Up {
						t.Errorf("%s is %v after the cut", g.Gateway, g.State)
					}
				}
				for _, m := range f.missing(all...) {
					t.Errorf("sent a ClusterSet %s", m)
				}
			})
		})
	}
}

// nextRound advances the clock until the round in progress, or else the
// next one, has ended.
func (f *fake) nextRound() {
	f.t.Helper()
	n := f.p.Status().Rounds
	f.until(time.Minute, "a round ended", func() bool { return f.p.Status().Rounds > n })
}

func (f *fake) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sent)
}

// The rules, round by round: which gateways fail in each round, and what is
// withdrawn once it has ended. Every gateway not listed answers.
func TestRoundVerdicts(t *testing.T) {
	type round struct {
		fail      []discovery.Gateway
		withdrawn []discovery.Gateway
		blind     bool
	}
	e1, e2, w1 := east1, east2, west1
	for _, tc := range []struct {
		name   string
		rounds []round
	}{
		{"one network's gateways fail together while the other's answer: withdrawn together", []round{
			{fail: gws(e1, e2)},
			{fail: gws(e1, e2), withdrawn: gws(e1, e2)},
			{fail: gws(e1, e2), withdrawn: gws(e1, e2)},
		}},
		{"one network's gateways fail in different rounds: each withdrawn after its own Fall rounds", []round{
			{fail: gws(e1)},
			{fail: gws(e1, e2), withdrawn: gws(e1)},
			{fail: gws(e1, e2), withdrawn: gws(e1, e2)},
		}},
		{"gateways of both networks fail in different rounds while one answers: both withdrawn", []round{
			{fail: gws(e1)},
			{fail: gws(e1, w1), withdrawn: gws(e1)},
			{fail: gws(e1, w1), withdrawn: gws(e1, w1)},
		}},
		{"a failure streak is broken by one answer", []round{
			{fail: gws(e1)},
			{},
			{fail: gws(e1)},
			{fail: gws(e1), withdrawn: gws(e1)},
		}},
		{"a withdrawn gateway is served again after Rise rounds", []round{
			{fail: gws(e1)},
			{fail: gws(e1), withdrawn: gws(e1)},
			{withdrawn: gws(e1)},
			{},
		}},
		{"every gateway fails, in different rounds: once none answers, none is withdrawn", []round{
			{fail: gws(e1, e2)},
			{fail: gws(e1, e2, w1), blind: true},
			{fail: gws(e1, e2, w1), blind: true},
			{fail: gws(e1, e2, w1), blind: true},
			{},
		}},
		{"a blind round starts the counts over: the failure before it and the one after do not add up", []round{
			{fail: gws(w1)},
			{fail: gws(e1, e2, w1), blind: true},
			{fail: gws(w1)},
			{fail: gws(w1), withdrawn: gws(w1)},
		}},
		{"a gateway down before the control plane is cut off is served while it is blind, and withdrawn after", []round{
			{fail: gws(e1)},
			{fail: gws(e1), withdrawn: gws(e1)},
			{fail: gws(e1, e2, w1), blind: true},
			{fail: gws(e1, e2, w1), blind: true},
			{fail: gws(e1), withdrawn: gws(e1)},
			{withdrawn: gws(e1)},
			{},
		}},
	} {
		for _, how := range []reply{refuse, drop} {
			name := tc.name + map[reply]string{refuse: " (refused)", drop: " (dropped)"}[how]
			t.Run(name, func(t *testing.T) {
				runFake(t, fakeOptions(), func(f *fake) {
					all := []string{e1.String(), e2.String(), w1.String()}
					f.p.In(twoNetworks(t))
					f.nextRound()
					for i, r := range tc.rounds {
						f.net.set(accept, all...)
						for _, g := range r.fail {
							f.net.set(how, g.String())
						}
						before := f.calls()
						f.nextRound()
						if n := f.calls() - before; n > 1 {
							t.Errorf("round %d: Out called %d times", i+1, n)
						}
						var withdrawn []discovery.Gateway
						for _, g := range gws(e1, e2, w1) {
							if !f.serves(g.String()) {
								withdrawn = append(withdrawn, g)
							}
						}
						if !slices.Equal(withdrawn, r.withdrawn) {
							t.Errorf("after round %d: withdrawn %v, want %v", i+1, withdrawn, r.withdrawn)
						}
						if b := f.p.Status().Blind; b != r.blind {
							t.Errorf("after round %d: blind %v, want %v", i+1, b, r.blind)
						}
					}
				})
			})
		}
	}
}

func gws(g ...discovery.Gateway) []discovery.Gateway { return g }

// Hysteresis, round by round: one failure withdraws nothing, the second does;
// one success brings nothing back, the second does. A gateway never probed is
// served, and up after one success.
func TestHysteresis(t *testing.T) {
	runFake(t, fakeOptions(), func(f *fake) {
		gw, other := east1, west1
		f.p.In(clusterSet(t, member{"a", "a", []discovery.Gateway{gw}}, member{"b", "b", []discovery.Gateway{other}}))
		synctest.Wait()
		state := func() GatewayStatus {
			for _, g := range f.p.Status().Gateways {
				if g.Gateway == gw {
					return g
				}
			}
			t.Fatal("gateway not in Status")
			return GatewayStatus{}
		}
		step := func(ok bool, wantState State, wantServed bool) {
			t.Helper()
			f.net.set(map[bool]reply{true: accept, false: refuse}[ok], gw.String())
			f.nextRound()
			if st := state().State; st != wantState {
				t.Errorf("after probe ok=%v: state %v, want %v", ok, st, wantState)
			}
			if got := f.serves(gw.String()); got != wantServed {
				t.Errorf("after probe ok=%v: served %v, want %v", ok, got, wantServed)
			}
		}
		if st := state().State; st != Unprobed || !f.serves(gw.String()) {
			t.Fatalf("before any probe: state %v, served %v; want unprobed and served", st, f.serves(gw.String()))
		}
		step(true, Up, true)
		step(false, Up, true)
		step(true, Up, true) // a success resets the count
		step(false, Up, true)
		step(false, Down, false)
		step(true, Down, false)
		step(false, Down, false)
		step(true, Down, false)
		step(true, Up, true)
	})
}

// The documented bounds hold with the worst jitter (every round 1.1 ×
// Interval after the one before) and the worst timing: the gateway stops
// right after a successful probe has started, and listens again right after
// a failing one has.
func TestTimingBounds(t *testing.T) {
	for _, how := range []reply{drop, refuse} {
		name := map[reply]string{refuse: "refused", drop: "dropped"}[how]
		t.Run(name, func(t *testing.T) {
			opts := Options{Interval: DefaultInterval, Timeout: DefaultTimeout, Fall: DefaultFall, Rise: DefaultRise}
			runFake(t, opts, func(f *fake) {
				f.p.rand = func() float64 { return 1 }
				gw := east1.String()
				f.p.In(clusterSet(t, member{"a", "a", []discovery.Gateway{east1}}, member{"b", "b", []discovery.Gateway{west1}}))
				f.nextRound()
				f.nextRound()

				probed := func() func() bool {
					n := f.net.dialed(gw)
					return func() bool { return f.net.dialed(gw) > n }
				}
				f.until(time.Minute, "a probe", probed())
				f.net.set(how, gw)
				took := f.until(time.Minute, "withdrawn", func() bool { return !f.serves(gw) })
				t.Logf("withdrawn %v after it stopped (documented: within %v)", took, withdrawBound(opts))
				if took > withdrawBound(opts) {
					t.Errorf("withdrawn after %v, later than the documented %v", took, withdrawBound(opts))
				}

				f.until(time.Minute, "a probe", probed())
				f.net.set(accept, gw)
				took = f.until(time.Minute, "served again", func() bool { return f.serves(gw) })
				t.Logf("served again %v after it listened (documented: within %v)", took, returnBound(opts))
				if took > returnBound(opts) {
					t.Errorf("served again after %v, later than the documented %v", took, returnBound(opts))
				}
			})
		})
	}
}

// A gateway that In adds while a round runs is probed in that round, and
// judged with it.
func TestJoinsTheRoundInProgress(t *testing.T) {
	runFake(t, fakeOptions(), func(f *fake) {
		f.net.set(drop, west1.String()) // the round lasts Timeout
		f.p.In(clusterSet(t, member{"east-1", "east", []discovery.Gateway{east1}}, member{"west-1", "west", []discovery.Gateway{west1}}))
		f.advance(100 * time.Millisecond)
		if n := f.p.Status().Rounds; n != 0 {
			t.Fatalf("%d rounds ended within 100ms of a 1s timeout", n)
		}
		f.p.In(twoNetworks(t)) // adds east2
		f.until(time.Second, "east2 probed", func() bool { return f.net.dialed(east2.String()) > 0 })
		if n := f.p.Status().Rounds; n != 0 {
			t.Errorf("east2 was probed after the round in progress ended")
		}
		f.nextRound()
		for _, g := range f.p.Status().Gateways {
			if want := map[bool]State{true: Unprobed, false: Up}[g.Gateway == west1]; g.State != want {
				t.Errorf("%s after the first round: %v, want %v", g.Gateway, g.State, want)
			}
		}
	})
}
