// Command app is the workload of Horizon's cross-network demo (make demo) and
// of its end-to-end test (cmd/horizon/crossnet_e2e_test.go): a proxyless gRPC
// echo server and client. Both take their configuration from Horizon through
// grpc-go's xDS support (GRPC_XDS_BOOTSTRAP, as `horizon bootstrap --role
// proxyless` writes it) and their certificates from the files `horizon agent`
// keeps current.
//
//	app server --cluster NAME --port PORT [--allow SPIFFE-ID,...]
//	app client [--target xds:///HOST:PORT] [--interval D] [--count N]
//	app client --stdin --cert-dir DIR
//	app witness [--outbound ADDR] [--inbound ADDR] [--listen NAME=ADDR ...]
//	app dial [--timeout D] ADDR
//
// The server answers gRPC health checks with two headers: the cluster it runs
// in and the SPIFFE ID of the caller's certificate. With --allow it refuses
// (PermissionDenied) callers whose SPIFFE ID is not listed, on top of the
// RBAC policy Horizon sends it. It prints "serving" once Horizon's listener
// for it has arrived.
//
// The client calls echo and prints which cluster answered. With --stdin it
// obeys one command per line instead, for tests:
//
//	call              one RPC: "ok CLUSTER PEER-SEEN-BY-SERVER SERVER-ID" or "err MESSAGE"
//	tcp ADDR          a TCP connection: "ok" or "err MESSAGE"
//	tls ADDR SNI      a mutual-TLS handshake with the SVID in --cert-dir, sending SNI:
//	                  "ok SERVER-ID" or "err MESSAGE"
//
// The witness stands where the sidecar would, on the capture ports
// (15001 outbound, 15006 inbound), to show what `horizon capture`
// redirects: it prints one line per accepted connection, with the
// connection's original destination (SO_ORIGINAL_DST), and closes it:
//
//	witness outbound orig=10.1.2.3:8080 local=127.0.0.1:15001 from=10.244.0.7:41234
//
// dial opens one TCP connection, prints "connected ADDR local=ADDR" and
// exits 0, or prints the error and exits 1: what a test runs inside a pod's
// container to make traffic of that container's user.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/inject/capture"
)

// Response headers of the echo server.
const (
	ClusterHeader = "x-horizon-demo-cluster"
	PeerHeader    = "x-horizon-demo-peer"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: app server|client|witness|dial [flags]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "server":
		err = server(ctx, os.Args[2:])
	case "client":
		err = client(ctx, os.Args[2:])
	case "witness":
		err = witness(ctx, os.Args[2:])
	case "dial":
		err = dial(ctx, os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q: want server, client, witness or dial", os.Args[1])
	}
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "app:", err)
		os.Exit(1)
	}
}

// dial opens one TCP connection to its argument.
func dial(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dial", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("dial: want one ADDR (host:port)")
	}
	d := net.Dialer{Timeout: *timeout}
	c, err := d.DialContext(ctx, "tcp", fs.Arg(0))
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Printf("connected %s local=%s\n", fs.Arg(0), c.LocalAddr())
	return nil
}

// witness runs capture.Witness on the capture ports and any --listen.
func witness(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("witness", flag.ContinueOnError)
	outbound := fs.String("outbound", ":15001", "address of the outbound capture port")
	inbound := fs.String("inbound", ":15006", "address of the inbound capture port")
	listeners := []capture.Listener{}
	fs.Func("listen", "NAME=ADDR: one more port to witness, its lines named NAME (repeatable)", func(v string) error {
		name, addr, ok := strings.Cut(v, "=")
		if !ok || name == "" || addr == "" {
			return fmt.Errorf("%q: want NAME=ADDR", v)
		}
		listeners = append(listeners, capture.Listener{Name: name, Address: addr})
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	listeners = append([]capture.Listener{{Name: "outbound", Address: *outbound}, {Name: "inbound", Address: *inbound}}, listeners...)
	return capture.Witness(ctx, os.Stdout, listeners, func(addrs []net.Addr) {
		fmt.Printf("witness listening %v\n", addrs)
	})
}

func server(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	cluster := fs.String("cluster", "", "the member cluster this server runs in (required)")
	port := fs.Int("port", 7070, "port to listen on, on every address (Horizon names its listener 0.0.0.0:PORT)")
	allow := fs.String("allow", "", "comma-separated SPIFFE IDs allowed to call (default: whoever Horizon's RBAC allows)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cluster == "" {
		return errors.New("server: --cluster is required")
	}
	var allowed []string
	if *allow != "" {
		allowed = strings.Split(*allow, ",")
	}
	creds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		return err
	}
	srv, err := xds.NewGRPCServer(grpc.Creds(creds), xds.ServingModeCallback(func(addr net.Addr, args xds.ServingModeChangeArgs) {
		if args.Mode == connectivity.ServingModeServing {
			fmt.Printf("serving %s\n", addr)
		} else {
			fmt.Printf("not-serving %s: %v\n", addr, args.Err)
		}
	}))
	if err != nil {
		return fmt.Errorf("xds server (is GRPC_XDS_BOOTSTRAP set?): %w", err)
	}
	healthpb.RegisterHealthServer(srv, &echo{cluster: *cluster, allowed: allowed})
	lis, err := net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", *port))
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		srv.Stop()
	}()
	if err := srv.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

// echo answers health checks, naming its cluster and its caller.
type echo struct {
	healthpb.UnimplementedHealthServer
	cluster string
	allowed []string
}

func (e *echo) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	id := "-"
	if p, ok := peer.FromContext(ctx); ok {
		if ids := peerIDs(p.AuthInfo); len(ids) == 1 {
			id = ids[0]
		}
	}
	if len(e.allowed) > 0 && !slices.Contains(e.allowed, id) {
		return nil, status.Errorf(codes.PermissionDenied, "%s: caller %s is not allowed", e.cluster, id)
	}
	if err := grpc.SetHeader(ctx, metadata.Pairs(ClusterHeader, e.cluster, PeerHeader, id)); err != nil {
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

func client(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	target := fs.String("target", "xds:///echo.demo.svc.clusterset.local:7070", "what to call")
	interval := fs.Duration("interval", time.Second, "time between calls")
	count := fs.Int("count", 0, "stop after this many calls (0: until interrupted)")
	stdin := fs.Bool("stdin", false, "obey commands read from standard input (for tests)")
	certDir := fs.String("cert-dir", "", "SVID files for the tls command")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if os.Getenv("GRPC_EXPERIMENTAL_XDS_SNI") != "true" {
		return errors.New("client: set GRPC_EXPERIMENTAL_XDS_SNI=true, or grpc-go sends no SNI and no gateway can route the call")
	}
	creds, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(*target, grpc.WithTransportCredentials(creds))
	if err != nil {
		return fmt.Errorf("xds client (is GRPC_XDS_BOOTSTRAP set?): %w", err)
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)

	if *stdin {
		return commands(ctx, health, *certDir)
	}
	last := ""
	for i := 0; *count == 0 || i < *count; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(*interval):
			}
		}
		cluster, peerID, serverID, err := call(ctx, health, 5*time.Second)
		now := time.Now().Format("15:04:05")
		switch {
		case err != nil:
			fmt.Printf("%s  error: %v\n", now, status.Convert(err).Message())
			last = ""
		default:
			note := ""
			if cluster != last && last != "" {
				note = "  <- changed"
			}
			fmt.Printf("%s  answered by %s (it saw the caller as %s; the client saw %s)%s\n", now, cluster, peerID, serverID, note)
			last = cluster
		}
	}
	return nil
}

