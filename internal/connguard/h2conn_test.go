package connguard

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/net/http2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/horizonmesh/horizon/certs/certsvc"
	"github.com/horizonmesh/horizon/internal/testkit"
	"github.com/horizonmesh/horizon/internal/testkit/certtest"
)

// attackLimit bounds the attackers' loops: far more streams than any
// limit lets through, and done in a second or two if nothing stops them.
const attackLimit = 20000

// TestRapidResetGetsGoAway is CVE-2023-44487 against a port: HEADERS then
// RST_STREAM, as fast as the connection takes them. Unguarded, gRPC serves
// every stream and never says GOAWAY. Guarded, the connection gets
// GOAWAY(ENHANCE_YOUR_CALM) and is closed once it has made RapidResets
// early resets: the GOAWAY's last stream, and the handlers started, show
// that gRPC was handed exactly RapidResets+1 streams. Over TLS the client
// has no certificate: the mutual-TLS port does not require one. A proxy's
// stream on the same server goes on unharmed, and a new one works after.
func TestRapidResetGetsGoAway(t *testing.T) {
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"plaintext", false}, {"mtls without a client certificate", true}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Limits: Limits{RapidResets: 20}}
			var clientTLS *tls.Config
			var clientCreds credentials.TransportCredentials
			if tc.tls {
				cfg.Port = "mtls"
				serverTLS, horizon := mtlsServerConfig(t)
				cfg.Creds = credentials.NewTLS(serverTLS)
				clientTLS = horizon.ClientConfig("horizon")
				clientCreds = credentials.NewTLS(clientTLS.Clone())
				clientTLS.NextProtos = []string{"h2"}
			}
			srv := startServer(t, cfg)
			honest, err := srv.client(t, clientCreds).FullDuplexCall(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			echo(t, honest)
			before := srv.svc.started.Load()

			c := dialH2(t, srv.addr, clientTLS)
			for i, id := 0, uint32(1); i < attackLimit && !c.ended(); i, id = i+1, id+2 {
				_ = c.headers(id, fullDuplex)
				_ = c.reset(id)
				if i%8 == 7 && c.flush() != nil {
					break
				}
			}
			_ = c.flush()

			ga := c.waitGoAway(t)
			if ga.code != http2.ErrCodeEnhanceYourCalm || ga.debug != ReasonRapidReset {
				t.Errorf("GOAWAY %v %q, want ENHANCE_YOUR_CALM %q", ga.code, ga.debug, ReasonRapidReset)
			}
			streams := uint32(srv.guard.limits.RapidResets + 1)
			if ga.lastStream != 2*streams-1 {
				t.Errorf("GOAWAY last stream %d, want %d: gRPC is handed RapidResets+1 = %d streams", ga.lastStream, 2*streams-1, streams)
			}
			if got := srv.svc.started.Load() - before; got > int64(streams) {
				t.Errorf("%d handlers started, want at most %d", got, streams)
			}
			if got := srv.refusals(ReasonRapidReset); got != 1 {
				t.Errorf("rapid_reset refusals = %v, want 1", got)
			}
			if log := srv.log.String(); strings.Count(log, "reason=rapid_reset") != 1 {
				t.Errorf("want one log line for the connection, got:\n%s", log)
			}

			echo(t, honest)
			fresh, err := srv.client(t, clientCreds).FullDuplexCall(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			echo(t, fresh)
		})
	}
}

// TestStreamsPastTheLimit opens 10,000 streams on one connection, none of
// them reset, as a client that ignores SETTINGS_MAX_CONCURRENT_STREAMS does.
// Unguarded, gRPC runs a handler for every one. Guarded, at most
// MaxConcurrentStreams run at once, and the connection gets GOAWAY once the
// client has opened RapidResets streams past the limit: gRPC was handed
// MaxConcurrentStreams + RapidResets streams, whatever it made of them by
// then.
func TestStreamsPastTheLimit(t *testing.T) {
	srv := startServer(t, Config{Limits: Limits{StreamRate: 1e6, StreamBurst: 1 << 20}})
	l := srv.guard.limits
	c := dialH2(t, srv.addr, nil)
	for i, id := 0, uint32(1); i < 10000 && !c.ended(); i, id = i+1, id+2 {
		_ = c.headers(id, fullDuplex)
		if i%16 == 15 && c.flush() != nil {
			break
		}
	}
	_ = c.flush()
	testkit.Eventually(t, 10*time.Second, "the connection closed", func() bool {
		if peak := srv.svc.peak.Load(); peak > int64(l.MaxConcurrentStreams) {
			t.Fatalf("%d handlers ran at once on one connection, want at most MaxConcurrentStreams = %d", peak, l.MaxConcurrentStreams)
		}
		return c.ended()
	})
	ga, _ := c.received()
	if ga == nil || ga.code != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("GOAWAY %+v, want ENHANCE_YOUR_CALM", ga)
	}
	if streams := l.MaxConcurrentStreams + uint32(l.RapidResets); ga.lastStream != 2*streams-1 {
		t.Errorf("GOAWAY last stream %d, want %d (%d streams)", ga.lastStream, 2*streams-1, streams)
	}
	testkit.Eventually(t, 10*time.Second, "the handlers end with the connection", func() bool { return srv.svc.active.Load() == 0 })
}

