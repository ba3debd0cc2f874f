// Package certsvc is the certificate API (certpb.Certificates): a workload's
// agent sends a certificate request and gets an X509-SVID whose SPIFFE ID
// comes only from a verified credential, either a Kubernetes ServiceAccount
// token reviewed by the member cluster the caller names, or the caller's
// current X509-SVID (renewal).
//
// The service runs only on Horizon's mutual-TLS port: a token is a bearer
// credential and never crosses the network in the clear.
package certsvc

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/certs/certpb"
)

// Reasons a request is refused: the reason label of
// horizon_certs_api_refusals_total.
const (
	ReasonNoCredential   = "no_credential"   // neither a token nor a client certificate
	ReasonPlaintext      = "plaintext"       // not a TLS connection
	ReasonBadCertificate = "bad_certificate" // the client certificate is not a valid X509-SVID of the trust domain
	ReasonUnknownCluster = "unknown_cluster" // the token names no member cluster Horizon knows
	ReasonTokenRejected  = "token_rejected"  // the member does not authenticate the token
	ReasonTokenAudience  = "token_audience"  // the token is not for Horizon's audience
	ReasonNotSA          = "not_service_account"
	ReasonReviewFailed   = "review_failed" // the member could not be asked
	ReasonBadRequest     = "bad_request"   // malformed CSR or TTL
	ReasonIssue          = "issue"         // the CA refused (see horizon_certs_svid_refusals_total)
	ReasonNoCA           = "no_ca"         // no CA can sign for the cluster
)

// Denied is a Reviewer's refusal, with the reason to count it under.
type Denied struct {
	Reason string
	Err    error
}

func (d *Denied) Error() string { return d.Err.Error() }
func (d *Denied) Unwrap() error { return d.Err }

// A Reviewer asks the member cluster named cluster who a ServiceAccount
// token belongs to. It returns a *Denied to refuse with a reason; any other
// error counts as ReasonReviewFailed.
type Reviewer func(ctx context.Context, cluster, token string) (namespace, serviceAccount string, err error)

// Config configures a Server.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	// Signer returns the CA that signs for workloads of a member cluster
	// (cluster is "" when the caller renews and its cluster is unknown). Its
	// bundle is what callers are told to trust, and what a renewing caller's
	// certificate must verify against.
	Signer func(cluster string) (*certs.CA, error)
	// Review checks tokens; nil refuses token callers.
	Review Reviewer
	// MaxTTL caps the lifetime of an issued SVID (default
	// certs.DefaultSVIDTTL); a request for zero gets MaxTTL.
	MaxTTL  time.Duration
	Metrics *Metrics
	Now     func() time.Time
	Log     *slog.Logger
}

// Server implements certpb.CertificatesServer.
type Server struct {
	certpb.UnimplementedCertificatesServer
	cfg Config
}

// New makes a Server.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.TrustDomain.IsZero():
		return nil, errors.New("certsvc: no trust domain")
	case cfg.Signer == nil:
		return nil, errors.New("certsvc: no signer")
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
	return &Server{cfg: cfg}, nil
}

// Register adds the service to a gRPC server, which must be a TLS one.
func (s *Server) Register(g *grpc.Server) { certpb.RegisterCertificatesServer(g, s) }

// refusal is a refused request: its gRPC status and its metric reason.
type refusal struct {
	reason string
	code   codes.Code
	err    error
}

func (r *refusal) Error() string { return r.err.Error() }

func refuse(reason string, code codes.Code, format string, a ...any) *refusal {
	return &refusal{reason: reason, code: code, err: fmt.Errorf(format, a...)}
}

// Sign implements certpb.CertificatesServer.
func (s *Server) Sign(ctx context.Context, req *certpb.SignRequest) (*certpb.SignResponse, error) {
	resp, method, r := s.sign(ctx, req)
	if r != nil {
		s.cfg.Metrics.refused(r.reason)
		s.cfg.Log.Warn("certificate request refused", "reason", r.reason, "peer", peerAddr(ctx), "cluster", req.GetCluster(), "error", r.err)
		return nil, status.Error(r.code, r.err.Error())
	}
	s.cfg.Metrics.issued(method)
	s.cfg.Log.Info("issued X509-SVID", "id", resp.SpiffeId, "method", method, "cluster", req.GetCluster(), "peer", peerAddr(ctx))
	return resp, nil
}

// Methods a caller proves its identity with: the method label of
// horizon_certs_api_issued_total.
const (
	MethodToken   = "token"
	MethodRenewal = "renewal"
)

