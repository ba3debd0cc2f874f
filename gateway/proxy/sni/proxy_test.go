package sni

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/horizonmesh/horizon/internal/testkit"
	"github.com/horizonmesh/horizon/internal/testkit/certtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testSNI = "outbound_.8080_._.echo.demo.svc.clusterset.local"

// backendID is the SPIFFE ID of the backends' certificate, which a client
// through the proxy verifies: the proxy passes TLS through, and cannot
// present it.
const backendID = "spiffe://cluster.local/ns/demo/sa/echo"

// backend is a TLS server that answers each connection with its id, then
// echoes upper-cased what it reads until EOF, then writes "bye" and closes.
type backend struct {
	id   string
	addr string
	lis  net.Listener
	wg   sync.WaitGroup
}

func startBackend(t *testing.T, id string, srv certtest.Server) *backend {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", srv.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{id: id, addr: lis.Addr().String(), lis: lis}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				fmt.Fprintf(c, "%s\n", b.id)
				in, _ := io.ReadAll(c)
				fmt.Fprintf(c, "%s bye\n", strings.ToUpper(string(in)))
			}()
		}
	}()
	t.Cleanup(func() { lis.Close(); b.wg.Wait() })
	return b
}

// deadAddr is an address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

type harness struct {
	proxy   *Proxy
	metrics *Metrics
	addr    string
	cancel  context.CancelFunc
	done    chan error
}

func startProxy(t *testing.T, opts Options, table Table) *harness {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts.Metrics = NewMetrics(prometheus.NewRegistry())
	p := New(opts)
	p.SetTable(table)
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{proxy: p, metrics: opts.Metrics, addr: lis.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- p.Serve(ctx, lis) }()
	t.Cleanup(func() { h.stop(t) })
	return h
}

func (h *harness) stop(t *testing.T) {
	t.Helper()
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
		h.done <- nil // stop is idempotent
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
}

func (h *harness) result(r Result) float64 {
	return testutil.ToFloat64(h.metrics.connections.WithLabelValues(string(r)))
}

func (h *harness) active() float64 { return testutil.ToFloat64(h.metrics.active) }

// dial opens a TLS connection through the proxy, verifying the backend's
// certificate: the proxy cannot have terminated TLS.
func dial(t *testing.T, addr, sni string, srv certtest.Server) (*tls.Conn, string, error) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, srv.ClientConfig(sni))
	if err != nil {
		return nil, "", err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	id, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		c.Close()
		return nil, "", err
	}
	return c, strings.TrimSpace(id), nil
}

func TestProxyEndToEnd(t *testing.T) {
	srv := certtest.NewServer(t, backendID)
	b := startBackend(t, "b1", srv)
	h := startProxy(t, Options{}, Table{testSNI: {b.addr}})

	c, id, err := dial(t, h.addr, testSNI, srv)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if id != "b1" {
		t.Fatalf("backend %q, want b1", id)
	}
	if got := c.ConnectionState().PeerCertificates[0]; !got.Equal(srv.SVID.Certificates[0]) {
		t.Fatal("the client did not get the backend's certificate")
	}
	if _, err := io.WriteString(c, "hello through the gateway"); err != nil {
		t.Fatal(err)
	}
	// Half-close: the backend answers after it reads EOF.
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := "HELLO THROUGH THE GATEWAY bye\n"; string(rest) != want {
		t.Fatalf("got %q, want %q", rest, want)
	}
	c.Close()
	testkit.Eventually(t, 10*time.Second, "no active connection", func() bool { return testutil.ToFloat64(h.metrics.active) == 0 })
	if h.result(Routed) != 1 {
		t.Errorf("routed = %v, want 1", h.result(Routed))
	}
	if up := testutil.ToFloat64(h.metrics.bytes.WithLabelValues("to_upstream")); up < 100 {
		t.Errorf("to_upstream bytes = %v, want the hello and more", up)
	}
}

