package main

// Proxyless mutual TLS with real grpc-go xDS clients and an xDS-enabled
// server: horizon serves both; certificates come from grpc-go's file_watcher
// provider over the files `horizon agent` would write, as `horizon bootstrap`
// configures it.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"text/template"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/xds"

	"github.com/horizonmesh/horizon/internal/testkit/certtest"
)

// e2ePeerHeader carries the SPIFFE ID the server saw on the client's
// certificate.
const e2ePeerHeader = "x-horizon-e2e-peer"

// TestE2EProxylessMTLS: a grpc-go client in east-1 calls echo, served by an
// xDS-enabled grpc-go server in east-2, each with an SVID from its own
// cluster's intermediate under one root. Horizon's configuration makes the
// connection mutual TLS: the server sees the client's SPIFFE ID, the client
// checks the server's, and a client whose certificate comes from a foreign
// root is refused.
func TestE2EProxylessMTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the horizon binary; skipped with -short")
	}
	leaks := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		if !t.Failed() {
			goleak.VerifyNone(t, leaks)
		}
	})

	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	root := certtest.Root(t, td)
	east1CA, err := root.NewIntermediate("east-1")
	if err != nil {
		t.Fatal(err)
	}
	east2CA, err := root.NewIntermediate("east-2")
	if err != nil {
		t.Fatal(err)
	}
	// echo's endpoints run as demo/default (the file's default account).
	serverID, clientID := "spiffe://cluster.local/ns/demo/sa/default", "spiffe://cluster.local/ns/demo/sa/client"
	strangerID := "spiffe://cluster.local/ns/demo/sa/stranger"
	serverDir, clientDir, foreignDir := t.TempDir(), t.TempDir(), t.TempDir()
	issueFiles(t, east2CA, serverID, serverDir)
	issueFiles(t, east1CA, clientID, clientDir)
	// The foreign client trusts the mesh's root, so only its own
	// certificate, from another root of the same trust domain, is wrong.
	foreign := certtest.Root(t, td)
	issueFilesTrusting(t, foreign, root.Bundle(), strangerID, foreignDir)

	// The server is east-2's endpoint of echo; east-1's is not ready, so a
	// client in east-1 is sent to east-2, across intermediates.
	// It listens as servers do, on every address (its listener is named
	// after 0.0.0.0:port), and is reached at 127.0.0.3.
	tcp, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	lis := &countingListener{Listener: tcp}
	bin := buildHorizon(t)
	tmpl := template.Must(template.ParseFiles(filepath.Join("testdata", "e2e", "clusterset.yaml.tmpl")))
	file := filepath.Join(t.TempDir(), "clusterset.yaml")
	writeE2EClusterSet(t, tmpl, file, e2eClusterSet{East1Port: 1, East2Port: lis.Addr().(*net.TCPAddr).Port, West1Port: 1, East1Ready: false})
	h := startHorizon(t, bin, "--clusterset", file)

	backend := &mtlsBackend{}
	startMTLSServer(t, lis, backend, proxylessBootstrap(t, bin, h, "east-2", "z2", serverDir))

	// A mesh client: the RPC reaches the server over mutual TLS, both sides
	// see each other's SPIFFE IDs.
	client := dialMTLS(t, proxylessBootstrap(t, bin, h, "east-1", "z1", clientDir))
	c := &e2eClient{health: healthpb.NewHealthClient(client)}
	c.waitFor(t, "east-2", "the first RPC over mutual TLS")
	var md metadata.MD
	var p peer.Peer
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	if _, err := healthpb.NewHealthClient(client).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&md), grpc.Peer(&p)); err != nil {
		t.Fatalf("RPC over mutual TLS: %v", err)
	}
	if got := md.Get(e2ePeerHeader); len(got) != 1 || got[0] != clientID {
		t.Errorf("the server saw the client as %q, want %s", got, clientID)
	}
	if got := peerIDs(p.AuthInfo); len(got) != 1 || got[0] != serverID {
		t.Errorf("the client saw the server as %q (auth %T), want %s", got, p.AuthInfo, serverID)
	}

	// A client whose certificate comes from a foreign root: it reaches the
	// server, but its channel never becomes ready and no RPC of it gets
	// through. (Its RPCs fail over to west-1's gateway, where nothing
	// listens, so their errors do not name the TLS failure.)
	accepted := lis.accepted.Load()
	stranger := dialMTLS(t, proxylessBootstrap(t, bin, h, "east-1", "z1", foreignDir))
	waitTransientFailure(t, stranger, "a client with a certificate from a foreign root")
	if lis.accepted.Load() == accepted {
		t.Error("the foreign client's channel failed without connecting to the server")
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), e2eWait)
	defer cancel2()
	if _, err := healthpb.NewHealthClient(stranger).Check(ctx2, &healthpb.HealthCheckRequest{}); err == nil {
		t.Error("the foreign client's RPC succeeded")
	}
	if backend.saw(strangerID) {
		t.Errorf("the server handled an RPC from %s", strangerID)
	}
}

