package workload

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/horizonmesh/horizon/discovery"
)

func listen(t *testing.T) (net.Listener, uint32) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	return lis, uint32(lis.Addr().(*net.TCPAddr).Port)
}

// TestCheck runs each kind of probe against real servers: HTTP (2xx
// passes, 5xx fails, a server that hangs fails at the timeout), TCP
// (open, closed) and gRPC health (SERVING, NOT_SERVING).
func TestCheck(t *testing.T) {
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	lis, httpPort := listen(t)
	go http.Serve(lis, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
		case "/hang":
			select {
			case <-hang:
			case <-r.Context().Done():
			}
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	closed, closedPort := listen(t)
	closed.Close()
	glis, grpcPort := listen(t)
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("up", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("down", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	go gs.Serve(glis)
	t.Cleanup(gs.Stop)

	timeout := 200 * time.Millisecond
	for _, c := range []struct {
		name string
		p    discovery.Probe
		ok   bool
	}{
		{"http 200", discovery.Probe{Kind: discovery.ProbeHTTP, Port: httpPort, Path: "/ok"}, true},
		{"http 503", discovery.Probe{Kind: discovery.ProbeHTTP, Port: httpPort, Path: "/down"}, false},
		{"http hangs", discovery.Probe{Kind: discovery.ProbeHTTP, Port: httpPort, Path: "/hang", Timeout: timeout}, false},
		{"tcp open", discovery.Probe{Kind: discovery.ProbeTCP, Port: httpPort}, true},
		{"tcp closed", discovery.Probe{Kind: discovery.ProbeTCP, Port: closedPort}, false},
		{"grpc serving", discovery.Probe{Kind: discovery.ProbeGRPC, Port: grpcPort, Service: "up"}, true},
		{"grpc not serving", discovery.Probe{Kind: discovery.ProbeGRPC, Port: grpcPort, Service: "down"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := Check(context.Background(), c.p, "127.0.0.1")
			if (err == nil) != c.ok {
				t.Errorf("Check = %v, want ok=%t", err, c.ok)
			}
			if c.name == "http hangs" && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("a hanging probe failed with %v, want its timeout", err)
			}
		})
	}
}

// TestVerdict: thresholds of consecutive results move the verdict; it
// starts unhealthy.
func TestVerdict(t *testing.T) {
	v := NewVerdict(discovery.Probe{SuccessThreshold: 2, FailureThreshold: 3})
	fail := errors.New("fail")
	steps := []struct {
		err              error
		healthy, changed bool
	}{
		{nil, false, false}, {nil, true, true}, {fail, true, false}, {nil, true, false},
		{fail, true, false}, {fail, true, false}, {fail, false, true}, {nil, false, false}, {nil, true, true},
	}
	for i, s := range steps {
		h, c := v.Observe(s.err)
		if h != s.healthy || c != s.changed {
			t.Fatalf("step %d: healthy %t changed %t, want %t %t", i, h, c, s.healthy, s.changed)
		}
	}
}