// call sends one health check; it returns the cluster that answered, the
// caller's SPIFFE ID as the server saw it, and the server's as the client did.
func call(ctx context.Context, health healthpb.HealthClient, timeout time.Duration) (cluster, peerID, serverID string, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var md metadata.MD
	var p peer.Peer
	if _, err := health.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&md), grpc.Peer(&p)); err != nil {
		return "", "", "", err
	}
	serverID = "-"
	if ids := peerIDs(p.AuthInfo); len(ids) == 1 {
		serverID = ids[0]
	}
	return first(md.Get(ClusterHeader)), first(md.Get(PeerHeader)), serverID, nil
}

func first(v []string) string {
	if len(v) == 0 {
		return "-"
	}
	return v[0]
}

// commands runs the --stdin protocol until standard input ends.
func commands(ctx context.Context, health healthpb.HealthClient, certDir string) error {
	in := bufio.NewScanner(os.Stdin)
	fmt.Println("ready")
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		switch {
		case f[0] == "call" && len(f) == 1:
			cluster, peerID, serverID, err := call(ctx, health, 5*time.Second)
			if err != nil {
				fmt.Printf("err %s\n", oneLine(err))
				continue
			}
			fmt.Printf("ok %s %s %s\n", cluster, peerID, serverID)
		case f[0] == "tcp" && len(f) == 2:
			c, err := net.DialTimeout("tcp", f[1], 3*time.Second)
			if err != nil {
				fmt.Printf("err %s\n", oneLine(err))
				continue
			}
			c.Close()
			fmt.Println("ok")
		case f[0] == "tls" && len(f) == 3:
			id, err := handshake(f[1], f[2], certDir)
			if err != nil {
				fmt.Printf("err %s\n", oneLine(err))
				continue
			}
			fmt.Printf("ok %s\n", id)
		default:
			fmt.Printf("err unknown command %q\n", in.Text())
		}
	}
	return in.Err()
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", " ") }

// handshake opens a mutual-TLS connection to addr with the SVID in dir,
// sending sni, and returns the server's SPIFFE ID. The server's chain is
// checked against the bundle in dir; its name is not (SNI names a service,
// and the server proves its SPIFFE ID instead).
func handshake(addr, sni, dir string) (string, error) {
	svid, err := x509svid.Load(filepath.Join(dir, certs.SVIDFile), filepath.Join(dir, certs.SVIDKeyFile))
	if err != nil {
		return "", err
	}
	bundlePEM, err := os.ReadFile(filepath.Join(dir, certs.BundleFile))
	if err != nil {
		return "", err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(bundlePEM) {
		return "", fmt.Errorf("%s: no certificates", certs.BundleFile)
	}
	leaf := tls.Certificate{PrivateKey: svid.PrivateKey}
	for _, c := range svid.Certificates {
		leaf.Certificate = append(leaf.Certificate, c.Raw)
	}
	var serverID string
	cfg := &tls.Config{
		ServerName:         sni,
		Certificates:       []tls.Certificate{leaf},
		NextProtos:         []string{"h2"},
		InsecureSkipVerify: true, // verified below, by chain and SPIFFE ID
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			var chain []*x509.Certificate
			for _, r := range raw {
				c, err := x509.ParseCertificate(r)
				if err != nil {
					return err
				}
				chain = append(chain, c)
			}
			if len(chain) == 0 {
				return errors.New("no server certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range chain[1:] {
				inter.AddCert(c)
			}
			if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter}); err != nil {
				return err
			}
			id, err := x509svid.IDFromCert(chain[0])
			if err != nil {
				return err
			}
			serverID = id.String()
			return nil
		},
	}
	d := &net.Dialer{Timeout: 3 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return "", err
	}
	conn.Close()
	return serverID, nil
}