// countingListener counts the connections the server accepts.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// waitTransientFailure connects a channel and waits until it is in
// TRANSIENT_FAILURE; it must never become READY.
func waitTransientFailure(t *testing.T, conn *grpc.ClientConn, who string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	conn.Connect()
	for s := conn.GetState(); s != connectivity.TransientFailure; s = conn.GetState() {
		if s == connectivity.Ready {
			t.Fatalf("%s: the channel is ready", who)
		}
		if !conn.WaitForStateChange(ctx, s) {
			t.Fatalf("%s: the channel is still %v after %v", who, s, e2eWait)
		}
	}
}

// proxylessBootstrap runs `horizon bootstrap --role proxyless` for a node of
// cluster (region r1, zone) whose SVID files are in certDir.
func proxylessBootstrap(t *testing.T, bin string, h *horizonProcess, cluster, zone, certDir string) []byte {
	t.Helper()
	out, err := exec.Command(bin, "bootstrap", "--role", "proxyless", "--cluster", cluster, "--region", "r1", "--zone", zone,
		"--xds-address", h.xdsAddr, "--cert-dir", certDir, "--id", "proxyless~"+cluster+"~"+filepath.Base(certDir)).Output()
	if err != nil {
		t.Fatalf("horizon bootstrap: %v\n%s", err, stderrOf(err))
	}
	return out
}

// mtlsBackend answers health checks naming east-2 as its cluster and the
// client's SPIFFE ID as the server saw it, and remembers the IDs.
type mtlsBackend struct {
	healthpb.UnimplementedHealthServer
	seen sync.Map // SPIFFE ID -> true
}

func (b *mtlsBackend) saw(id string) bool {
	_, ok := b.seen.Load(id)
	return ok
}

func (b *mtlsBackend) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	p, _ := peer.FromContext(ctx)
	ids := peerIDs(p.AuthInfo)
	if len(ids) != 1 {
		return nil, fmt.Errorf("peer %T with SPIFFE IDs %q", p.AuthInfo, ids)
	}
	b.seen.Store(ids[0], true)
	if err := grpc.SetHeader(ctx, metadata.Pairs(e2eBackendHeader, "east-2", e2ePeerHeader, ids[0])); err != nil {
		return nil, err
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

// peerIDs lists the URI SANs of a TLS peer's leaf certificate.
func peerIDs(auth credentials.AuthInfo) []string {
	info, ok := auth.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return nil
	}
	var ids []string
	for _, u := range info.State.PeerCertificates[0].URIs {
		ids = append(ids, u.String())
	}
	return ids
}

// startMTLSServer serves mtlsBackend on lis as an xDS-enabled gRPC server
// with xDS credentials (plaintext only if Horizon sent no security
// configuration), and waits until it serves: until Horizon's listener for
// lis's address has arrived and been accepted.
func startMTLSServer(t *testing.T, lis net.Listener, backend *mtlsBackend, bootstrap []byte) {
	t.Helper()
	creds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		t.Fatal(err)
	}
	modes := make(chan xds.ServingModeChangeArgs, 16)
	srv, err := xds.NewGRPCServer(grpc.Creds(creds), xds.BootstrapContentsForTesting(bootstrap),
		xds.ServingModeCallback(func(_ net.Addr, args xds.ServingModeChangeArgs) {
			select {
			case modes <- args:
			default:
			}
		}))
	if err != nil {
		t.Fatalf("xds.NewGRPCServer: %v\n%s", err, bootstrap)
	}
	healthpb.RegisterHealthServer(srv, backend)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("xDS server on %s: %v", lis.Addr(), err)
		}
	})
	timeout := time.After(e2eWait)
	for {
		select {
		case m := <-modes:
			if m.Mode == connectivity.ServingModeServing {
				return
			}
			t.Logf("xDS server on %s: %v (%v)", lis.Addr(), m.Mode, m.Err)
		case <-timeout:
			t.Fatalf("the xDS server on %s is not serving after %v", lis.Addr(), e2eWait)
		}
	}
}

// dialMTLS opens a channel to echo through xDS with xDS credentials.
func dialMTLS(t *testing.T, bootstrap []byte) *grpc.ClientConn {
	t.Helper()
	resolver, err := xds.NewXDSResolverWithConfigForTesting(bootstrap)
	if err != nil {
		t.Fatalf("grpc-go rejects horizon's bootstrap: %v\n%s", err, bootstrap)
	}
	creds, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(e2eTarget, grpc.WithTransportCredentials(creds), grpc.WithResolvers(resolver))
	if err != nil {
		t.Fatalf("grpc.NewClient(%s): %v", e2eTarget, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
