package workload

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/horizonmesh/horizon/discovery"
)

// Check runs one probe against host (the agent's own workload, usually
// 127.0.0.1) within the probe's timeout: nil when healthy. A probe that
// hangs fails when the timeout passes.
func Check(ctx context.Context, p discovery.Probe, host string) error {
	p = p.WithDefaults()
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	addr := net.JoinHostPort(host, strconv.Itoa(int(p.Port)))
	switch p.Kind {
	case discovery.ProbeTCP:
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	case discovery.ProbeHTTP:
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+p.Path, nil)
		if err != nil {
			return err
		}
		req.Header.Set("User-Agent", "horizon-agent-probe")
		client := http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("GET %s: status %d", p.Path, resp.StatusCode)
		}
		return nil
	case discovery.ProbeGRPC:
		conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer conn.Close()
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: p.Service})
		if err != nil {
			return err
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("grpc health %q: %s", p.Service, resp.GetStatus())
		}
		return nil
	}
	return fmt.Errorf("unknown probe type %q", p.Kind)
}

// Verdict applies a probe's thresholds to its results: healthy after
// SuccessThreshold successes in a row, unhealthy after FailureThreshold
// failures in a row. It starts unhealthy (nothing is ready before a probe
// succeeded).
type Verdict struct {
	probe     discovery.Probe
	healthy   bool
	successes int
	failures  int
}

// NewVerdict starts the verdict of a probe.
func NewVerdict(p discovery.Probe) *Verdict { return &Verdict{probe: p.WithDefaults()} }

// Observe takes one probe result and returns the verdict and whether it
// changed.
func (v *Verdict) Observe(err error) (healthy, changed bool) {
	if err == nil {
		v.successes++
		v.failures = 0
		if !v.healthy && v.successes >= v.probe.SuccessThreshold {
			v.healthy = true
			return true, true
		}
	} else {
		v.failures++
		v.successes = 0
		if v.healthy && v.failures >= v.probe.FailureThreshold {
			v.healthy = false
			return false, true
		}
	}
	return v.healthy, false
}
