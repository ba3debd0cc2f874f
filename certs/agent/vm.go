package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/horizonmesh/horizon/certs/certpb"
	"github.com/horizonmesh/horizon/certs/workloadpb"
	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/workload"
)

// VMConfig configures the agent of a workload outside Kubernetes: it joins
// a workload group, keeps the group's SVID current, runs the group's probe
// against its own workload and reports the verdict.
type VMConfig struct {
	// Config is the SVID part (Address, TrustDomain, ServerID, Bundle,
	// Dir, TTL, Dial, Log, Metrics); its TokenFile, Cluster and Join are
	// not used.
	Config
	// JoinTokenFile holds the join token Horizon issued for the group
	// (`horizon workload token`), or a Kubernetes ServiceAccount token of
	// the group's identity for a group with a tokenReviewCluster; it is
	// read afresh for each join.
	JoinTokenFile string
	// Group is the workload group, namespace/name.
	Group string
	// Address is the instance's IP address as the mesh reaches it.
	Address string
	Labels  map[string]string
	// ProbeHost is where the probe reaches the workload (default
	// 127.0.0.1).
	ProbeHost string
}

// VM is a running workload agent.
type VM struct {
	cfg   VMConfig
	agent *Agent

	mu    sync.Mutex
	group *workloadpb.Group // as Horizon last described it
}

// NewVM checks cfg and makes a VM agent.
func NewVM(cfg VMConfig) (*VM, error) {
	switch {
	case cfg.JoinTokenFile == "":
		return nil, errors.New("agent: a workload needs a join token file")
	case cfg.Group == "" || cfg.Address == "":
		return nil, errors.New("agent: a workload needs its group and address")
	}
	if cfg.ProbeHost == "" {
		cfg.ProbeHost = "127.0.0.1"
	}
	v := &VM{cfg: cfg}
	c := cfg.Config
	c.TokenFile, c.Cluster = "", ""
	c.Join = v.join
	a, err := New(c)
	if err != nil {
		return nil, err
	}
	v.agent = a
	return v, nil
}

// Agent is the SVID part: an x509svid.Source and x509bundle.Source.
func (v *VM) Agent() *Agent { return v.agent }

// join asks Horizon to register the instance and issue its SVID: with the
// current SVID when there is one (renewal, or a Horizon that restarted and
// forgot the instance), else (or if Horizon refuses it) with the token in
// the token file, read afresh for each join: a join token, or a Kubernetes
// ServiceAccount token that is rotated in place (a projected token). A
// token that expired since the first join does not stop a renewal.
func (v *VM) join(ctx context.Context, sign *certpb.SignRequest) (*certpb.SignResponse, error) {
	req := &workloadpb.JoinRequest{Csr: sign.GetCsr(), Ttl: sign.GetTtl(), Group: v.cfg.Group, Address: v.cfg.Address, Labels: v.cfg.Labels}
	var resp *workloadpb.JoinResponse
	joinCall := func(ctx context.Context, c workloadpb.WorkloadsClient) error {
		var err error
		resp, err = c.Join(ctx, req)
		return err
	}
	var errs []error
	if v.agent.current() != nil {
		err := v.call(ctx, true, "", joinCall)
		if err == nil {
			v.setGroup(resp.GetGroup())
			return &certpb.SignResponse{SpiffeId: resp.GetSpiffeId(), CertChain: resp.GetCertChain(), Bundle: resp.GetBundle()}, nil
		}
		errs = append(errs, fmt.Errorf("with the current SVID: %w", err))
	}
	token, err := os.ReadFile(v.cfg.JoinTokenFile)
	if err != nil {
		return nil, errors.Join(append(errs, fmt.Errorf("join token: %w", err))...)
	}
	if err := v.call(ctx, false, strings.TrimSpace(string(token)), joinCall); err != nil {
		return nil, errors.Join(append(errs, fmt.Errorf("with the token from %s: %w", v.cfg.JoinTokenFile, err))...)
	}
	v.setGroup(resp.GetGroup())
	return &certpb.SignResponse{SpiffeId: resp.GetSpiffeId(), CertChain: resp.GetCertChain(), Bundle: resp.GetBundle()}, nil
}

// call makes one call on a fresh connection, with the current SVID
// (withSVID) and/or a token.
func (v *VM) call(ctx context.Context, withSVID bool, token string, f func(context.Context, workloadpb.WorkloadsClient) error) error {
	a := v.agent
	a.mu.Lock()
	bundle := a.bundle
	a.mu.Unlock()
	conf := a.clientTLS(nil, bundle)
	if withSVID {
		conf.GetClientCertificate = tlsconfig.GetClientCertificate(a)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(conf))}
	if a.cfg.Dial != nil {
		opts = append(opts, a.cfg.Dial)
	} else if ip, err := netip.ParseAddr(v.cfg.Address); err == nil && ip.Unmap().IsLoopback() {
		// Horizon checks the address an agent registers against the one
		// it connects from (workloadsvc). A VM's own address is the
		// source its kernel picks towards Horizon on a single-homed VM;
		// a loopback one is not (127.0.0.1 is), so connect from it.
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip.Unmap().AsSlice()}}
		opts = append(opts, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", addr)
		}))
	}
	target := a.cfg.Address
	if target == "" {
		target = "passthrough:///horizon"
	}
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		return err
	}
	defer conn.Close()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return f(ctx, workloadpb.NewWorkloadsClient(conn))
}