// TestHonestClientsKeepTheirConnection: a gRPC client that opens 1,000
// streams at once on one connection gets MaxConcurrentStreams of them
// served at a time and queues the rest; one whose streams the server ends
// (and which then resets them) resets nothing early. Neither is taken for
// an abuser.
func TestHonestClientsKeepTheirConnection(t *testing.T) {
	srv := startServer(t, Config{Limits: Limits{RapidResets: 5, StreamRate: 1e6, StreamBurst: 1 << 20}})
	max := int64(srv.guard.limits.MaxConcurrentStreams)
	hold := make(chan struct{})
	srv.svc.hold = hold
	client := srv.client(t, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for range 1000 {
		wg.Go(func() {
			stream, err := client.FullDuplexCall(context.Background())
			if err == nil {
				err = stream.Send(&testpb.StreamingOutputCallRequest{})
			}
			// Send returns io.EOF when the server has ended the stream;
			// Recv returns its status.
			if err == nil || errors.Is(err, io.EOF) {
				_, err = stream.Recv()
			}
			if err == nil {
				err = stream.CloseSend()
			}
			if err == nil {
				if _, err = stream.Recv(); err == io.EOF {
					err = nil
				}
			}
			if err != nil {
				errs <- err
			}
		})
	}
	testkit.Eventually(t, 10*time.Second, "MaxConcurrentStreams handlers running", func() bool { return srv.svc.active.Load() >= max })
	close(hold)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("stream failed: %v", err)
	}
	if peak := srv.svc.peak.Load(); peak != max {
		t.Errorf("%d handlers ran at once, want MaxConcurrentStreams = %d", peak, max)
	}
	for range 4 * srv.guard.limits.RapidResets {
		stream, err := client.HalfDuplexCall(context.Background()) // the server ends it: Unimplemented
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); status.Code(err) != codes.Unimplemented {
			t.Fatalf("HalfDuplexCall: %v, want Unimplemented", err)
		}
	}
	if got := srv.refusals(ReasonRapidReset); got != 0 {
		t.Fatalf("an honest client was refused for rapid reset (%v)", got)
	}
	stream, err := client.FullDuplexCall(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	echo(t, stream)
}

// mtlsServerConfig is the mutual-TLS port's configuration as Horizon
// serves it when it is the CA (certsvc.ServerTLS: a client certificate is
// asked for, not required), and the bundle a client verifies Horizon with.
func mtlsServerConfig(t *testing.T) (*tls.Config, certtest.Server) {
	t.Helper()
	td := spiffeid.RequireTrustDomainFromString("example.org")
	root := certtest.Root(t, td)
	horizon := certtest.Server{SVID: certtest.SVID(t, root, "spiffe://example.org/ns/horizon-system/sa/horizon"), Bundle: root.Bundle()}
	return certsvc.ServerTLS(horizon.SVID, horizon.Bundle, td, time.Now), horizon
}

// TestHeaderListIsBounded opens a stream with 100 KiB of headers.
// Unguarded (gRPC's default allows 16 MiB), a handler serves it. Guarded,
// gRPC's framer (x/net's) stops reading at MaxHeaderListSize and closes
// the connection, without starting a handler.
func TestHeaderListIsBounded(t *testing.T) {
	srv := startServer(t, Config{})
	c := dialH2(t, srv.addr, nil)
	var large []string
	for i := range 50 {
		large = append(large, fmt.Sprintf("x-large-%d", i), strings.Repeat("a", 2<<10))
	}
	if err := c.headers(1, fullDuplex, large...); err != nil {
		t.Fatal(err)
	}
	if err := c.flush(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "the connection closed", func() bool {
		if srv.svc.started.Load() > 0 {
			t.Fatal("a stream with 100 KiB of headers was served")
		}
		return c.ended()
	})
}
