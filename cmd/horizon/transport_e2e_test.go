package main

// `horizon serve`'s gRPC ports are guarded (internal/connguard), tried from
// outside with raw HTTP/2 and TLS: before, rapid reset held 1.9 cores for
// 13 s with no GOAWAY, and failed TLS handshakes were neither logged nor
// counted.

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/horizonmesh/horizon/internal/testkit"
	"github.com/horizonmesh/horizon/internal/testkit/certtest"
)

// rapidReset opens streams on conn and resets each at once, then reads
// frames until a GOAWAY or the end of the connection. It returns the GOAWAY
// (nil if none came) and how many streams it opened.
func rapidReset(t *testing.T, conn net.Conn, streams int) (*http2.GoAwayFrame, int) {
	t.Helper()
	conn.SetDeadline(time.Now().Add(e2eWait))
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", "horizon"},
		{":path", "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"},
		{"content-type", "application/grpc"}, {"te", "trailers"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	// The reads run beside the writes: the server may stop reading once it
	// has had enough.
	goAway := make(chan *http2.GoAwayFrame, 1)
	go func() {
		defer close(goAway)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			if g, ok := f.(*http2.GoAwayFrame); ok {
				goAway <- g
				return
			}
		}
	}()
	opened := 0
	for i := range streams {
		id := uint32(2*i + 1)
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndHeaders: true}); err != nil {
			break
		}
		opened++
		if err := fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
			break
		}
	}
	return <-goAway, opened
}

func TestE2ERapidResetGetsGoAway(t *testing.T) {
	bin := buildHorizon(t)
	root := certtest.Root(t, spiffeid.RequireTrustDomainFromString("cluster.local"))
	caDir := t.TempDir()
	writeCADir(t, caDir, root)
	mtls := freeLoopbackAddr(t)
	h := startHorizon(t, bin, "--ca-dir", caDir, "--mtls-address", mtls)

	// The plaintext port (startHorizon gives it a loopback address).
	conn, err := net.Dial("tcp", h.xdsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	g, opened := rapidReset(t, conn, 2000)
	if g == nil || g.ErrCode != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("plaintext: %d streams opened and reset: GOAWAY %v, want ENHANCE_YOUR_CALM", opened, g)
	}
	// The mTLS port, with no client certificate at all.
	tconn, err := tls.Dial("tcp", mtls, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer tconn.Close()
	if g, opened := rapidReset(t, tconn, 2000); g == nil || g.ErrCode != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("mtls: %d streams opened and reset: GOAWAY %v, want ENHANCE_YOUR_CALM", opened, g)
	}
	testkit.Eventually(t, e2eWait, "both counted", func() error {
		m := metricsText(t, h)
		for _, want := range []string{`horizon_transport_refusals_total{port="plaintext",reason="rapid_reset"} 1`, `horizon_transport_refusals_total{port="mtls",reason="rapid_reset"} 1`} {
			if !strings.Contains(m, want) {
				return errors.New("no " + want)
			}
		}
		return nil
	})
}

// TestE2EHandshakeFailuresCounted: an SVID from a rogue root is refused at
// the handshake, and the refusal is counted by reason and logged.
func TestE2EHandshakeFailuresCounted(t *testing.T) {
	bin := buildHorizon(t)
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	root := certtest.Root(t, td)
	caDir := t.TempDir()
	writeCADir(t, caDir, root)
	mtls := freeLoopbackAddr(t)
	h := startHorizon(t, bin, "--ca-dir", caDir, "--mtls-address", mtls)

	rogue := certtest.SVID(t, certtest.Root(t, td), "spiffe://cluster.local/ns/demo/sa/echo")
	var chain [][]byte
	for _, c := range rogue.Certificates {
		chain = append(chain, c.Raw)
	}
	c, err := tls.Dial("tcp", mtls, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"},
		Certificates: []tls.Certificate{{Certificate: chain, PrivateKey: rogue.PrivateKey}}})
	if err == nil {
		// TLS 1.3: the server's verdict arrives with the first read.
		c.SetReadDeadline(time.Now().Add(e2eWait))
		_, err = c.Read(make([]byte, 1))
		c.Close()
	}
	if err == nil {
		t.Fatal("a rogue root's SVID was accepted")
	}
	testkit.Eventually(t, e2eWait, "the failed handshake counted and logged", func() error {
		if !strings.Contains(metricsText(t, h), `horizon_transport_tls_handshake_failures_total{port="mtls",reason="untrusted"} 1`) {
			return errors.New("not counted as untrusted")
		}
		if !strings.Contains(h.out.String(), "untrusted") {
			return errors.New("not logged")
		}
		return nil
	})
}

func metricsText(t *testing.T, h *horizonProcess) string {
	t.Helper()
	resp, err := h.http.Get("http://" + h.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
