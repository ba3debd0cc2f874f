package main

// The end-to-end test: the real horizon binary, run as a subprocess, serves a
// ClusterSet file to grpc-go's own xDS client (proxyless), which sends RPCs to
// real gRPC servers on 127.0.0.x. Editing the file moves the traffic.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"text/template"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/xds"

	"github.com/horizonmesh/horizon/internal/testkit"
)

const (
	// e2eTarget is what a proxyless client dials; its listener is the
	// host:port.
	e2eTarget = "xds:///echo.demo.svc.clusterset.local:7070"
	// e2eBackendHeader carries the name of the cluster whose backend answered.
	e2eBackendHeader = "x-horizon-e2e-cluster"
	// e2eRPCs is how many RPCs each phase sends and counts.
	e2eRPCs = 100
	// e2eWait bounds every wait for an event (a process starting, a file edit
	// reaching the client). The test never asserts how fast things happen.
	e2eWait = 30 * time.Second
)

// e2eClusterSet fills testdata/e2e/clusterset.yaml.tmpl.
type e2eClusterSet struct {
	East1Port, East2Port, West1Port int
	East1Ready                      bool
}

// TestE2EProxylessFailover is the acceptance test of split-horizon EDS with a
// real client: RPCs go to the caller's own cluster first; once the file marks
// its endpoint not ready they move to the other cluster on the same network,
// and when it is ready again they come back. The cluster on the other network
// is reachable only through a gateway where nothing listens, and must never be
// called.
func TestE2EProxylessFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the horizon binary; skipped with -short")
	}
	// Registered first, so it runs last: after the client, the backends and
	// horizon are gone. grpc-go's xDS client and transports stop when the
	// channel closes; anything started before this test is ignored.
	leaks := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		if !t.Failed() {
			goleak.VerifyNone(t, leaks)
		}
	})

	east1 := startE2EBackend(t, "east-1", "127.0.0.2")
	east2 := startE2EBackend(t, "east-2", "127.0.0.3")
	west1 := startE2EBackend(t, "west-1", "127.0.0.4")
	backends := []*e2eBackend{east1, east2, west1}

	bin := buildHorizon(t)
	tmpl := template.Must(template.ParseFiles(filepath.Join("testdata", "e2e", "clusterset.yaml.tmpl")))
	file := filepath.Join(t.TempDir(), "clusterset.yaml")
	cs := e2eClusterSet{East1Port: east1.port, East2Port: east2.port, West1Port: west1.port, East1Ready: true}
	writeE2EClusterSet(t, tmpl, file, cs)

	h := startHorizon(t, bin, "--clusterset", file)

	c, nodeID := proxylessClient(t, bin, h, "--cluster", "east-1", "--region", "r1", "--zone", "z1")

	// Phase 1: everything goes to the client's own cluster (zone z1).
	c.waitFor(t, "east-1", "the first RPC through xDS")
	c.expectAll(t, "phase 1 (all ready)", "east-1", backends)
	checkSyncz(t, h, nodeID)

	// Phase 2: east-1's endpoint is not ready; east-2, on the same network,
	// takes over. west-1 (another region and network) stays unused.
	cs.East1Ready = false
	writeE2EClusterSet(t, tmpl, file, cs)
	c.waitFor(t, "east-2", "east-1 marked not ready")
	c.expectAll(t, "phase 2 (east-1 not ready)", "east-2", backends)

	// Phase 3: east-1 is ready again and gets the traffic back.
	cs.East1Ready = true
	writeE2EClusterSet(t, tmpl, file, cs)
	c.waitFor(t, "east-1", "east-1 ready again")
	c.expectAll(t, "phase 3 (east-1 ready again)", "east-1", backends)

	if n := west1.calls.Load(); n != 0 {
		t.Errorf("west-1's backend got %d RPCs in all; want 0: it is on another network, behind an unreachable gateway", n)
	}
}

