package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/horizonmesh/horizon/internal/testkit"
	"github.com/horizonmesh/horizon/internal/testkit/certtest"
)

// fakeWorkloadAPI is the X.509 half of a SPIRE agent's Workload API: it
// streams one X509SVIDResponse and then every replacement set with set, and
// like SPIRE refuses calls without the workload.spiffe.io header, and answers
// PermissionDenied while it has no identity for the caller.
type fakeWorkloadAPI struct {
	workload.UnimplementedSpiffeWorkloadAPIServer

	mu      sync.Mutex
	resp    *workload.X509SVIDResponse // nil: no identity issued
	changed chan struct{}              // closed by the next set
}

// startFakeWorkloadAPI serves a fakeWorkloadAPI on a unix socket in a
// temporary directory and returns it and the socket's path.
func startFakeWorkloadAPI(t *testing.T) (*fakeWorkloadAPI, string) {
	t.Helper()
	f := &fakeWorkloadAPI{changed: make(chan struct{})}
	path := filepath.Join(t.TempDir(), "agent.sock")
	lis, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	workload.RegisterSpiffeWorkloadAPIServer(s, f)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return f, path
}

// set makes resp what every stream sends next (nil: no identity).
func (f *fakeWorkloadAPI) set(resp *workload.X509SVIDResponse) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resp = resp
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeWorkloadAPI) current() (*workload.X509SVIDResponse, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.resp, f.changed
}

func (f *fakeWorkloadAPI) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	md, _ := metadata.FromIncomingContext(stream.Context())
	if v := md.Get("workload.spiffe.io"); len(v) != 1 || v[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	for {
		resp, changed := f.current()
		if resp == nil {
			return status.Error(codes.PermissionDenied, "no identity issued")
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
		select {
		case <-changed:
		case <-stream.Context().Done():
			return nil
		}
	}
}

// spireResponse is what a SPIRE agent sends a workload entitled to svid, with
// roots as its trust domain's bundle.
func spireResponse(t *testing.T, svid *x509svid.SVID, roots ...*x509.Certificate) *workload.X509SVIDResponse {
	t.Helper()
	chain, key, err := svid.MarshalRaw()
	if err != nil {
		t.Fatal(err)
	}
	var bundle []byte
	for _, r := range roots {
		bundle = append(bundle, r.Raw...)
	}
	return &workload.X509SVIDResponse{Svids: []*workload.X509SVID{{
		SpiffeId: svid.ID.String(), X509Svid: chain, X509SvidKey: key, Bundle: bundle,
	}}}
}

// startSpireWhoami serves gRPC health checks over cfg on a loopback port; every
// answer carries the client's SPIFFE ID, as the server saw it, in the header
// "peer-spiffe-id".
func startSpireWhoami(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)), grpc.UnaryInterceptor(
		func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			p, _ := peer.FromContext(ctx)
			info, ok := p.AuthInfo.(credentials.TLSInfo)
			if !ok || len(info.State.PeerCertificates) == 0 {
				return nil, status.Error(codes.Unauthenticated, "no client certificate")
			}
			id, err := x509svid.IDFromCert(info.State.PeerCertificates[0])
			if err != nil {
				return nil, status.Error(codes.Unauthenticated, err.Error())
			}
			grpc.SetHeader(ctx, metadata.Pairs("peer-spiffe-id", id.String()))
			return handler(ctx, req)
		}))
	healthpb.RegisterHealthServer(s, health.NewServer())
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

// spireWhoami calls the server at addr as client, trusting bundle for a server
// that is serverID, and returns the client's SPIFFE ID as the server saw it
// and the certificate the server presented.
func spireWhoami(addr string, client x509svid.Source, bundle x509bundle.Source, serverID spiffeid.ID) (string, *x509.Certificate, error) {
	var served atomic.Pointer[x509.Certificate]
	cfg := tlsconfig.MTLSClientConfig(client, bundle, tlsconfig.AuthorizeID(serverID))
	cfg.VerifyConnection = func(cs tls.ConnectionState) error { served.Store(cs.PeerCertificates[0]); return nil }
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return "", nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var header metadata.MD
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&header)); err != nil {
		return "", served.Load(), err
	}
	return strings.Join(header.Get("peer-spiffe-id"), ","), served.Load(), nil
}