func (s *Server) sign(ctx context.Context, req *certpb.SignRequest) (*certpb.SignResponse, string, *refusal) {
	tlsInfo, ok := tlsPeer(ctx)
	if !ok {
		return nil, "", refuse(ReasonPlaintext, codes.Unauthenticated, "the certificate API is served over mutual TLS only")
	}
	csr, err := x509.ParseCertificateRequest(req.GetCsr())
	if err != nil {
		return nil, "", refuse(ReasonBadRequest, codes.InvalidArgument, "certificate request: %v", err)
	}
	ttl := req.GetTtl().AsDuration()
	if ttl < 0 {
		return nil, "", refuse(ReasonBadRequest, codes.InvalidArgument, "negative ttl %v", ttl)
	}
	if ttl == 0 || ttl > s.cfg.MaxTTL {
		ttl = s.cfg.MaxTTL
	}

	var (
		id      spiffeid.ID
		cluster string
		method  string
	)
	if token, ok := bearerToken(ctx); ok {
		// A token says who the caller is now, even if it also shows an
		// older certificate.
		method = MethodToken
		cluster = req.GetCluster()
		if id, err = s.reviewToken(ctx, cluster, token); err != nil {
			return nil, "", err.(*refusal)
		}
	} else if chain := tlsInfo.State.PeerCertificates; len(chain) > 0 {
		method = MethodRenewal
		cluster = clusterOf(chain)
		if id, err = s.verifyRenewal(cluster, chain); err != nil {
			return nil, "", err.(*refusal)
		}
	} else {
		return nil, "", refuse(ReasonNoCredential, codes.Unauthenticated,
			"no credential: send a ServiceAccount token (authorization: Bearer) and the member cluster, or connect with the current SVID")
	}

	ca, err := s.cfg.Signer(cluster)
	if err != nil {
		return nil, "", refuse(ReasonNoCA, codes.Unavailable, "no CA signs for cluster %q: %v", cluster, err)
	}
	svid, err := ca.SignCSR(csr, id, ttl)
	if err != nil {
		code := codes.Internal
		if r := certs.ReasonOf(err); r == certs.ReasonCSR || r == certs.ReasonKey {
			code = codes.InvalidArgument
		} else if r == certs.ReasonCAExpired {
			code = codes.Unavailable
		}
		return nil, "", refuse(ReasonIssue, code, "%v", err)
	}
	resp := &certpb.SignResponse{SpiffeId: id.String()}
	for _, c := range svid.Certificates {
		resp.CertChain = append(resp.CertChain, c.Raw)
	}
	for _, c := range ca.Bundle().X509Authorities() {
		resp.Bundle = append(resp.Bundle, c.Raw)
	}
	return resp, method, nil
}

func (s *Server) reviewToken(ctx context.Context, cluster, token string) (spiffeid.ID, error) {
	if s.cfg.Review == nil {
		return spiffeid.ID{}, refuse(ReasonNoCredential, codes.Unauthenticated, "token authentication is not enabled on this server (no member clusters)")
	}
	if cluster == "" {
		return spiffeid.ID{}, refuse(ReasonUnknownCluster, codes.InvalidArgument, "a token caller must name its member cluster")
	}
	ns, sa, err := s.cfg.Review(ctx, cluster, token)
	if err != nil {
		var d *Denied
		if errors.As(err, &d) {
			code := codes.Unauthenticated
			switch d.Reason {
			case ReasonReviewFailed:
				code = codes.Unavailable
			case ReasonUnknownCluster:
				code = codes.InvalidArgument
			}
			return spiffeid.ID{}, refuse(d.Reason, code, "cluster %s: %v", cluster, d.Err)
		}
		return spiffeid.ID{}, refuse(ReasonReviewFailed, codes.Unavailable, "cluster %s: token review: %v", cluster, err)
	}
	id, err := spiffeid.FromSegments(s.cfg.TrustDomain, "ns", ns, "sa", sa)
	if err != nil {
		return spiffeid.ID{}, refuse(ReasonNotSA, codes.PermissionDenied, "cluster %s: %s/%s is no SPIFFE ID: %v", cluster, ns, sa, err)
	}
	return id, nil
}

// verifyRenewal checks a renewing caller's certificate against the current
// bundle, not only the one the TLS handshake used, so that a certificate
// signed by a root already dropped from the bundle cannot renew itself.
func (s *Server) verifyRenewal(cluster string, chain []*x509.Certificate) (spiffeid.ID, error) {
	ca, err := s.cfg.Signer(cluster)
	if err != nil {
		return spiffeid.ID{}, refuse(ReasonNoCA, codes.Unavailable, "no CA for cluster %q: %v", cluster, err)
	}
	id, err := certs.Verify(chain, ca.Bundle(), s.cfg.Now())
	if err != nil {
		return spiffeid.ID{}, refuse(ReasonBadCertificate, codes.Unauthenticated, "client certificate: %v", err)
	}
	if id.TrustDomain() != s.cfg.TrustDomain {
		return spiffeid.ID{}, refuse(ReasonBadCertificate, codes.Unauthenticated, "client certificate %s is not in trust domain %s", id, s.cfg.TrustDomain)
	}
	return id, nil
}

// clusterOf is the member cluster of the intermediate that issued an SVID
// (certs.NewIntermediate names it in the subject's single OU), or "".
func clusterOf(chain []*x509.Certificate) string {
	if len(chain) < 2 || !chain[1].IsCA {
		return ""
	}
	if ou := chain[1].Subject.OrganizationalUnit; len(ou) == 1 {
		return ou[0]
	}
	return ""
}

func tlsPeer(ctx context.Context) (credentials.TLSInfo, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return credentials.TLSInfo{}, false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	return info, ok
}

func bearerToken(ctx context.Context) (string, bool) {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if tok, ok := strings.CutPrefix(v, "Bearer "); ok && strings.TrimSpace(tok) != "" {
			return strings.TrimSpace(tok), true
		}
	}
	return "", false
}

func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}
