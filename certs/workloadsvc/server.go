// Package workloadsvc is the workload registration API
// (workloadpb.Workloads) on Horizon's mutual-TLS port: the agent of a
// workload outside Kubernetes joins its workload group with a join token
// Horizon issued for that group (token.go), or with a Kubernetes
// ServiceAccount token of the group's identity when the group names a
// tokenReviewCluster (satoken.go), gets the X509-SVID of the group's
// service account bound to the group's cluster, and then reports its
// probe's verdict with that SVID.
//
// Who may do what:
//   - Join: the token's group is the only group the caller may join (a
//     request naming another is refused); expired tokens, tokens of another
//     join key or trust domain are refused. A ServiceAccount token joins
//     only the group the request names, only if that group opts in, and
//     only if the token's account is the group's. The SVID is
//     spiffe://<td>/ns/<group ns>/sa/<group service account>.
//   - Report: the caller's verified certificate must be the group's
//     identity, bound to the group's cluster; a VM of one group cannot
//     report for another group with a different identity. (Two groups that
//     share a service account and cluster share an identity.)
//
// The registry (discovery/workload) holds the instances and their limits;
// refusals are counted by reason (horizon_workload_refusals_total) and
// logged at most once a minute per reason and peer host, and a refused
// client is told the reason with a fixed hint.
package workloadsvc

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/certs/certsvc"
	"github.com/horizonmesh/horizon/certs/workloadpb"
	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/workload"
	"github.com/horizonmesh/horizon/internal/grpcpeer"
	"github.com/horizonmesh/horizon/internal/ratelog"
)

// Reasons of the service itself (the registry adds its own: see
// discovery/workload).
const (
	ReasonPlaintext        = "plaintext"         // not a TLS connection
	ReasonNoToken          = "no_token"          // Join without a join token
	ReasonTokenMalformed   = "token_malformed"   // not a join token
	ReasonTokenForeign     = "token_foreign"     // signed by another key or for another trust domain
	ReasonTokenExpired     = "token_expired"     // past its expiry
	ReasonTokenGroup       = "token_group"       // the request names another group than the token
	ReasonNoCertificate    = "no_certificate"    // Report without a client certificate
	ReasonBadCertificate   = "bad_certificate"   // not a valid SVID of the trust domain
	ReasonIdentityMismatch = "identity_mismatch" // the SVID is not the group's identity
	ReasonBadRequest       = "bad_request"       // malformed CSR, ttl or group name
	ReasonNoCA             = "no_ca"             // no CA signs for the group's cluster
	ReasonIssue            = "issue"             // the CA refused
	ReasonReserved         = "reserved_identity" // the group's identity is one the API never issues (Config.Reserved)
	ReasonAddressClaim     = "address_claim"     // the address is not the one the agent connects from, nor in the group's addresses
)

// Registry is where instances are registered: *workload.Registry.
type Registry interface {
	// Join asks authorize (when not nil) before it changes anything.
	Join(group discovery.ServiceKey, address string, labels map[string]string, authorize func(discovery.WorkloadGroup) error) (discovery.WorkloadGroup, error)
	// Report asks authorize before it changes anything.
	Report(group discovery.ServiceKey, address string, healthy bool, authorize func(discovery.WorkloadGroup) error) (discovery.WorkloadGroup, error)
	ReportInterval() time.Duration
	// Group returns a group as the registry serves it now.
	Group(discovery.ServiceKey) (discovery.WorkloadGroup, bool)
}

// Config configures a Server.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	// Signer returns the CA that signs for a member cluster (as
	// certsvc.Config.Signer).
	Signer   func(cluster string) (*certs.CA, error)
	JoinKey  []byte
	Registry Registry
	// Reserved are SPIFFE IDs never issued to a workload, whatever group
	// names them: Horizon's own, the gateways'.
	Reserved []spiffeid.ID
	MaxTTL   time.Duration
	// Review asks a Kubernetes member cluster whose ServiceAccount token a
	// caller sent (certsvc's reviewer); nil: no ServiceAccount token joins.
	Review certsvc.Reviewer
	// ReviewsPerSecond and ReviewBurst bound the token reviews Horizon
	// asks members for (defaults DefaultReviewsPerSecond,
	// DefaultReviewBurst); more are refused as rate_limited.
	ReviewsPerSecond float64
	ReviewBurst      int
	// Refused counts a refusal by reason (the registry's metric).
	Refused func(reason string)
	Now     func() time.Time
	Log     *slog.Logger
}

// Server implements workloadpb.WorkloadsServer.
type Server struct {
	workloadpb.UnimplementedWorkloadsServer
	cfg     Config
	logs    *ratelog.Logger
	reviews *rate.Limiter
}

