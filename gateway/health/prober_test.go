package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/internal/testkit"
)

// Fast timings for tests; the documented bounds scale with them.
const (
	testInterval = 50 * time.Millisecond
	testTimeout  = 200 * time.Millisecond
	// slack covers scheduling under -race on a busy machine.
	slack = 2 * time.Second
)

// withdrawBound and returnBound are the package documentation's bounds,
// for rounds that take Timeout at the most.
func withdrawBound(o Options) time.Duration {
	return time.Duration(o.Fall)*o.Interval*11/10 + o.Timeout
}

func returnBound(o Options) time.Duration {
	return time.Duration(o.Rise)*o.Interval*11/10 + o.Timeout
}

// sink records what the Prober sends out.
type sink struct {
	mu    sync.Mutex
	cs    *discovery.ClusterSet
	calls int
}

func (s *sink) out(cs *discovery.ClusterSet) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cs, s.calls = cs, s.calls+1
}

func (s *sink) latest() (*discovery.ClusterSet, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cs, s.calls
}

// served returns the gateways of the latest ClusterSet, by cluster.
func (s *sink) served() map[string][]string {
	cs, _ := s.latest()
	out := map[string][]string{}
	if cs == nil {
		return out
	}
	for _, c := range cs.Clusters {
		out[c.Name] = []string{}
		for _, g := range c.Gateways {
			out[c.Name] = append(out[c.Name], g.String())
		}
	}
	return out
}

func (s *sink) serves(gw string) bool {
	for _, gws := range s.served() {
		if slices.Contains(gws, gw) {
			return true
		}
	}
	return false
}

// noLeaks checks, once the test and all its cleanups are done, that no
// goroutine is left. Call it first.
func noLeaks(t *testing.T) { t.Cleanup(func() { goleak.VerifyNone(t) }) }

// start runs a Prober until the test ends.
func start(t *testing.T, opts Options) (*Prober, *sink) {
	t.Helper()
	s := &sink{}
	opts.Out = s.out
	p := New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return p, s
}

// gateway is a real TCP listener standing in for an east-west gateway.
type gateway struct {
	t    *testing.T
	addr string // host:port
	mu   sync.Mutex
	lis  net.Listener
	wg   sync.WaitGroup
}

func listen(t *testing.T, ip string) *gateway {
	t.Helper()
	lis, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Skipf("cannot listen on %s (loopback aliases unavailable?): %v", ip, err)
	}
	g := &gateway{t: t, addr: lis.Addr().String()}
	g.serve(lis)
	t.Cleanup(g.stop)
	return g
}

