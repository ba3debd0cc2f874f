package sni

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/horizonmesh/horizon/internal/testkit"
	"github.com/horizonmesh/horizon/internal/testkit/certtest"
)

// The tests of the connection limits: the sources of connections are
// loopback addresses other than 127.0.0.1, all of 127.0.0.0/8 being local on
// Linux. Hello-less connections get a hello timeout of a minute, so that only
// shedding can close them.

// rawFrom connects to addr from the address ip and sends nothing.
func rawFrom(t *testing.T, addr, ip string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("connect from %s: %v", ip, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// handshake sends a ClientHello for testSNI on raw, completes TLS with the
// backend through the proxy and returns the backend's id.
func handshake(raw net.Conn, srv certtest.Server) (*tls.Conn, string, error) {
	c := tls.Client(raw, srv.ClientConfig(testSNI))
	c.SetDeadline(time.Now().Add(10 * time.Second))
	id, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return nil, "", err
	}
	return c, strings.TrimSpace(id), nil
}

// dialFrom is dial from the address ip: a client that sends its hello at once.
func dialFrom(t *testing.T, addr, ip string, srv certtest.Server) (*tls.Conn, error) {
	t.Helper()
	c, id, err := handshake(rawFrom(t, addr, ip), srv)
	if err == nil && id != "b1" {
		err = fmt.Errorf("backend %q, want b1", id)
	}
	return c, err
}

// echo checks that bytes flow both ways through c: the backend answers what
// it reads, upper-cased, once c half-closes. c is done afterwards.
func echo(c *tls.Conn, msg string) error {
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	if err := c.CloseWrite(); err != nil {
		return err
	}
	got, err := io.ReadAll(c)
	if want := strings.ToUpper(msg) + " bye\n"; err != nil || string(got) != want {
		return fmt.Errorf("got %q, %v; want %q", got, err, want)
	}
	return nil
}

// closed reads from c until the proxy closes it; a proxy that does not
// fails the read at the deadline.
func closed(t *testing.T, c net.Conn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("%s: read %d bytes, %v; want the proxy to have closed it", what, n, err)
	}
}

// refusedFrom connects from ip, expecting the proxy to close the connection
// at once: on loopback, the reset may even fail the connect.
func refusedFrom(t *testing.T, addr, ip, what string) {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		if !isReset(err) {
			t.Fatalf("%s: %v", what, err)
		}
		return
	}
	defer c.Close()
	closed(t, c, what)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestProxyIdleSocketsDoNotLockOut is the incident, scaled down: idle
// sockets, twice the cap, half of them from one host and the rest from four
// others. Then honest clients, from that host and from another, connect and
// send their hello at once: every one of them is proxied.
func TestProxyIdleSocketsDoNotLockOut(t *testing.T) {
	srv := certtest.NewServer(t, backendID)
	b := startBackend(t, "b1", srv)
	const maxConns, perSource = 64, 16
	h := startProxy(t, Options{MaxConns: maxConns, MaxConnsPerSource: perSource, HelloTimeout: time.Minute}, Table{testSNI: {b.addr}})

	const idle = 2 * maxConns
	for i := range idle {
		ip := "127.0.0.1"
		if i%2 == 1 {
			ip = fmt.Sprintf("127.0.0.%d", 2+i/2%4)
		}
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		c, err := d.Dial("tcp", h.addr)
		if err != nil && !isReset(err) { // reset: refused at once
			t.Fatalf("idle socket %d from %s: %v", i, ip, err)
		}
		if c != nil {
			defer c.Close()
		}
	}
	// Wait until the proxy has taken every idle socket in: each is open, or
	// was refused or shed.
	testkit.Eventually(t, 10*time.Second, "the idle sockets accepted", func() bool {
		n := h.active()
		for _, r := range results {
			n += h.result(r)
		}
		return n == idle
	})

	for i := range 24 {
		ip := "127.0.0.1"
		if i%2 == 1 {
			ip = "127.0.0.100"
		}
		c, err := dialFrom(t, h.addr, ip, srv)
		if err != nil {
			t.Fatalf("honest connection %d from %s, with %d idle sockets sent: %v", i, ip, idle, err)
		}
		if err := echo(c, fmt.Sprintf("honest %d", i)); err != nil {
			t.Fatalf("honest connection %d from %s: %v", i, ip, err)
		}
		c.Close()
	}
	if got := h.result(Routed); got != 24 {
		t.Errorf("routed = %v, want 24", got)
	}
	if r, s := h.result(RefusedOverload), h.result(RefusedSourceLimit); r != 0 || s != 0 {
		t.Errorf("refused_overload = %v, refused_source_limit = %v; want 0: idle sockets are shed, never a new one refused", r, s)
	}
	if h.result(ShedOverload) == 0 || h.result(ShedSourceLimit) == 0 {
		t.Errorf("shed_overload = %v, shed_source_limit = %v; want both limits to have shed", h.result(ShedOverload), h.result(ShedSourceLimit))
	}
}