func TestProxyRoundRobinAndFailover(t *testing.T) {
	srv := certtest.NewServer(t, backendID)
	b1, b2 := startBackend(t, "b1", srv), startBackend(t, "b2", srv)
	dead := deadAddr(t)
	h := startProxy(t, Options{ConnectTimeout: time.Second}, Table{testSNI: {b1.addr, dead, b2.addr}})

	count := map[string]int{}
	for range 9 {
		c, id, err := dial(t, h.addr, testSNI, srv)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		count[id]++
	}
	// Order b1, dead→b2, b2: the dead endpoint's turn falls to the next one.
	if count["b1"] != 3 || count["b2"] != 6 {
		t.Errorf("connections per backend %v, want b1:3 b2:6", count)
	}
	if f := testutil.ToFloat64(h.metrics.connectFailures); f != 3 {
		t.Errorf("connect failures = %v, want 3", f)
	}

	// A new table moves new connections at once.
	h.proxy.SetTable(Table{testSNI: {b1.addr}})
	for range 3 {
		c, id, err := dial(t, h.addr, testSNI, srv)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if id != "b1" {
			t.Fatalf("after SetTable: backend %q, want b1", id)
		}
	}

	// Every endpoint dead: the connection is closed.
	h.proxy.SetTable(Table{testSNI: {dead, dead}})
	if _, _, err := dial(t, h.addr, testSNI, srv); err == nil {
		t.Fatal("connected with no live endpoint")
	}
	testkit.Eventually(t, 10*time.Second, "one upstream_failed", func() bool { return h.result(UpstreamFailed) == 1 })
}

func TestProxyRefusesUnknownAndBadHellos(t *testing.T) {
	srv := certtest.NewServer(t, backendID)
	b := startBackend(t, "b1", srv)
	h := startProxy(t, Options{}, Table{testSNI: {b.addr}})

	if _, _, err := dial(t, h.addr, "other.example", srv); err == nil {
		t.Fatal("unknown SNI was routed")
	}
	testkit.Eventually(t, 10*time.Second, "one unknown_sni", func() bool { return h.result(UnknownSNI) == 1 })

	// No SNI at all.
	c, err := tls.Dial("tcp", h.addr, &tls.Config{InsecureSkipVerify: true})
	if err == nil {
		c.Close()
		t.Fatal("hello without SNI was routed")
	}
	testkit.Eventually(t, 10*time.Second, "one bad_hello", func() bool { return h.result(BadHello) == 1 })

	// Plain HTTP.
	raw, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(raw, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	if n, _ := io.Copy(io.Discard, raw); n != 0 {
		t.Errorf("HTTP client got %d bytes", n)
	}
	raw.Close()
	testkit.Eventually(t, 10*time.Second, "a second bad_hello", func() bool { return h.result(BadHello) == 2 })

	// A TCP probe.
	raw, err = net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	raw.Close()
	testkit.Eventually(t, 10*time.Second, "one client_closed", func() bool { return h.result(ClientClosed) == 1 })
	if h.result(Routed) != 0 {
		t.Errorf("routed = %v, want 0", h.result(Routed))
	}
}

// splitConn sends the first TLS record written to it (the ClientHello)
// re-framed into records of size bytes, each in its own write, with a pause
// between writes, as a client behind a small-MTU path or a middlebox might.
type splitConn struct {
	net.Conn
	size  int
	first bool
}

func (c *splitConn) Write(b []byte) (int, error) {
	if c.first {
		return c.Conn.Write(b)
	}
	c.first = true
	recs := reframe(b, c.size)
	for len(recs) > 0 {
		n := min(len(recs), c.size+RecordHeaderLen-2) // also split headers across writes
		if _, err := c.Conn.Write(recs[:n]); err != nil {
			return 0, err
		}
		recs = recs[n:]
		time.Sleep(100 * time.Microsecond)
	}
	return len(b), nil
}

func TestProxySplitClientHello(t *testing.T) {
	srv := certtest.NewServer(t, backendID)
	b := startBackend(t, "b1", srv)
	// A hello in 1-byte records, each written on its own, can take longer
	// than the default hello timeout under the race detector.
	h := startProxy(t, Options{HelloTimeout: time.Minute}, Table{testSNI: {b.addr}})

	for _, size := range []int{1, 7, 100} {
		raw, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		c := tls.Client(&splitConn{Conn: raw, size: size}, srv.ClientConfig(testSNI))
		c.SetDeadline(time.Now().Add(10 * time.Second))
		id, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil || id != "b1\n" {
			t.Fatalf("records of %d bytes: got %q, %v", size, id, err)
		}
	}
	if h.result(Routed) != 3 {
		t.Errorf("routed = %v, want 3", h.result(Routed))
	}
}

func TestProxySlowlorisTimesOut(t *testing.T) {
	srv := certtest.NewServer(t, backendID)
	b := startBackend(t, "b1", srv)
	h := startProxy(t, Options{HelloTimeout: 300 * time.Millisecond}, Table{testSNI: {b.addr}})

	raw, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	start := time.Now()
	// One byte every 50ms: each read makes progress, the whole hello never
	// comes; the deadline is on the hello, not on each read.
	go func() {
		for _, b := range clientHello(t, &tls.Config{ServerName: testSNI}) {
			if _, err := raw.Write([]byte{b}); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := raw.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Fatalf("read: %v, want the proxy to close", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("closed after %v, want about 300ms", d)
	}
	testkit.Eventually(t, 10*time.Second, "one timeout", func() bool { return h.result(Timeout) == 1 })
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "reset") || strings.Contains(err.Error(), "broken pipe"))
}

// TestProxyFloodIsBounded: a flood of idle connections holds at most
// MaxConns connections, and their goroutines, at a time; each new one sheds
// the oldest idle one, so the gateway serves at once.
func TestProxyFloodIsBounded(t *testing.T) {
	srv := certtest.NewServer(t, backendID)
	b := startBackend(t, "b1", srv)
	const maxConns = 10
	h := startProxy(t, Options{MaxConns: maxConns, HelloTimeout: time.Minute}, Table{testSNI: {b.addr}})

	before := runtime.NumGoroutine()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 200 {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			continue // the backlog may be full: refused too
		}
		conns = append(conns, c)
	}
	testkit.Eventually(t, 10*time.Second, "the oldest idle ones shed", func() bool {
		return h.result(ShedOverload) == float64(len(conns)-maxConns)
	})
	// A shed connection's goroutine ends once its read returns: soon, so
	// this waits.
	testkit.Eventually(t, 10*time.Second, fmt.Sprintf("at most %d active connections, and goroutines for them", maxConns), func() bool {
		return h.active() == maxConns && runtime.NumGoroutine() <= before+maxConns+10
	})
	if r := h.result(RefusedOverload); r != 0 {
		t.Errorf("refused_overload = %v, want 0: there were idle connections to shed", r)
	}
	c, id, err := dial(t, h.addr, testSNI, srv)
	if err != nil || id != "b1" {
		t.Fatalf("during the flood: %q, %v", id, err)
	}
	c.Close()
}

