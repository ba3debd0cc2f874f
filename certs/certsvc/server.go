// Package certsvc is the certificate API (certpb.Certificates): a workload's
// agent sends a certificate request and gets an X509-SVID whose SPIFFE ID
// comes only from a verified credential, either a Kubernetes ServiceAccount
// token reviewed by the member cluster the caller names, or the caller's
// current X509-SVID (renewal).
//
// Every SVID it issues is bound to a member cluster (certs.ClusterOf reads
// it from the verified chain): the cluster whose member reviewed the token,
// or, on renewal, the cluster the caller's verified chain is bound to. A
// cluster's intermediate binds what it signs; the top CA, signing for a
// cluster without one, writes the cluster into the leaf (certs.ForCluster).
// Some IDs are never issued (Config.Reserved): Horizon's own, which agents
// and proxies check on the mutual-TLS port.
//
// A refused client is told a reason and a fixed hint, never the error
// behind it; the error goes to the log, at most once an interval per reason
// and peer host, and every refusal is counted by reason. Each SVID issued
// is logged: who got which ID, how, bound to which cluster, and which CA
// signed it.
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
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/certs/certpb"
	"github.com/horizonmesh/horizon/internal/grpcpeer"
	"github.com/horizonmesh/horizon/internal/ratelog"
)

// Reasons a request is refused: the reason label of
// horizon_certs_api_refusals_total, and the first word a refused client is
// told.
const (
	ReasonNoCredential   = "no_credential"   // neither a token nor a client certificate
	ReasonPlaintext      = "plaintext"       // not a TLS connection
	ReasonBadCertificate = "bad_certificate" // the client certificate is not a valid X509-SVID of the trust domain
	ReasonUnknownCluster = "unknown_cluster" // the token names no member cluster Horizon knows
	ReasonTokenRejected  = "token_rejected"  // the member does not authenticate the token
	ReasonTokenAudience  = "token_audience"  // the token is not for Horizon's audience
	ReasonNotSA          = "not_service_account"
	ReasonReviewFailed   = "review_failed"     // the member could not be asked
	ReasonBadRequest     = "bad_request"       // malformed CSR or TTL
	ReasonIssue          = "issue"             // the CA refused (see horizon_certs_svid_refusals_total)
	ReasonNoCA           = "no_ca"             // no CA can sign for the cluster
	ReasonReserved       = "reserved_identity" // the credential names an ID the API never issues (Config.Reserved)
)

// hints are what a refused client is told after the reason: fixed text, so
// that nothing of the error behind a refusal (a member's or API server's
// words, CA subjects, file names) reaches a client. The error goes to the
// log.
var hints = map[string]string{
	ReasonNoCredential:   "send a ServiceAccount token (authorization: Bearer) naming its member cluster, or connect with your current SVID",
	ReasonPlaintext:      "the certificate API is served over mutual TLS only",
	ReasonBadCertificate: "the client certificate is not a valid X509-SVID of this trust domain",
	ReasonUnknownCluster: "name the member cluster the token is from, one Horizon knows",
	ReasonTokenRejected:  "the member cluster does not accept the token",
	ReasonTokenAudience:  "the token is not for Horizon's audience",
	ReasonNotSA:          "the token is not a ServiceAccount's",
	ReasonReviewFailed:   "the member cluster could not review the token; try again later",
	ReasonBadRequest:     "malformed certificate request or ttl",
	ReasonIssue:          "the CA refused to sign the certificate request",
	ReasonNoCA:           "no CA signs for the cluster now; try again later",
	ReasonReserved:       "the identity is Horizon's own and never issued",
}

// Denied is a Reviewer's refusal, with the reason to count it under.
type Denied struct {
	Reason string
	Err    error
}

func (d *Denied) Error() string { return d.Err.Error() }
func (d *Denied) Unwrap() error { return d.Err }

// A Reviewer asks the member cluster named cluster who a ServiceAccount
// token belongs to. It returns a *Denied to refuse with a reason; any other
// error counts as ReasonReviewFailed. Its errors go to Horizon's log only.
type Reviewer func(ctx context.Context, cluster, token string) (namespace, serviceAccount string, err error)