func (g *gateway) serve(lis net.Listener) {
	g.mu.Lock()
	g.lis = lis
	g.mu.Unlock()
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

// stop stops listening: connections are refused.
func (g *gateway) stop() {
	g.mu.Lock()
	lis := g.lis
	g.lis = nil
	g.mu.Unlock()
	if lis != nil {
		lis.Close()
		g.wg.Wait()
	}
}

// restart listens again on the same address and port.
func (g *gateway) restart() {
	g.t.Helper()
	lis, err := net.Listen("tcp", g.addr)
	if err != nil {
		g.t.Fatalf("listen again on %s: %v", g.addr, err)
	}
	g.serve(lis)
}

func (g *gateway) gw() discovery.Gateway {
	host, port, _ := net.SplitHostPort(g.addr)
	n, _ := strconv.Atoi(port)
	return discovery.Gateway{Address: host, Port: uint32(n)}
}

// member is a cluster of a test ClusterSet.
type member struct {
	name, network string
	gateways      []discovery.Gateway
}

// clusterSet builds a ClusterSet in which every cluster exports demo/echo
// with one ready endpoint.
func clusterSet(t *testing.T, members ...member) *discovery.ClusterSet {
	t.Helper()
	var clusters []discovery.Cluster
	for i, m := range members {
		clusters = append(clusters, discovery.Cluster{
			Name: m.name, Network: m.network, Gateways: slices.Clone(m.gateways),
			Services: []discovery.Service{{
				Namespace: "demo", Name: "echo", Exported: true,
				Ports:     []discovery.Port{{Name: "http", Port: 80}},
				Endpoints: []discovery.Endpoint{{Address: fmt.Sprintf("10.%d.0.1", i), Ready: true, MTLS: true}},
			}},
		})
	}
	cs, err := discovery.New(clusters)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func fastOptions() Options {
	return Options{Interval: testInterval, Timeout: testTimeout, Fall: 2, Rise: 2, Concurrency: 8, Rate: 1000}
}

// A gateway that stops listening is withdrawn from every cluster that lists
// it within the documented time, and served again once it listens again.
func TestWithdrawnAndReturns(t *testing.T) {
	noLeaks(t)
	east, west := listen(t, "127.0.0.11"), listen(t, "127.0.0.12")
	west2 := listen(t, "127.0.0.13")
	opts := fastOptions()
	reg := prometheus.NewRegistry()
	opts.Metrics = NewMetrics(reg)
	p, s := start(t, opts)
	in := clusterSet(t,
		member{"east-1", "east", []discovery.Gateway{east.gw()}},
		member{"east-2", "east", []discovery.Gateway{east.gw()}}, // shares east's gateway
		member{"west-1", "west", []discovery.Gateway{west.gw(), west2.gw()}},
	)
	p.In(in)
	if cs, _ := s.latest(); cs != in {
		t.Fatal("In did not pass an unprobed ClusterSet through as it is")
	}
	testkit.Eventually(t, slack, "every gateway probed up", func() bool {
		for _, g := range p.Status().Gateways {
			if g.State != Up {
				return false
			}
		}
		return true
	})

	east.stop()
	took := testkit.Eventually(t, withdrawBound(opts)+slack, "east's gateway withdrawn", func() bool { return !s.serves(east.addr) })
	t.Logf("withdrawn after %v (documented bound %v)", took, withdrawBound(opts))
	out, _ := s.latest()
	if out.Version() == in.Version() {
		t.Error("the ClusterSet without east's gateway has the input's version")
	}
	for _, name := range []string{"east-1", "east-2"} {
		if c, _ := out.Cluster(name); len(c.Gateways) != 0 {
			t.Errorf("%s still has gateways %v", name, c.Gateways)
		}
	}
	if got := s.served()["west-1"]; len(got) != 2 {
		t.Errorf("west-1 serves %v, want both its gateways", got)
	}
	if len(out.Exports) != 1 || len(out.Clusters) != 3 {
		t.Errorf("the derived ClusterSet lost clusters or exports: %d clusters, %d exports", len(out.Clusters), len(out.Exports))
	}
	checkGauge(t, reg, "horizon_gateway_up", map[string]float64{"east/" + east.addr: 0, "west/" + west.addr: 1, "west/" + west2.addr: 1})
	checkGauge(t, reg, "horizon_gateway_withdrawn", map[string]float64{"": 1})
	if n := counter(t, reg, "horizon_gateway_probe_failures_total", "east/"+east.addr); n < 2 {
		t.Errorf("east's probe failures = %v, want at least 2", n)
	}

	// One of west's two gateways goes too: west keeps the other.
	west2.stop()
	testkit.Eventually(t, withdrawBound(opts)+slack, "west's second gateway withdrawn", func() bool { return !s.serves(west2.addr) })
	if !s.serves(west.addr) {
		t.Error("west's healthy gateway was withdrawn")
	}

	east.restart()
	took = testkit.Eventually(t, returnBound(opts)+slack, "east's gateway served again", func() bool { return s.serves(east.addr) })
	t.Logf("served again after %v (documented bound %v)", took, returnBound(opts))
	checkGauge(t, reg, "horizon_gateway_up", map[string]float64{"east/" + east.addr: 1, "west/" + west.addr: 1, "west/" + west2.addr: 0})

	west2.restart()
	testkit.Eventually(t, returnBound(opts)+slack, "the input served again", func() bool { cs, _ := s.latest(); return cs.Version() == in.Version() })
	checkGauge(t, reg, "horizon_gateway_withdrawn", map[string]float64{"": 0})
}

// Gateways that have never been probed are served: probes that never end do
// not hold anything back.
func TestUnprobedCountsAsUp(t *testing.T) {
	noLeaks(t)
	block := func(ctx context.Context, _, _ string) (net.Conn, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	opts := Options{Interval: testInterval, Timeout: time.Hour, Dial: block}
	p, s := start(t, opts)
	in := clusterSet(t, member{"a", "a", []discovery.Gateway{{Address: "192.0.2.1", Port: 1}}},
		member{"b", "b", []discovery.Gateway{{Address: "192.0.2.2", Port: 1}}})
	p.In(in)
	if cs, _ := s.latest(); cs != in {
		t.Fatal("the input was not passed on at once")
	}
	time.Sleep(3 * testInterval) // give the (blocked) probes time to start
	if cs, _ := s.latest(); cs != in {
		t.Error("the ClusterSet changed while no probe had finished")
	}
	for _, g := range p.Status().Gateways {
		if g.State != Unprobed {
			t.Errorf("%s: state %v", g.Gateway, g.State)
		}
	}
}

// A Prober that is not running still passes ClusterSets on.
func TestInBeforeRun(t *testing.T) {
	s := &sink{}
	p := New(Options{Out: s.out})
	in := clusterSet(t, member{"a", "a", []discovery.Gateway{{Address: "192.0.2.1", Port: 1}}})
	p.In(in)
	p.In(in) // the same version again: not sent twice
	if cs, n := s.latest(); cs != in || n != 1 {
		t.Errorf("got %p after %d calls, want the input once", cs, n)
	}
}

// New and changed ClusterSets add and remove probed gateways and their
// metric series; a gateway that is down stays withdrawn across an unrelated
// change of the input; host names are not probed.
func TestInputChanges(t *testing.T) {
	noLeaks(t)
	a, b, c := listen(t, "127.0.0.21"), listen(t, "127.0.0.22"), listen(t, "127.0.0.23")
	down := discovery.Gateway{Address: "127.0.0.24", Port: b.gw().Port} // nothing listens
	opts := fastOptions()
	reg := prometheus.NewRegistry()
	opts.Metrics = NewMetrics(reg)
	var mu sync.Mutex
	dialed := map[string]int{}
	dialer := &net.Dialer{}
	opts.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dialed[addr]++
		mu.Unlock()
		return dialer.DialContext(ctx, network, addr)
	}
	dials := func(addr string) int {
		mu.Lock()
		defer mu.Unlock()
		return dialed[addr]
	}
	p, s := start(t, opts)

	p.In(clusterSet(t,
		member{"one", "n1", []discovery.Gateway{a.gw(), down}},
		member{"two", "n2", []discovery.Gateway{b.gw(), {Address: "gw.example.com", Port: 15443}}},
	))
	testkit.Eventually(t, withdrawBound(opts)+slack, "the dead gateway withdrawn", func() bool { return !s.serves(down.String()) })
	checkGauge(t, reg, "horizon_gateway_up", map[string]float64{"n1/" + a.addr: 1, "n1/" + down.String(): 0, "n2/" + b.addr: 1})
	if n := dials("gw.example.com:15443"); n != 0 {
		t.Errorf("a host name was probed %d times", n)
	}
	if !s.serves("gw.example.com:15443") {
		t.Error("a host-name gateway was withdrawn")
	}

	// An unrelated change (cluster three, with c): down stays withdrawn at
	// once, without waiting for probes.
	p.In(clusterSet(t,
		member{"one", "n1", []discovery.Gateway{a.gw(), down}},
		member{"two", "n2", []discovery.Gateway{b.gw()}},
		member{"three", "n3", []discovery.Gateway{c.gw()}},
	))
	if s.serves(down.String()) {
		t.Error("a new input brought a dead gateway back before any probe")
	}
	if !s.serves(c.addr) {
		t.Error("a new gateway is not served at once")
	}
	testkit.Eventually(t, slack, "the new gateway probed", func() bool { return dials(c.addr) > 0 })

	// a and the dead gateway leave the ClusterSet; b moves to network n3 too.
	p.In(clusterSet(t,
		member{"two", "n2", []discovery.Gateway{b.gw()}},
		member{"three", "n3", []discovery.Gateway{b.gw(), c.gw()}},
	))
	checkGauge(t, reg, "horizon_gateway_up", map[string]float64{"n2,n3/" + b.addr: 1, "n3/" + c.addr: 1})
	checkGauge(t, reg, "horizon_gateway_withdrawn", map[string]float64{"": 0})
	if got := seriesOf(t, reg, "horizon_gateway_probe_failures_total"); !slices.Equal(got, []string{"n2,n3/" + b.addr, "n3/" + c.addr}) {
		t.Errorf("failure counters %v", got)
	}
	// Once the probes of a gone gateway in flight have ended, it is not
	// probed again.
	time.Sleep(testTimeout + testInterval)
	before := dials(a.addr)
	testkit.Eventually(t, slack, "the remaining gateways probed again", func() bool { return dials(c.addr) > 2 && dials(b.addr) > 2 })
	time.Sleep(3 * testInterval)
	if n := dials(a.addr); n != before {
		t.Errorf("a gateway that left the ClusterSet was probed %d more times", n-before)
	}
	var addrs []string
	for _, g := range p.Status().Gateways {
		addrs = append(addrs, g.Gateway.String())
	}
	if !slices.Equal(addrs, []string{b.addr, c.addr}) {
		t.Errorf("Status lists %v", addrs)
	}
}

// When no network's gateway answers, the prober distrusts itself and
// withdraws nothing; when one answers again, the dead ones are withdrawn.
// A single network with gateways is not protected that way.
func TestBlind(t *testing.T) {
	noLeaks(t)
	a := listen(t, "127.0.0.31")
	b := listen(t, "127.0.0.32")
	opts := fastOptions()
	reg := prometheus.NewRegistry()
	opts.Metrics = NewMetrics(reg)
	p, s := start(t, opts)
	in := clusterSet(t, member{"a", "a", []discovery.Gateway{a.gw()}}, member{"b", "b", []discovery.Gateway{b.gw()}}, member{"c", "c", nil})
	p.In(in)
	a.stop()
	testkit.Eventually(t, withdrawBound(opts)+slack, "a withdrawn", func() bool { return !s.serves(a.addr) })
	b.stop()
	testkit.Eventually(t, withdrawBound(opts)+slack, "blind", func() bool { return p.Status().Blind })
	if cs, _ := s.latest(); cs.Version() != in.Version() {
		t.Errorf("blind, yet gateways are withdrawn: %v", s.served())
	}
	checkGauge(t, reg, "horizon_gateway_prober_blind", map[string]float64{"": 1})
	checkGauge(t, reg, "horizon_gateway_withdrawn", map[string]float64{"": 0})
	b.restart()
	testkit.Eventually(t, returnBound(opts)+slack, "a withdrawn again", func() bool { return !p.Status().Blind && !s.serves(a.addr) && s.serves(b.addr) })

	// Only network a has gateways: losing them all withdraws them.
	p.In(clusterSet(t, member{"a", "a", []discovery.Gateway{a.gw()}}, member{"c", "c", nil}))
	if s.serves(a.addr) || p.Status().Blind {
		t.Errorf("with a single network, its dead gateway is served (blind %v)", p.Status().Blind)
	}
}

// Probes stay within Concurrency at once and Rate per second, however many
// gateways there are.
func TestBounded(t *testing.T) {
	noLeaks(t)
	var inflight, peak, started atomic.Int64
	slow := func(ctx context.Context, _, _ string) (net.Conn, error) {
		started.Add(1)
		n := inflight.Add(1)
		defer inflight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
		}
		return nil, errors.New("refused")
	}
	const concurrency, rate = 4, 200.0
	opts := Options{Interval: time.Millisecond, Timeout: time.Second, Concurrency: concurrency, Rate: rate, Dial: slow}
	p, _ := start(t, opts)
	var members []member
	for i := range 250 {
		members = append(members, member{fmt.Sprintf("c%03d", i), fmt.Sprintf("n%d", i%3),
			[]discovery.Gateway{{Address: fmt.Sprintf("192.0.2.%d", i), Port: 15443}}})
	}
	base := runtimeGoroutines()
	p.In(clusterSet(t, members...))
	begin := time.Now()
	time.Sleep(500 * time.Millisecond)
	n, took := started.Load(), time.Since(begin)
	if limit := int64(rate*took.Seconds()) + 2; n > limit {
		t.Errorf("%d probes started in %v, more than the rate allows (%d)", n, took, limit)
	}
	if n < 10 {
		t.Errorf("only %d probes started in %v", n, took)
	}
	if got := peak.Load(); got > concurrency {
		t.Errorf("%d probes at once, want at most %d", got, concurrency)
	}
	if g := runtimeGoroutines() - base; g > concurrency+2 {
		t.Errorf("%d more goroutines while probing 250 gateways", g)
	}
}

// An address advertised to every network and the same address advertised to
// one network only (discovery.Gateway.ForNetwork) are one gateway: probed
// once, withdrawn together.
func TestPeerAddressIsOneTarget(t *testing.T) {
	noLeaks(t)
	east, west := listen(t, "127.0.0.11"), listen(t, "127.0.0.12")
	opts := fastOptions()
	p, s := start(t, opts)
	peer := east.gw()
	peer.ForNetwork = "west"
	p.In(clusterSet(t,
		member{"east-1", "east", []discovery.Gateway{east.gw(), peer}},
		member{"west-1", "west", []discovery.Gateway{west.gw()}},
	))
	testkit.Eventually(t, slack, "every gateway probed up", func() bool {
		st := p.Status().Gateways
		return len(st) == 2 && st[0].State == Up && st[1].State == Up
	})
	east.stop()
	testkit.Eventually(t, withdrawBound(opts)+slack, "east's gateway withdrawn", func() bool { return !s.serves(east.addr) })
	if got := s.served()["east-1"]; len(got) != 0 {
		t.Errorf("east-1 still serves %v", got)
	}
}