// New makes a Server.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.TrustDomain.IsZero():
		return nil, errors.New("workloadsvc: no trust domain")
	case cfg.Signer == nil || cfg.Registry == nil:
		return nil, errors.New("workloadsvc: no signer or registry")
	case len(cfg.JoinKey) < 32:
		return nil, errors.New("workloadsvc: join key shorter than 32 bytes")
	}
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = certs.DefaultSVIDTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Refused == nil {
		cfg.Refused = func(string) {}
	}
	if cfg.ReviewsPerSecond <= 0 {
		cfg.ReviewsPerSecond = DefaultReviewsPerSecond
	}
	if cfg.ReviewBurst <= 0 {
		cfg.ReviewBurst = DefaultReviewBurst
	}
	return &Server{cfg: cfg, logs: ratelog.NewWithClock(cfg.Log, time.Minute, cfg.Now), reviews: rate.NewLimiter(rate.Limit(cfg.ReviewsPerSecond), cfg.ReviewBurst)}, nil
}

// Register adds the service to a gRPC server, which must be a TLS one.
func (s *Server) Register(g *grpc.Server) { workloadpb.RegisterWorkloadsServer(g, s) }

// refusal is a refused call: its reason, code and the error behind it.
type refusal struct {
	reason  string
	code    codes.Code
	err     error
	counted bool   // by the registry already
	hint    string // when set, the client is told this instead of err
}

func refuse(reason string, code codes.Code, format string, a ...any) *refusal {
	return &refusal{reason: reason, code: code, err: fmt.Errorf(format, a...)}
}

// fail counts and logs a refusal and returns what the client is told.
func (s *Server) fail(ctx context.Context, call string, r *refusal) error {
	if !r.counted {
		s.cfg.Refused(r.reason)
	}
	from := grpcpeer.Addr(ctx)
	s.logs.Warn(r.reason+" "+grpcpeer.Host(from), "workload "+call+" refused", "reason", r.reason, "peer", from, "error", ratelog.Truncate(r.err.Error(), 1024))
	msg := r.reason
	if r.hint != "" {
		msg += ": " + r.hint
	} else if r.code != codes.Internal {
		// The registry's and the token's errors name only what the
		// caller sent and the group it asked for.
		msg += ": " + r.err.Error()
	}
	return status.Error(r.code, msg)
}

// registryRefusal turns a registry error into a refusal.
func registryRefusal(err error) *refusal {
	var rr interface{ RefusalReason() string }
	if errors.As(err, &rr) {
		code := codes.FailedPrecondition
		switch rr.RefusalReason() {
		case workload.ReasonRateLimited, workload.ReasonGroupFull, workload.ReasonRegistryFull:
			code = codes.ResourceExhausted
		case workload.ReasonUnknownGroup, workload.ReasonNotRegistered:
			code = codes.NotFound
		case workload.ReasonBadAddress, workload.ReasonTooManyLabels:
			code = codes.InvalidArgument
		case workload.ReasonAddressTaken:
			code = codes.AlreadyExists
		}
		return &refusal{reason: rr.RefusalReason(), code: code, err: err, counted: true}
	}
	return &refusal{reason: "error", code: codes.Internal, err: err}
}

// Join implements workloadpb.WorkloadsServer.
func (s *Server) Join(ctx context.Context, req *workloadpb.JoinRequest) (*workloadpb.JoinResponse, error) {
	resp, r := s.join(ctx, req)
	if r != nil {
		return nil, s.fail(ctx, "join", r)
	}
	return resp, nil
}