// Config configures a Server.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	// Signer returns the CA that signs for workloads of a member cluster,
	// and for workloads bound to none when cluster is "". Every CA it
	// returns must share the roots of Signer("")'s bundle: that bundle is
	// what callers are told to trust, and what a renewing caller's
	// certificate must verify against, whatever its cluster.
	Signer func(cluster string) (*certs.CA, error)
	// Review checks tokens; nil refuses token callers.
	Review Reviewer
	// Reserved are SPIFFE IDs the API never issues, whatever credential
	// names them (a member cluster's token for that ServiceAccount, or a
	// certificate for it): Horizon's own identity, which agents and proxies
	// check on the mutual-TLS port. Horizon's own SVID comes from the CA
	// directly (Self).
	Reserved []spiffeid.ID
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
	cfg      Config
	refusals *ratelog.Logger // refusals, once per reason and peer host an interval
}

// refusalLogEvery is how often at most a refusal for one reason to one peer
// host is logged. Every refusal is counted.
const refusalLogEvery = time.Minute

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
	cfg.Reserved = slices.Clone(cfg.Reserved)
	return &Server{cfg: cfg, refusals: ratelog.NewWithClock(cfg.Log, refusalLogEvery, cfg.Now)}, nil
}

// Register adds the service to a gRPC server, which must be a TLS one.
func (s *Server) Register(g *grpc.Server) { certpb.RegisterCertificatesServer(g, s) }

// refusal is a refused request: its metric reason, its gRPC code, and the
// error behind it, for the log only.
type refusal struct {
	reason string
	code   codes.Code
	err    error
}

func refuse(reason string, code codes.Code, format string, a ...any) *refusal {
	return &refusal{reason: reason, code: code, err: fmt.Errorf(format, a...)}
}

// status is what the client is told: the reason and its fixed hint.
func (r *refusal) status() error { return status.Error(r.code, r.reason+": "+hints[r.reason]) }

// Log attributes a client chooses are cut to these lengths.
const (
	maxLoggedCluster = 64
	maxLoggedError   = 1024
)

// Sign implements certpb.CertificatesServer.
func (s *Server) Sign(ctx context.Context, req *certpb.SignRequest) (*certpb.SignResponse, error) {
	from := grpcpeer.Addr(ctx)
	is, r := s.sign(ctx, req)
	if r != nil {
		s.cfg.Metrics.refused(r.reason)
		s.refusals.Warn(r.reason+" "+grpcpeer.Host(from), "certificate request refused",
			"reason", r.reason, "peer", from, "cluster", ratelog.Truncate(req.GetCluster(), maxLoggedCluster),
			"error", ratelog.Truncate(r.err.Error(), maxLoggedError))
		return nil, r.status()
	}
	s.cfg.Metrics.issued(is.method)
	// The audit record: one line per SVID issued (every one follows a
	// verified credential, so a client cannot make them without one).
	signer, leaf := is.ca.Certificate(), is.svid.Leaf()
	signerCluster := is.ca.BoundCluster()
	if signerCluster == "" {
		signerCluster = "top"
	}
	s.cfg.Log.Info("issued X509-SVID", "id", is.svid.ID.String(), "method", is.method, "cluster", is.cluster, "peer", from,
		"signer_cluster", signerCluster, "signer", signer.Subject.CommonName, "signer_fingerprint", certs.Fingerprint(signer),
		"serial", leaf.SerialNumber.Text(16), "expires", leaf.NotAfter.UTC().Format(time.RFC3339))
	resp := &certpb.SignResponse{SpiffeId: is.svid.ID.String()}
	for _, c := range is.svid.Certificates {
		resp.CertChain = append(resp.CertChain, c.Raw)
	}
	for _, c := range is.ca.Bundle().X509Authorities() {
		resp.Bundle = append(resp.Bundle, c.Raw)
	}
	return resp, nil
}

// Methods a caller proves its identity with: the method label of
// horizon_certs_api_issued_total.
const (
	MethodToken   = "token"
	MethodRenewal = "renewal"
)

// issuance is an SVID issued: how the caller proved who it is, the member
// cluster the SVID is bound to, and the CA that signed it.
type issuance struct {
	method  string
	cluster string
	ca      *certs.CA
	svid    *certs.SVID
}