// TestProxyShedsHelloLessOldestFirst: at the cap, a new connection sheds
// the oldest connection that has not sent its hello; connections past their
// hello are never shed, and once all are, a new one is refused.
func TestProxyShedsHelloLessOldestFirst(t *testing.T) {
	srv := certtest.NewServer(t, backendID)
	b := startBackend(t, "b1", srv)
	logs := &testkit.Buffer{}
	h := startProxy(t, Options{
		MaxConns: 4, HelloTimeout: time.Minute,
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	}, Table{testSNI: {b.addr}})
	shed := func(n float64) {
		t.Helper()
		testkit.Eventually(t, 10*time.Second, fmt.Sprintf("shed_overload = %v", n), func() bool { return h.result(ShedOverload) == n })
	}
	proxied := func(raw net.Conn, what string) *tls.Conn {
		t.Helper()
		c, id, err := handshake(raw, srv)
		if err != nil || id != "b1" {
			t.Fatalf("%s: %q, %v; want it proxied", what, id, err)
		}
		return c
	}

	p1, err := dialFrom(t, h.addr, "127.0.0.1", srv)
	if err != nil {
		t.Fatal(err)
	}
	a := rawFrom(t, h.addr, "127.0.0.2")
	bb := rawFrom(t, h.addr, "127.0.0.3")
	c := rawFrom(t, h.addr, "127.0.0.2")
	testkit.Eventually(t, 10*time.Second, "4 open", func() bool { return h.active() == 4 })

	d := rawFrom(t, h.addr, "127.0.0.4") // full: sheds a, the oldest hello-less
	shed(1)
	closed(t, a, "a, the oldest hello-less")
	p2 := proxied(bb, "b, not the oldest") // b goes past its hello
	e := rawFrom(t, h.addr, "127.0.0.4")   // sheds c: p1 and b are past their hello
	shed(2)
	closed(t, c, "c, the oldest hello-less")
	p3 := proxied(d, "d")
	f := rawFrom(t, h.addr, "127.0.0.5") // sheds e
	shed(3)
	closed(t, e, "e")
	p4 := proxied(f, "f")

	// All four past their hello: a new one is refused, none shed.
	refusedFrom(t, h.addr, "127.0.0.6", "g, with every connection past its hello")
	testkit.Eventually(t, 10*time.Second, "refused_overload = 1", func() bool { return h.result(RefusedOverload) == 1 })
	for i, p := range []*tls.Conn{p1, p2, p3, p4} {
		if err := echo(p, "still here"); err != nil {
			t.Errorf("proxied connection %d: %v", i+1, err)
		}
	}
	if got := h.result(ShedOverload); got != 3 {
		t.Errorf("shed_overload = %v, want 3", got)
	}
	out := logs.String()
	for _, want := range []string{"result=shed_overload source=127.0.0.2", "result=refused_overload source=127.0.0.6"} {
		if !strings.Contains(out, want) {
			t.Errorf("no log line with %q in:\n%s", want, out)
		}
	}
	// Rate-limited: one line per interval for the three sheds.
	if n := strings.Count(out, "result=shed_overload"); n != 1 {
		t.Errorf("%d log lines of shed_overload, want 1 (rate-limited):\n%s", n, out)
	}
}