func (v *VM) setGroup(g *workloadpb.Group) {
	if g == nil {
		return
	}
	v.mu.Lock()
	v.group = g
	v.mu.Unlock()
}

// Group is the group as Horizon last described it (nil before the join).
func (v *VM) Group() *workloadpb.Group {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.group
}

// probe is the group's probe in the model's terms, nil without one.
func probeOf(g *workloadpb.Group) *discovery.Probe {
	p := g.GetProbe()
	if p == nil {
		return nil
	}
	return &discovery.Probe{
		Kind: discovery.ProbeKind(p.GetType()), Port: p.GetPort(), Path: p.GetPath(), Service: p.GetService(),
		InitialDelay: p.GetInitialDelay().AsDuration(), Interval: p.GetInterval().AsDuration(), Timeout: p.GetTimeout().AsDuration(),
		SuccessThreshold: int(p.GetSuccessThreshold()), FailureThreshold: int(p.GetFailureThreshold()),
	}
}

// Run joins, then keeps the SVID current and reports the probe's verdict
// until ctx ends: at once when it changes, else every report interval. A
// report Horizon answers with not_registered (it restarted, or the
// instance was removed) makes the agent join again.
func (v *VM) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- v.agent.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// Wait for the first join (an SVID picked up from Dir is renewed by
	// a join at once: the group is only known from a join).
	if v.Group() == nil && !v.agent.RenewAt().IsZero() {
		if err := v.rejoin(ctx); err != nil {
			v.agent.cfg.Log.Warn("join failed; retrying", "error", err)
		}
	}
	for v.Group() == nil {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-v.agent.Updated():
		case <-v.agent.cfg.Clock.After(time.Second):
		}
	}

	g := v.Group()
	var verdict *workload.Verdict
	probe := probeOf(g)
	if probe != nil {
		verdict = workload.NewVerdict(*probe)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-v.agent.cfg.Clock.After(probe.InitialDelay):
		}
	}
	healthy, detail := probe == nil, ""
	lastReport := time.Time{}
	for {
		changed := false
		if probe != nil {
			err := workload.Check(ctx, *probe, v.cfg.ProbeHost)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			healthy, changed = verdict.Observe(err)
			detail = ""
			if err != nil {
				detail = err.Error()
			}
			if changed {
				v.agent.cfg.Log.Info("workload probe verdict changed", "healthy", healthy, "detail", detail)
			}
		}
		interval := g.GetReportInterval().AsDuration()
		if changed || lastReport.IsZero() || v.agent.cfg.Clock.Now().Sub(lastReport) >= interval {
			if resp, err := v.report(ctx, healthy, detail); err != nil {
				v.agent.cfg.Log.Warn("health report failed", "error", err)
				if status.Code(err) == codes.NotFound {
					if err := v.rejoin(ctx); err != nil {
						v.agent.cfg.Log.Warn("join again failed", "error", err)
					}
				}
			} else {
				lastReport = v.agent.cfg.Clock.Now()
				if ng := resp.GetGroup(); ng != nil {
					v.setGroup(ng)
					g = ng
					if np := probeOf(ng); (np == nil) != (probe == nil) || (np != nil && *np != *probe) {
						probe = np
						if probe != nil {
							verdict = workload.NewVerdict(*probe)
						}
					}
				}
			}
		}
		wait := interval
		if probe != nil {
			wait = min(probe.WithDefaults().Interval, interval)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-v.agent.cfg.Clock.After(max(wait, 10*time.Millisecond)):
		}
	}
}

// rejoin registers the instance again, with the current SVID or the token.
func (v *VM) rejoin(ctx context.Context) error {
	return v.agent.Renew(ctx)
}

// report sends one health report with the current SVID.
func (v *VM) report(ctx context.Context, healthy bool, detail string) (*workloadpb.ReportResponse, error) {
	var resp *workloadpb.ReportResponse
	err := v.call(ctx, true, "", func(ctx context.Context, c workloadpb.WorkloadsClient) error {
		var err error
		resp, err = c.Report(ctx, &workloadpb.ReportRequest{Group: v.cfg.Group, Address: v.cfg.Address, Healthy: healthy, Detail: detail})
		return err
	})
	return resp, err
}