func (s *Server) sign(ctx context.Context, req *certpb.SignRequest) (issuance, *refusal) {
	tlsInfo, ok := grpcpeer.TLS(ctx)
	if !ok {
		return issuance{}, refuse(ReasonPlaintext, codes.Unauthenticated, "not a TLS connection")
	}
	csr, err := x509.ParseCertificateRequest(req.GetCsr())
	if err != nil {
		return issuance{}, refuse(ReasonBadRequest, codes.InvalidArgument, "certificate request: %v", err)
	}
	ttl := req.GetTtl().AsDuration()
	if ttl < 0 {
		return issuance{}, refuse(ReasonBadRequest, codes.InvalidArgument, "negative ttl %v", ttl)
	}
	if ttl == 0 || ttl > s.cfg.MaxTTL {
		ttl = s.cfg.MaxTTL
	}

	var (
		id spiffeid.ID
		is issuance
		r  *refusal
	)
	if token, ok := grpcpeer.BearerToken(ctx); ok {
		// A token says who the caller is now, even if it also shows an
		// older certificate. The SVID is bound to the cluster that
		// reviewed it.
		is.method, is.cluster = MethodToken, req.GetCluster()
		id, r = s.reviewToken(ctx, is.cluster, token)
	} else if chain := tlsInfo.State.PeerCertificates; len(chain) > 0 {
		// A renewed SVID keeps the cluster its verified chain is bound to.
		is.method = MethodRenewal
		id, is.cluster, r = s.verifyRenewal(chain)
	} else {
		r = refuse(ReasonNoCredential, codes.Unauthenticated, "neither a token nor a client certificate")
	}
	if r != nil {
		return issuance{}, r
	}
	if slices.Contains(s.cfg.Reserved, id) {
		return issuance{}, refuse(ReasonReserved, codes.PermissionDenied, "%s (%s, cluster %q) is reserved", id, is.method, is.cluster)
	}

	if is.ca, err = s.cfg.Signer(is.cluster); err != nil {
		return issuance{}, refuse(ReasonNoCA, codes.Unavailable, "no CA signs for cluster %q: %v", is.cluster, err)
	}
	if is.svid, err = is.ca.SignCSR(csr, id, ttl, certs.ForCluster(is.cluster)); err != nil {
		code, reason := codes.Internal, ReasonIssue
		switch certs.ReasonOf(err) {
		case certs.ReasonCSR, certs.ReasonKey:
			code = codes.InvalidArgument
		case certs.ReasonCAExpired:
			code = codes.Unavailable
		case certs.ReasonCluster:
			code, reason = codes.Unavailable, ReasonNoCA
		}
		return issuance{}, refuse(reason, code, "%v", err)
	}
	return is, nil
}

func (s *Server) reviewToken(ctx context.Context, cluster, token string) (spiffeid.ID, *refusal) {
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

// verifyRenewal checks a renewing caller's certificate and returns its ID
// and the member cluster its verified chain is bound to (certs.ClusterOf):
// the presented chain may carry any certificate after the leaf, so only
// the chain that verified is read. It verifies against the current bundle
// of Signer(""), not only the one the TLS handshake used, so that a
// certificate signed by a root already dropped from the bundle cannot
// renew itself; every cluster's CA chains to those roots.
func (s *Server) verifyRenewal(chain []*x509.Certificate) (spiffeid.ID, string, *refusal) {
	top, err := s.cfg.Signer("")
	if err != nil {
		return spiffeid.ID{}, "", refuse(ReasonNoCA, codes.Unavailable, "no CA to verify a renewal with: %v", err)
	}
	id, verified, err := certs.VerifyChain(chain, top.Bundle(), s.cfg.Now())
	if err != nil {
		return spiffeid.ID{}, "", refuse(ReasonBadCertificate, codes.Unauthenticated, "client certificate: %v", err)
	}
	if id.TrustDomain() != s.cfg.TrustDomain {
		return spiffeid.ID{}, "", refuse(ReasonBadCertificate, codes.Unauthenticated, "client certificate %s is not in trust domain %s", id, s.cfg.TrustDomain)
	}
	return id, certs.ClusterOf(verified), nil
}