// TestSpireServerTLS: under --spire-socket the mTLS port presents Horizon's
// SVID from the Workload API, admits a proxy whose SVID chains to the trust
// domain's bundle (and sees its SPIFFE ID), refuses one from a foreign root,
// and follows SPIRE's rotations of both the SVID and the bundle.
func TestSpireServerTLS(t *testing.T) {
	leaks := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		if !t.Failed() {
			goleak.VerifyNone(t, leaks)
		}
	})
	td := spiffeid.RequireTrustDomainFromString("example.org")
	root := certtest.Root(t, td)
	east, err := root.NewIntermediate("east")
	if err != nil {
		t.Fatal(err)
	}
	horizonID := spiffeid.RequireFromString("spiffe://example.org/ns/horizon-system/sa/horizon")
	first := certtest.SVID(t, east, horizonID.String())
	fake, socket := startFakeWorkloadAPI(t)
	fake.set(spireResponse(t, first, root.Root()))

	cfg, src, err := spireServerTLS(context.Background(), socket, td, 10*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	if got := src.Authorities(); len(got) != 1 || !got[0].Equal(root.Root()) {
		t.Fatalf("Authorities: %d certificates, want the root", len(got))
	}
	if got, want := src.SVIDExpiry(), first.Certificates[0].NotAfter; !got.Equal(want) {
		t.Fatalf("SVIDExpiry %v, want %v", got, want)
	}
	addr := startSpireWhoami(t, cfg)

	echo := certtest.SVID(t, east, "spiffe://example.org/ns/demo/sa/echo")
	id, served, err := spireWhoami(addr, echo, root.Bundle(), horizonID)
	if err != nil {
		t.Fatalf("a proxy of the trust domain: %v", err)
	}
	if id != echo.ID.String() {
		t.Fatalf("the server saw %q, want %s", id, echo.ID)
	}
	if !served.Equal(first.Certificates[0]) {
		t.Fatal("the server did not present Horizon's SVID from the Workload API")
	}

	foreignRoot := certtest.Root(t, td)
	foreign := certtest.SVID(t, foreignRoot, "spiffe://example.org/ns/demo/sa/echo")
	if _, _, err := spireWhoami(addr, foreign, root.Bundle(), horizonID); err == nil {
		t.Fatal("a proxy whose SVID chains to a foreign root was admitted")
	}

	// SPIRE rotates to a new root: a new SVID for Horizon, a bundle of the
	// new root alone. New handshakes present the new SVID, admit proxies of
	// the new root and refuse those of the old one.
	newRoot := certtest.Root(t, td)
	second := certtest.SVID(t, newRoot, horizonID.String())
	fake.set(spireResponse(t, second, newRoot.Root()))
	echo2 := certtest.SVID(t, newRoot, "spiffe://example.org/ns/demo/sa/echo")
	both := x509bundle.FromX509Authorities(td, []*x509.Certificate{root.Root(), newRoot.Root()})
	testkit.Eventually(t, 10*time.Second, "the rotated SVID and bundle used", func() error {
		id, served, err := spireWhoami(addr, echo2, both, horizonID)
		if err == nil && (id != echo2.ID.String() || !served.Equal(second.Certificates[0])) {
			err = fmt.Errorf("seen as %s by a server presenting certificate %s", id, served.SerialNumber)
		}
		return err
	})
	if _, _, err := spireWhoami(addr, echo, both, horizonID); err == nil {
		t.Fatal("a proxy of the retired root was admitted after the bundle rotated")
	}
	if got := src.Authorities(); len(got) != 1 || !got[0].Equal(newRoot.Root()) {
		t.Fatal("Authorities do not follow the rotated bundle")
	}
}

// TestSpireUnreachable: with no agent at the socket, or no identity for
// Horizon, spireServerTLS gives up after its timeout with an error naming the
// socket and the Workload API's own complaint.
func TestSpireUnreachable(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	t.Run("no agent", func(t *testing.T) {
		socket := filepath.Join(t.TempDir(), "nothing.sock")
		start := time.Now()
		_, _, err := spireServerTLS(context.Background(), socket, td, 500*time.Millisecond, nil)
		if err == nil {
			t.Fatal("no error")
		}
		t.Log(err)
		if !strings.Contains(err.Error(), "unix://"+socket) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("error %q: want the socket and a deadline", err)
		}
		if !strings.Contains(err.Error(), "no such file or directory") {
			t.Errorf("error %q does not tell why", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("took %v for a 500ms timeout", d)
		}
	})
	t.Run("no identity", func(t *testing.T) {
		_, socket := startFakeWorkloadAPI(t)
		_, _, err := spireServerTLS(context.Background(), socket, td, 500*time.Millisecond, nil)
		if err == nil || !strings.Contains(err.Error(), "no identity issued") || !strings.Contains(err.Error(), socket) {
			t.Fatalf("error %v: want the socket and PermissionDenied's message", err)
		}
	})
	t.Run("another trust domain", func(t *testing.T) {
		other := certtest.Root(t, spiffeid.RequireTrustDomainFromString("other.org"))
		fake, socket := startFakeWorkloadAPI(t)
		fake.set(spireResponse(t, certtest.SVID(t, other, "spiffe://other.org/ns/horizon-system/sa/horizon"), other.Root()))
		_, _, err := spireServerTLS(context.Background(), socket, td, 5*time.Second, nil)
		if err == nil || !strings.Contains(err.Error(), "not in trust domain example.org") {
			t.Fatalf("error %v: want the trust domain mismatch", err)
		}
	})
}

// TestSpireFakeRefusesWithoutHeader: the fake, like SPIRE, refuses a
// Workload API call without the workload.spiffe.io header, so the tests above
// show go-spiffe's client sends it.
func TestSpireFakeRefusesWithoutHeader(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	root := certtest.Root(t, td)
	fake, socket := startFakeWorkloadAPI(t)
	fake.set(spireResponse(t, certtest.SVID(t, root, "spiffe://example.org/ns/a/sa/b"), root.Root()))
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := workload.NewSpiffeWorkloadAPIClient(conn).FetchX509SVID(ctx, &workload.X509SVIDRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("without the header: %v, want InvalidArgument", err)
	}
}

func TestSpireAddress(t *testing.T) {
	abs, err := filepath.Abs("agent.sock")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ in, want string }{
		{"/run/spire/sockets/agent.sock", "unix:///run/spire/sockets/agent.sock"},
		{"unix:///run/spire/sockets/agent.sock", "unix:///run/spire/sockets/agent.sock"},
		{"agent.sock", "unix://" + abs},
		{"tcp://127.0.0.1:8081", "tcp://127.0.0.1:8081"},
		{"", ""},
		{"http://agent", ""},
	} {
		got, err := spireAddress(c.in)
		if c.want == "" {
			if err == nil {
				t.Errorf("spireAddress(%q) = %q, want an error", c.in, got)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("spireAddress(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}