// e2eBackend is a real gRPC server that counts the health checks it answers
// and names its cluster in a response header.
type e2eBackend struct {
	healthpb.UnimplementedHealthServer
	cluster string
	port    int
	calls   atomic.Int64
}

func (b *e2eBackend) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	b.calls.Add(1)
	if err := grpc.SetHeader(ctx, metadata.Pairs(e2eBackendHeader, b.cluster)); err != nil {
		return nil, err
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

// startE2EBackend serves a backend on ip and a random port until the test
// ends. It skips the test where ip cannot be bound (loopback addresses other
// than 127.0.0.1 exist on Linux, not on every system).
func startE2EBackend(t *testing.T, cluster, ip string) *e2eBackend {
	t.Helper()
	lis, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Skipf("cannot listen on %s (this test needs 127.0.0.2-127.0.0.4, which Linux routes to loopback): %v", ip, err)
	}
	b := &e2eBackend{cluster: cluster, port: lis.Addr().(*net.TCPAddr).Port}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, b)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil {
			t.Errorf("backend %s (%s): %v", cluster, lis.Addr(), err)
		}
	})
	return b
}

// buildHorizon builds the horizon binary of this package into a temporary
// directory, so that the test runs the real command, as a user would.
func buildHorizon(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "horizon")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// writeE2EClusterSet renders the ClusterSet and replaces the file with it
// atomically, so that horizon never reads a half-written file.
func writeE2EClusterSet(t *testing.T, tmpl *template.Template, path string, cs e2eClusterSet) {
	t.Helper()
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, cs); err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// horizonProcess is a running `horizon serve`.
type horizonProcess struct {
	xdsAddr, httpAddr string
	http              *http.Client
	out               *testkit.Buffer
	done              chan struct{} // closed when the process has exited
	err               error         // Wait's result, once done is closed
	cmd               *exec.Cmd
}

// stop stops the process with SIGTERM and waits for it to exit.
func (h *horizonProcess) stop(t *testing.T) {
	t.Helper()
	h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.done:
	case <-time.After(e2eWait):
		t.Fatalf("horizon serve did not stop within %v of SIGTERM", e2eWait)
	}
}

// startHorizon runs `horizon serve` with the given flags (plus free
// loopback addresses) and waits until it is ready.
func startHorizon(t *testing.T, bin string, flags ...string) *horizonProcess {
	t.Helper()
	// A port picked free may be taken by someone else before horizon binds
	// it; that is retried.
	for attempt := 1; ; attempt++ {
		h, err := tryStartHorizon(t, bin, flags)
		if err == nil {
			return h
		}
		if attempt == 3 || !strings.Contains(h.out.String(), "address already in use") {
			t.Fatalf("horizon serve: %v\n%s", err, h.out)
		}
		t.Logf("horizon serve, attempt %d: %v; retrying with other ports", attempt, err)
	}
}

