package connguard

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/horizonmesh/horizon/internal/testkit"
)

// TestConnectionCaps opens connections from three loopback addresses
// against MaxConnsPerSource 2 and MaxConns 3. Unguarded, every one is
// served. Guarded, the third from one address and the fourth in all are
// closed at accept and counted by reason; closing one frees its place.
func TestConnectionCaps(t *testing.T) {
	srv := startServer(t, Config{Limits: Limits{MaxConns: 3, MaxConnsPerSource: 2}})
	a1 := dialFrom(t, srv.addr, "127.0.0.1")
	a2 := dialFrom(t, srv.addr, "127.0.0.1")
	a3 := dialFrom(t, srv.addr, "127.0.0.1")
	b1 := dialFrom(t, srv.addr, "127.0.0.2")
	c1 := dialFrom(t, srv.addr, "127.0.0.3")
	for _, tc := range []struct {
		name   string
		conn   net.Conn
		served bool
	}{
		{"first from 127.0.0.1", a1, true},
		{"second from 127.0.0.1", a2, true},
		{"third from 127.0.0.1: over MaxConnsPerSource", a3, false},
		{"first from 127.0.0.2", b1, true},
		{"first from 127.0.0.3: over MaxConns", c1, false},
	} {
		if got := served(t, tc.conn); got != tc.served {
			t.Errorf("%s: served %v, want %v", tc.name, got, tc.served)
		}
	}
	for reason, want := range map[string]float64{ReasonMaxConnsPerSource: 1, ReasonMaxConns: 1} {
		if got := srv.refusals(reason); got != want {
			t.Errorf("refusals{reason=%s} = %v, want %v", reason, got, want)
		}
	}
	open := func() float64 { return testutil.ToFloat64(srv.metrics.Connections(srv.port)) }
	if got := open(); got != 3 {
		t.Errorf("connections = %v, want 3", got)
	}
	if log := srv.log.String(); !strings.Contains(log, "reason=max_conns_per_source") || !strings.Contains(log, "peer=127.0.0.1:") {
		t.Errorf("no log line for the refusal:\n%s", log)
	}

	a1.Close()
	testkit.Eventually(t, 10*time.Second, "the closed connection leaves the count", func() bool { return open() == 2 })
	if again := dialFrom(t, srv.addr, "127.0.0.1"); !served(t, again) {
		t.Error("a new connection from 127.0.0.1 after one closed was not served")
	}
}

// dialFrom connects to addr from the loopback address local.
func dialFrom(t *testing.T, addr, local string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// served says whether the server serves conn: gRPC sends its SETTINGS
// first thing; a refused connection is closed.
func served(t *testing.T, conn net.Conn) bool {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer conn.SetReadDeadline(time.Time{})
	var hdr [frameHeaderLen]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("neither served nor closed: %v", err)
		}
		return false
	}
	if hdr[3] != 0x4 { // SETTINGS
		t.Fatalf("first frame of type %d, want SETTINGS", hdr[3])
	}
	return true
}