// TestProxyPerSourceLimit: one address holds at most MaxConnsPerSource
// connections: a new one sheds the address's oldest hello-less one, or is
// refused if it has none; other addresses are not touched.
func TestProxyPerSourceLimit(t *testing.T) {
	srv := certtest.NewServer(t, backendID)
	b := startBackend(t, "b1", srv)
	logs := &testkit.Buffer{}
	h := startProxy(t, Options{
		MaxConnsPerSource: 3, HelloTimeout: time.Minute,
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	}, Table{testSNI: {b.addr}})

	other := rawFrom(t, h.addr, "127.0.0.2") // hello-less, older than all below
	var mine []*tls.Conn
	for i := range 3 {
		c, err := dialFrom(t, h.addr, "127.0.0.1", srv)
		if err != nil {
			t.Fatalf("connection %d from 127.0.0.1: %v", i+1, err)
		}
		mine = append(mine, c)
	}
	refusedFrom(t, h.addr, "127.0.0.1", "the fourth from 127.0.0.1")
	testkit.Eventually(t, 10*time.Second, "refused_source_limit = 1", func() bool { return h.result(RefusedSourceLimit) == 1 })
	y, err := dialFrom(t, h.addr, "127.0.0.3", srv)
	if err != nil {
		t.Fatalf("another address, with 127.0.0.1 at its limit: %v", err)
	}
	if err := echo(y, "other"); err != nil {
		t.Fatal(err)
	}
	y.Close() // a TLS CloseWrite sends no FIN

	// A hello-less connection of the address makes room for a new one of it.
	if err := echo(mine[0], "one"); err != nil {
		t.Fatal(err)
	}
	mine[0].Close()
	testkit.Eventually(t, 10*time.Second, "the first and the other address's closed", func() bool { return h.active() == 3 })
	q1 := rawFrom(t, h.addr, "127.0.0.1")
	q2 := rawFrom(t, h.addr, "127.0.0.1")
	testkit.Eventually(t, 10*time.Second, "shed_source_limit = 1", func() bool { return h.result(ShedSourceLimit) == 1 })
	closed(t, q1, "the older hello-less from 127.0.0.1")
	if _, _, err := handshake(q2, srv); err != nil {
		t.Fatalf("the newer hello-less from 127.0.0.1: %v", err)
	}
	if _, _, err := handshake(other, srv); err != nil {
		t.Fatalf("the hello-less from 127.0.0.2, older than those shed: %v", err)
	}
	if got := h.result(ShedOverload) + h.result(RefusedOverload); got != 0 {
		t.Errorf("the global cap shed or refused %v, want 0", got)
	}
	out := logs.String()
	for _, want := range []string{"result=refused_source_limit source=127.0.0.1", "result=shed_source_limit source=127.0.0.1"} {
		if !strings.Contains(out, want) {
			t.Errorf("no log line with %q in:\n%s", want, out)
		}
	}
}

// TestProxySilentSocketTimesOut: a socket that sends nothing is closed at
// the hello timeout.
func TestProxySilentSocketTimesOut(t *testing.T) {
	srv := certtest.NewServer(t, backendID)
	b := startBackend(t, "b1", srv)
	h := startProxy(t, Options{HelloTimeout: 200 * time.Millisecond}, Table{testSNI: {b.addr}})

	closed(t, rawFrom(t, h.addr, "127.0.0.1"), "a silent socket")
	testkit.Eventually(t, 10*time.Second, "one timeout", func() bool { return h.result(Timeout) == 1 })
	if d := New(Options{}).opts.HelloTimeout; d != 2*time.Second {
		t.Errorf("default hello timeout %v, want 2s", d)
	}
}