func tryStartHorizon(t *testing.T, bin string, flags []string) (*horizonProcess, error) {
	h, err := launchHorizon(t, bin, flags...)
	if err != nil {
		return h, err
	}
	testkit.Eventually(t, e2eWait, "horizon serve ready (/readyz OK) or exited", func() error {
		select {
		case <-h.done:
			return nil // exited: the caller decides whether to try again
		default:
		}
		resp, err := h.http.Get("http://" + h.httpAddr + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		return errors.New(errOrStatus(resp, err))
	})
	select {
	case <-h.done:
		return h, fmt.Errorf("exited before it was ready: %v", h.err)
	default:
		return h, nil
	}
}

// launchHorizon starts `horizon serve` with the given flags (plus free
// loopback addresses) and does not wait for it to be ready. The process is
// stopped (SIGTERM) when the test ends; its output goes to the test log if
// the test failed.
func launchHorizon(t *testing.T, bin string, flags ...string) (*horizonProcess, error) {
	tr := &http.Transport{DisableKeepAlives: true}
	h := &horizonProcess{
		xdsAddr: freeLoopbackAddr(t), httpAddr: freeLoopbackAddr(t),
		http: &http.Client{Transport: tr, Timeout: 5 * time.Second},
		out:  &testkit.Buffer{}, done: make(chan struct{}),
	}
	cmd := exec.Command(bin, append([]string{"serve", "--xds-address", h.xdsAddr, "--http-address", h.httpAddr}, flags...)...)
	cmd.Stdout, cmd.Stderr = h.out, h.out
	h.cmd = cmd
	if err := cmd.Start(); err != nil {
		return h, err
	}
	go func() { h.err = cmd.Wait(); close(h.done) }()
	t.Cleanup(func() {
		select {
		case <-h.done:
		default:
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-h.done:
			case <-time.After(e2eWait):
				t.Errorf("horizon serve did not stop within %v of SIGTERM; killing it", e2eWait)
				cmd.Process.Kill()
				<-h.done
			}
		}
		tr.CloseIdleConnections()
		if t.Failed() {
			t.Logf("horizon serve --xds-address %s --http-address %s (exit: %v):\n%s", h.xdsAddr, h.httpAddr, h.err, h.out)
		}
	})
	return h, nil
}

func errOrStatus(resp *http.Response, err error) string {
	if err != nil {
		return err.Error()
	}
	return resp.Status
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	return lis.Addr().String()
}

func stderrOf(err error) []byte {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.Stderr
	}
	return nil
}

// e2eClient sends RPCs through the xDS channel.
type e2eClient struct {
	health healthpb.HealthClient
}

// call sends one RPC and returns the cluster whose backend answered.
func (c *e2eClient) call(timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var md metadata.MD
	if _, err := c.health.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&md)); err != nil {
		return "", err
	}
	v := md.Get(e2eBackendHeader)
	if len(v) != 1 {
		return "", fmt.Errorf("response header %s = %q, want one cluster name", e2eBackendHeader, v)
	}
	return v[0], nil
}

// waitFor sends RPCs until one is answered by cluster's backend: the sign
// that the client has applied the change described by why. Failed RPCs are
// tolerated while waiting (the channel may be switching); RPCs answered by
// other backends are expected until the change arrives.
func (c *e2eClient) waitFor(t *testing.T, cluster, why string) {
	t.Helper()
	var rpcs, failed int
	seen := map[string]int{}
	var lastErr error
	took := testkit.Eventually(t, e2eWait, why+": an RPC reaching "+cluster, func() error {
		rpcs++
		got, err := c.call(5 * time.Second)
		switch {
		case err != nil:
			failed++
			lastErr = err
		case got == cluster:
			return nil
		default:
			seen[got]++
		}
		return fmt.Errorf("%d RPCs, %d failed (last error: %v), answered by %v", rpcs, failed, lastErr, seen)
	})
	t.Logf("%s: an RPC reached %s after %d RPCs (%d failed) in %v; answered before by %v",
		why, cluster, rpcs, failed, took.Round(time.Millisecond), seen)
}