func TestProxyDrain(t *testing.T) {
	srv := certtest.NewServer(t, backendID)
	b := startBackend(t, "b1", srv)
	h := startProxy(t, Options{DrainTimeout: 5 * time.Second}, Table{testSNI: {b.addr}})

	c, _, err := dial(t, h.addr, testSNI, srv)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h.cancel()
	// The listener closes; the open connection goes on.
	testkit.Eventually(t, 10*time.Second, "the listener closed", func() bool {
		raw, err := net.DialTimeout("tcp", h.addr, time.Second)
		if err == nil {
			raw.Close()
		}
		return err != nil
	})
	select {
	case err := <-h.done:
		t.Fatalf("Serve returned with a connection open: %v", err)
	default:
	}
	io.WriteString(c, "late")
	c.CloseWrite()
	rest, err := io.ReadAll(c)
	if err != nil || string(rest) != "LATE bye\n" {
		t.Fatalf("during drain: %q, %v", rest, err)
	}
	c.Close() // a TLS CloseWrite sends close_notify but no FIN
	select {
	case err := <-h.done:
		h.done <- err
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return once the connection ended")
	}
}

func TestProxyDrainTimeout(t *testing.T) {
	srv := certtest.NewServer(t, backendID)
	b := startBackend(t, "b1", srv)
	h := startProxy(t, Options{DrainTimeout: 200 * time.Millisecond}, Table{testSNI: {b.addr}})

	c, _, err := dial(t, h.addr, testSNI, srv)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	h.cancel()
	select {
	case err := <-h.done:
		h.done <- err
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the drain timeout")
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("returned after %v, before the drain timeout", d)
	}
	if _, err := io.ReadAll(c); err != nil && !isReset(err) {
		t.Logf("client read after drain: %v", err)
	}
}