func (s *Server) join(ctx context.Context, req *workloadpb.JoinRequest) (*workloadpb.JoinResponse, *refusal) {
	if _, ok := grpcpeer.TLS(ctx); !ok {
		return nil, refuse(ReasonPlaintext, codes.Unauthenticated, "not a TLS connection")
	}
	// The request is checked before any credential: a ServiceAccount
	// token's review is a call to a member's API server.
	csr, err := x509.ParseCertificateRequest(req.GetCsr())
	if err != nil || csr.CheckSignature() != nil {
		return nil, refuse(ReasonBadRequest, codes.InvalidArgument, "malformed certificate request")
	}
	ttl := req.GetTtl().AsDuration()
	if ttl < 0 {
		return nil, refuse(ReasonBadRequest, codes.InvalidArgument, "negative ttl")
	}
	if ttl == 0 || ttl > s.cfg.MaxTTL {
		ttl = s.cfg.MaxTTL
	}
	// The caller proves it may join with the group's join token, a
	// ServiceAccount token of the group's identity (satoken.go), or its
	// current SVID, the group's identity (renewal, or a join again after
	// Horizon restarted).
	var key discovery.ServiceKey
	var authorize func(discovery.WorkloadGroup) error
	method := "svid"
	if token, ok := grpcpeer.BearerToken(ctx); ok && !IsJoinToken(token) {
		method = "service_account_token"
		var r *refusal
		if key, authorize, r = s.reviewed(ctx, req.GetGroup(), token); r != nil {
			return nil, r
		}
	} else if ok {
		method = "join_token"
		claims, err := VerifyToken(s.cfg.JoinKey, s.cfg.TrustDomain.Name(), token, s.cfg.Now())
		if err != nil {
			reason := ReasonTokenMalformed
			switch {
			case errors.Is(err, ErrTokenForeign):
				reason = ReasonTokenForeign
			case errors.Is(err, ErrTokenExpired):
				reason = ReasonTokenExpired
			}
			return nil, refuse(reason, codes.Unauthenticated, "%v", err)
		}
		if req.GetGroup() != "" && req.GetGroup() != claims.Group {
			return nil, refuse(ReasonTokenGroup, codes.PermissionDenied, "the token is for group %s, not %s", claims.Group, req.GetGroup())
		}
		if err := key.UnmarshalText([]byte(claims.Group)); err != nil {
			return nil, refuse(ReasonBadRequest, codes.InvalidArgument, "%v", err)
		}
	} else {
		if err := key.UnmarshalText([]byte(req.GetGroup())); err != nil {
			return nil, refuse(ReasonNoToken, codes.Unauthenticated, "send the group's join token (authorization: Bearer), or connect with the SVID of the group named")
		}
		check, r := s.identity(ctx, key)
		if r != nil {
			return nil, r
		}
		authorize = check
	}
	// Nothing is registered for a group whose identity is reserved.
	check := func(g discovery.WorkloadGroup) error {
		if id, err := spiffeid.FromSegments(s.cfg.TrustDomain, "ns", g.Namespace, "sa", g.ServiceAccount); err == nil && slices.Contains(s.cfg.Reserved, id) {
			return errReserved
		}
		if authorize != nil {
			if err := authorize(g); err != nil {
				return err
			}
		}
		return claimedAddress(ctx, g, req.GetAddress())
	}
	g, err := s.cfg.Registry.Join(key, req.GetAddress(), req.GetLabels(), check)
	if rr := (*refusal)(nil); errors.As(err, &rr) {
		return nil, rr
	}
	if errors.Is(err, errAddress) {
		return nil, refuse(ReasonAddressClaim, codes.PermissionDenied, "%v", err)
	}
	if errors.Is(err, errReserved) {
		return nil, refuse(ReasonReserved, codes.PermissionDenied, "group %s has an identity that is never issued to a workload", key)
	}
	if errors.Is(err, errIdentity) {
		return nil, refuse(ReasonIdentityMismatch, codes.PermissionDenied, "the client certificate is not the identity of group %s", key)
	}
	if err != nil {
		return nil, registryRefusal(err)
	}
	id, err := spiffeid.FromSegments(s.cfg.TrustDomain, "ns", g.Namespace, "sa", g.ServiceAccount)
	if err != nil {
		return nil, refuse(ReasonBadRequest, codes.Internal, "group %s: %v", key, err)
	}
	ca, err := s.cfg.Signer(g.Cluster)
	if err != nil {
		return nil, refuse(ReasonNoCA, codes.Unavailable, "no CA signs for cluster %q: %v", g.Cluster, err)
	}
	svid, err := ca.SignCSR(csr, id, ttl, certs.ForCluster(g.Cluster))
	if err != nil {
		return nil, refuse(ReasonIssue, codes.Internal, "%v", err)
	}
	s.cfg.Log.Info("workload joined; issued X509-SVID", "group", key.String(), "method", method, "address", req.GetAddress(), "id", id.String(),
		"cluster", g.Cluster, "peer", grpcpeer.Addr(ctx), "expires", svid.Leaf().NotAfter.UTC().Format(time.RFC3339))
	resp := &workloadpb.JoinResponse{SpiffeId: id.String(), Cluster: g.Cluster, Group: s.groupMessage(g)}
	for _, c := range svid.Certificates {
		resp.CertChain = append(resp.CertChain, c.Raw)
	}
	for _, c := range ca.Bundle().X509Authorities() {
		resp.Bundle = append(resp.Bundle, c.Raw)
	}
	return resp, nil
}

// Report implements workloadpb.WorkloadsServer.
func (s *Server) Report(ctx context.Context, req *workloadpb.ReportRequest) (*workloadpb.ReportResponse, error) {
	resp, r := s.report(ctx, req)
	if r != nil {
		return nil, s.fail(ctx, "report", r)
	}
	return resp, nil
}