// expectAll sends e2eRPCs RPCs, each of which must succeed, and checks that
// the backend of cluster answered every one of them and the others none, as
// counted both by the backends and by the client.
func (c *e2eClient) expectAll(t *testing.T, phase, cluster string, backends []*e2eBackend) {
	t.Helper()
	before := make([]int64, len(backends))
	for i, b := range backends {
		before[i] = b.calls.Load()
	}
	answered := map[string]int{}
	for i := range e2eRPCs {
		got, err := c.call(10 * time.Second)
		if err != nil {
			t.Fatalf("%s: RPC %d of %d failed: %v", phase, i+1, e2eRPCs, err)
		}
		answered[got]++
	}
	for i, b := range backends {
		want := 0
		if b.cluster == cluster {
			want = e2eRPCs
		}
		if got := b.calls.Load() - before[i]; got != int64(want) {
			t.Errorf("%s: backend %s got %d RPCs, want %d", phase, b.cluster, got, want)
		}
		if got := answered[b.cluster]; got != want {
			t.Errorf("%s: the client saw %d answers from %s, want %d", phase, got, b.cluster, want)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// e2eProxyStatus is the part of /debug/syncz's entries (server.ProxyStatus) the
// test checks, decoded from the wire as any client of the page would.
type e2eProxyStatus struct {
	ID      string            `json:"id"`
	Role    string            `json:"role"`
	Cluster string            `json:"cluster"`
	Network string            `json:"network"`
	Sent    map[string]string `json:"sent"`
	Acked   map[string]string `json:"acked"`
	NACKs   int               `json:"nacks"`
}

// checkSyncz checks that /debug/syncz lists the client's stream as a
// proxyless node of east-1 on network east that has ACKed its listener.
func checkSyncz(t *testing.T, h *horizonProcess, nodeID string) {
	t.Helper()
	testkit.Eventually(t, e2eWait, "/debug/syncz listing node "+nodeID+" with an ACKed listener", func() error {
		resp, err := h.http.Get("http://" + h.httpAddr + "/debug/syncz")
		if err != nil {
			t.Fatalf("/debug/syncz: %v", err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("/debug/syncz: %s, %v\n%s", resp.Status, err, body)
		}
		var last []e2eProxyStatus
		if err := json.Unmarshal(body, &last); err != nil {
			t.Fatalf("/debug/syncz: %v\n%s", err, body)
		}
		for _, p := range last {
			if p.ID != nodeID {
				continue
			}
			if p.Role != "proxyless" || p.Cluster != "east-1" || p.Network != "east" || p.NACKs != 0 {
				t.Fatalf("/debug/syncz: node %q: role %q, cluster %q, network %q, %d NACKs; want proxyless, east-1, east, 0\n%s",
					p.ID, p.Role, p.Cluster, p.Network, p.NACKs, body)
			}
			// The ACK of the last listener response may still be on its way.
			if v := p.Acked["listener"]; v != "" && v == p.Sent["listener"] {
				return nil
			}
		}
		return fmt.Errorf("no such stream:\n%s", body)
	})
}

// proxylessClient is a grpc-go xDS client of e2eTarget with the bootstrap
// `horizon bootstrap --role proxyless <flags>` prints for h, and its node id.
func proxylessClient(t *testing.T, bin string, h *horizonProcess, flags ...string) (*e2eClient, string) {
	t.Helper()
	out, err := exec.Command(bin, append([]string{"bootstrap", "--role", "proxyless", "--xds-address", h.xdsAddr}, flags...)...).Output()
	if err != nil {
		t.Fatalf("horizon bootstrap: %v\n%s", err, stderrOf(err))
	}
	var boot struct {
		Node struct {
			ID string `json:"id"`
		} `json:"node"`
	}
	if err := json.Unmarshal(out, &boot); err != nil || boot.Node.ID == "" {
		t.Fatalf("horizon bootstrap printed no node id (%v):\n%s", err, out)
	}
	// grpc-go reads GRPC_XDS_BOOTSTRAP_CONFIG once, when its package is
	// initialised (internal/envconfig), so setting it from a test has no
	// effect. The bootstrap goes to grpc-go's own bootstrap parser instead,
	// through the resolver builder grpc-go provides for this.
	resolver, err := xds.NewXDSResolverWithConfigForTesting(out)
	if err != nil {
		t.Fatalf("grpc-go rejects horizon's bootstrap: %v\n%s", err, out)
	}
	conn, err := grpc.NewClient(e2eTarget, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(resolver))
	if err != nil {
		t.Fatalf("grpc.NewClient(%s): %v", e2eTarget, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &e2eClient{health: healthpb.NewHealthClient(conn)}, boot.Node.ID
}
