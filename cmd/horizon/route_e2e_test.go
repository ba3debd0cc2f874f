package main

// The route end-to-end test: the real horizon binary serves a ClusterSet
// file and a policy file with route rules (testdata/route) to grpc-go's own
// xDS client (proxyless), which sends RPCs to real gRPC servers. A header
// picks a subset; without it, RPCs split 70/30 over two destinations.

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"testing"
	"text/template"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/horizonmesh/horizon/internal/testkit"
)

// routeRPCs is how many RPCs each phase of the route test counts.
const routeRPCs = 2000

// routeClusterSet fills testdata/route/clusterset.yaml.tmpl.
type routeClusterSet struct {
	V1Port, V2Port, East2Port int
}

// callWith sends one RPC carrying the given request headers and returns
// the name of the backend that answered.
func (c *e2eClient) callWith(timeout time.Duration, headers ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if len(headers) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, headers...)
	}
	var md metadata.MD
	if _, err := c.health.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&md)); err != nil {
		return "", err
	}
	v := md.Get(e2eBackendHeader)
	if len(v) != 1 {
		return "", fmt.Errorf("response header %s = %q, want one backend name", e2eBackendHeader, v)
	}
	return v[0], nil
}

// sleepyBackend is an e2eBackend that sleeps as long as the request's
// x-sleep header says before it answers.
type sleepyBackend struct{ *e2eBackend }

func (b sleepyBackend) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("x-sleep"); len(v) == 1 {
		d, err := time.ParseDuration(v[0])
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "x-sleep: %v", err)
		}
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	return b.e2eBackend.Check(ctx, req)
}

// startSleepyBackend serves a sleepyBackend on ip and a random port until
// the test ends, as startE2EBackend serves an e2eBackend.
func startSleepyBackend(t *testing.T, cluster, ip string) *e2eBackend {
	t.Helper()
	lis, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Skipf("cannot listen on %s (this test needs 127.0.0.2-127.0.0.5, which Linux routes to loopback): %v", ip, err)
	}
	b := &e2eBackend{cluster: cluster, port: lis.Addr().(*net.TCPAddr).Port}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, sleepyBackend{b})
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

// binomialBand returns the counts a Binomial(n, p) draw falls within with
// probability about 99.9 %: n·p ± 3.29·sqrt(n·p·(1-p)) (normal
// approximation, z = 3.29 for a two-sided 99.9 % interval).
func binomialBand(n int, p float64) (lo, hi int) {
	mean := float64(n) * p
	half := 3.29 * math.Sqrt(float64(n)*p*(1-p))
	return int(math.Floor(mean - half)), int(math.Ceil(mean + half))
}

// TestE2ERoutes is the acceptance test of route rules with a real client:
//
//   - an RPC under rule short-deadline fails with DeadlineExceeded when the
//     backend is slower than the rule's timeout, and the same slow RPC
//     succeeds under a rule without one;
//   - RPCs with x-user: tester all reach the v2 subset (rule "testers",
//     the first whose match holds);
//   - RPCs without it take rule "split": east-1's v1 endpoint and east-2
//     share them 70/30. grpc-go picks a weighted cluster at random for
//     each RPC, so each count is binomial; it must fall within the 99.9 %
//     band of Binomial(routeRPCs, 0.7). v2 gets none of them.
//
// Both run against real gRPC backends, counted by the backends and by the
// client's view of who answered.
func TestE2ERoutes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the horizon binary; skipped with -short")
	}
	leaks := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		if !t.Failed() {
			goleak.VerifyNone(t, leaks)
		}
	})
	v1 := startSleepyBackend(t, "east-1-v1", "127.0.0.2")
	v2 := startSleepyBackend(t, "east-1-v2", "127.0.0.3")
	east2 := startSleepyBackend(t, "east-2-v1", "127.0.0.5")
	backends := []*e2eBackend{v1, v2, east2}

	var buf bytes.Buffer
	tmpl := template.Must(template.ParseFiles(filepath.Join("testdata", "route", "clusterset.yaml.tmpl")))
	if err := tmpl.Execute(&buf, routeClusterSet{V1Port: v1.port, V2Port: v2.port, East2Port: east2.port}); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "clusterset.yaml")
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := buildHorizon(t)
	h := startHorizon(t, bin, "--clusterset", file, "--policy", filepath.Join("testdata", "route", "policy.yaml"))
	c, _ := proxylessClient(t, bin, h, "--cluster", "east-1", "--region", "us-east", "--zone", "us-east-1a")

	testkit.Eventually(t, e2eWait, "a first RPC through xDS", func() error {
		_, err := c.callWith(5*time.Second, "x-user", "tester")
		return err
	})

	count := func(phase string, headers ...string) map[string]int {
		t.Helper()
		before := make([]int64, len(backends))
		for i, b := range backends {
			before[i] = b.calls.Load()
		}
		answered := map[string]int{}
		for i := range routeRPCs {
			got, err := c.callWith(10*time.Second, headers...)
			if err != nil {
				t.Fatalf("%s: RPC %d of %d failed: %v", phase, i+1, routeRPCs, err)
			}
			answered[got]++
		}
		for i, b := range backends {
			if got := int(b.calls.Load() - before[i]); got != answered[b.cluster] {
				t.Errorf("%s: backend %s counted %d RPCs, the client saw %d answers from it", phase, b.cluster, got, answered[b.cluster])
			}
		}
		t.Logf("%s: %v", phase, answered)
		return answered
	}

	t.Log("header x-user: tester: rule testers, subset v2 only")
	if got := count("header", "x-user", "tester"); got[v2.cluster] != routeRPCs {
		t.Errorf("header: %v, want all %d at %s", got, routeRPCs, v2.cluster)
	}

	t.Log("a rule's timeout: grpc-go ends the RPC at the route's max_stream_duration")
	// The backend sleeps 2s when asked (x-sleep). Without a route timeout
	// the RPC waits and succeeds; under rule short-deadline (200ms) it
	// fails with DeadlineExceeded, though the caller allows 10s.
	if _, err := c.callWith(10*time.Second, "x-sleep", "2s"); err != nil {
		t.Errorf("a slow RPC without a route timeout: %v", err)
	}
	if _, err := c.callWith(10*time.Second, "x-sleep", "2s", "x-deadline", "short"); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("a slow RPC under rule short-deadline: %v, want DeadlineExceeded", err)
	}

	t.Log("another x-user, and no header: rule split, 70/30")
	for _, headers := range [][]string{{"x-user", "someone"}, nil} {
		got := count(fmt.Sprintf("split %q", headers), headers...)
		lo, hi := binomialBand(routeRPCs, 0.7)
		if n := got[v1.cluster]; n < lo || n > hi {
			t.Errorf("split %q: %s got %d of %d, outside the 99.9 %% band [%d, %d] of a 70 %% share", headers, v1.cluster, n, routeRPCs, lo, hi)
		}
		if got[v2.cluster] != 0 || got[v1.cluster]+got[east2.cluster] != routeRPCs {
			t.Errorf("split %q: %v, want only %s and %s", headers, got, v1.cluster, east2.cluster)
		}
	}
}
