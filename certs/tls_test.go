package certs

import (
	"context"
	"crypto"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
)

// tlsServer is a gRPC health server on loopback with mTLS from an SVID: it
// records the SPIFFE ID of each caller and each handshake it refuses.
type tlsServer struct {
	addr    string
	callers chan spiffeid.ID
	refused chan error
}

func startTLSServer(t *testing.T, svid *x509svid.SVID, bundle x509bundle.Source) *tlsServer {
	t.Helper()
	s := &tlsServer{callers: make(chan spiffeid.ID, 10), refused: make(chan error, 10)}
	cfg := tlsconfig.MTLSServerConfig(svid, bundle, Authorizer(tlsconfig.AuthorizeMemberOf(td)))
	verify := cfg.VerifyPeerCertificate
	cfg.VerifyPeerCertificate = func(raw [][]byte, chains [][]*x509.Certificate) error {
		err := verify(raw, chains)
		if err != nil {
			s.refused <- err
		}
		return err
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			p, _ := peer.FromContext(ctx)
			info, ok := p.AuthInfo.(credentials.TLSInfo)
			if !ok || len(info.State.PeerCertificates) == 0 {
				t.Errorf("caller without TLS credentials: %v", p.AuthInfo)
				return handler(ctx, req)
			}
			id, err := x509svid.IDFromCert(info.State.PeerCertificates[0])
			if err != nil {
				t.Errorf("caller's certificate: %v", err)
			}
			s.callers <- id
			return handler(ctx, req)
		}))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = lis.Addr().String()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return s
}

// check calls the server's health service once as svid, accepting a server
// that authorize allows.
func (s *tlsServer) check(t *testing.T, svid *x509svid.SVID, bundle x509bundle.Source, authorize tlsconfig.Authorizer) error {
	t.Helper()
	creds := credentials.NewTLS(tlsconfig.MTLSClientConfig(svid, bundle, Authorizer(authorize)))
	conn, err := grpc.NewClient("passthrough:///"+s.addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

func withKey(t *testing.T, svid *SVID, key crypto.Signer) *x509svid.SVID {
	t.Helper()
	x, err := svid.WithKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// A real mTLS handshake between workloads of two member clusters, each with
// an SVID from its own cluster's intermediate, trusting only the root.
func TestMTLSAcrossIntermediates(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	root, err := NewRoot(td) // real clock: go-spiffe's handshake verifies at time.Now
	if err != nil {
		t.Fatal(err)
	}
	east, err := root.NewIntermediate("east")
	if err != nil {
		t.Fatal(err)
	}
	west, err := root.NewIntermediate("west")
	if err != nil {
		t.Fatal(err)
	}
	foreignRoot, err := NewRoot(td)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := foreignRoot.NewIntermediate("west")
	if err != nil {
		t.Fatal(err)
	}
	bundle := root.Bundle()
	serverID := spiffeid.RequireFromString("spiffe://example.org/ns/demo/sa/echo")
	clientID := spiffeid.RequireFromString("spiffe://example.org/ns/shop/sa/cart")

	serverSVID, serverKey := issueKey(t, east, serverID)
	s := startTLSServer(t, withKey(t, serverSVID, serverKey), bundle)
	clientSVID, clientKey := issueKey(t, west, clientID)
	client := withKey(t, clientSVID, clientKey)

	t.Run("east and west", func(t *testing.T) {
		if err := s.check(t, client, bundle, tlsconfig.AuthorizeID(serverID)); err != nil {
			t.Fatal(err)
		}
		if got := <-s.callers; got != clientID {
			t.Errorf("server saw caller %v, want %v", got, clientID)
		}
	})

	t.Run("client from a foreign root", func(t *testing.T) {
		svid, key := issueKey(t, foreign, clientID)
		if err := s.check(t, withKey(t, svid, key), bundle, tlsconfig.AuthorizeID(serverID)); err == nil {
			t.Fatal("call succeeded")
		}
		select {
		case err := <-s.refused:
			t.Logf("server refused: %v", err)
		case id := <-s.callers:
			t.Fatalf("server served %v", id)
		}
	})

	t.Run("client trusting a foreign root", func(t *testing.T) {
		if err := s.check(t, client, foreignRoot.Bundle(), tlsconfig.AuthorizeID(serverID)); err == nil {
			t.Fatal("call succeeded")
		}
	})

	t.Run("server not the one the client wants", func(t *testing.T) {
		other := spiffeid.RequireFromString("spiffe://example.org/ns/demo/sa/other")
		if err := s.check(t, client, bundle, tlsconfig.AuthorizeID(other)); err == nil {
			t.Fatal("call succeeded")
		}
	})

	// go-spiffe's handshake verification accepts a leaf without the
	// digitalSignature key usage; Authorizer refuses it.
	t.Run("client leaf without digitalSignature", func(t *testing.T) {
		tmpl := leafTemplate(t, clientID.String())
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Minute), time.Now().Add(time.Hour)
		tmpl.KeyUsage = x509.KeyUsageKeyEncipherment
		chain, key := signLeafKey(t, west, tmpl)
		bad := &x509svid.SVID{ID: clientID, Certificates: chain, PrivateKey: key}
		if err := s.check(t, bad, bundle, tlsconfig.AuthorizeID(serverID)); err == nil {
			t.Fatal("call succeeded")
		}
		select {
		case err := <-s.refused:
			if ReasonOf(err) != ReasonKeyUsage {
				t.Errorf("server refused for %v, want key_usage", err)
			}
		case id := <-s.callers:
			t.Fatalf("server served %v", id)
		}
	})
}