func (s *Server) report(ctx context.Context, req *workloadpb.ReportRequest) (*workloadpb.ReportResponse, *refusal) {
	if _, ok := grpcpeer.TLS(ctx); !ok {
		return nil, refuse(ReasonPlaintext, codes.Unauthenticated, "not a TLS connection")
	}
	var key discovery.ServiceKey
	if err := key.UnmarshalText([]byte(req.GetGroup())); err != nil {
		return nil, refuse(ReasonBadRequest, codes.InvalidArgument, "%v", err)
	}
	check, r := s.identity(ctx, key)
	if r != nil {
		return nil, r
	}
	// The identity check comes before the registry changes anything, so
	// a caller of another identity changes nothing.
	g, err := s.cfg.Registry.Report(key, req.GetAddress(), req.GetHealthy(), func(g discovery.WorkloadGroup) error {
		if err := check(g); err != nil {
			return err
		}
		return claimedAddress(ctx, g, req.GetAddress())
	})
	if errors.Is(err, errAddress) {
		return nil, refuse(ReasonAddressClaim, codes.PermissionDenied, "%v", err)
	}
	if errors.Is(err, errIdentity) {
		return nil, refuse(ReasonIdentityMismatch, codes.PermissionDenied, "the client certificate is not the identity of group %s", key)
	}
	if err != nil {
		return nil, registryRefusal(err)
	}
	if !req.GetHealthy() && req.GetDetail() != "" {
		s.logs.Info("unhealthy "+key.String()+" "+req.GetAddress(), "workload probe failing", "group", key.String(), "address", req.GetAddress(), "detail", ratelog.Truncate(req.GetDetail(), 256))
	}
	return &workloadpb.ReportResponse{Group: s.groupMessage(g)}, nil
}

var (
	errIdentity = errors.New("identity mismatch")
	errReserved = errors.New("reserved identity")
	errAddress  = errors.New("address claim")
)

// claimedAddress checks the address an agent registers against its
// connection: an agent registers the address it connects from, or one in
// the group's Addresses (a VM behind NAT). Otherwise a holder of a group's
// token could register any address (another workload's, a service's
// ClusterSet IP) as an endpoint of the group.
func claimedAddress(ctx context.Context, g discovery.WorkloadGroup, address string) error {
	claim, err := netip.ParseAddr(address)
	if err != nil {
		return nil // the registry refuses it as bad_address
	}
	claim = claim.Unmap()
	for _, p := range g.Addresses {
		if p.Contains(claim) {
			return nil
		}
	}
	from := grpcpeer.Host(grpcpeer.Addr(ctx))
	if ip, err := netip.ParseAddr(from); err == nil && ip.Unmap() == claim {
		return nil
	}
	return fmt.Errorf("%w: the agent registers %s but connects from %s, and group %s lists no addresses prefix holding it (workloadGroups[].addresses, for VMs behind NAT)", errAddress, claim, from, g.Key())
}

// identity verifies the caller's client certificate and returns the check
// that it is the identity of a group: the group's service account, bound
// to the group's cluster.
func (s *Server) identity(ctx context.Context, key discovery.ServiceKey) (func(discovery.WorkloadGroup) error, *refusal) {
	info, _ := grpcpeer.TLS(ctx)
	chain := info.State.PeerCertificates
	if len(chain) == 0 {
		return nil, refuse(ReasonNoCertificate, codes.Unauthenticated, "connect with the SVID Join issued")
	}
	top, err := s.cfg.Signer("")
	if err != nil {
		return nil, refuse(ReasonNoCA, codes.Unavailable, "no CA: %v", err)
	}
	id, verified, err := certs.VerifyChain(chain, top.Bundle(), s.cfg.Now())
	if err != nil || id.TrustDomain() != s.cfg.TrustDomain {
		return nil, refuse(ReasonBadCertificate, codes.Unauthenticated, "client certificate is not a valid SVID of trust domain %s", s.cfg.TrustDomain)
	}
	cluster := certs.ClusterOf(verified)
	return func(g discovery.WorkloadGroup) error {
		want := "spiffe://" + s.cfg.TrustDomain.Name() + "/ns/" + g.Namespace + "/sa/" + g.ServiceAccount
		if id.String() != want || cluster != g.Cluster {
			return errIdentity
		}
		return nil
	}, nil
}

// groupMessage is what an agent is told of its group.
func (s *Server) groupMessage(g discovery.WorkloadGroup) *workloadpb.Group {
	m := &workloadpb.Group{
		Name:           g.Key().String(),
		ReportInterval: durationpb.New(s.cfg.Registry.ReportInterval()),
		GracePeriod:    durationpb.New(g.GracePeriod),
	}
	if p := g.Probe; p != nil {
		q := p.WithDefaults()
		m.Probe = &workloadpb.Probe{
			Type: string(q.Kind), Port: q.Port, Path: q.Path, Service: q.Service,
			InitialDelay: durationpb.New(q.InitialDelay), Interval: durationpb.New(q.Interval), Timeout: durationpb.New(q.Timeout),
			SuccessThreshold: int32(q.SuccessThreshold), FailureThreshold: int32(q.FailureThreshold),
		}
	}
	return m
}
