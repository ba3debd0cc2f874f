// Package agent keeps a workload's X509-SVID current: it makes the private
// key locally, obtains the SVID from Horizon's certificate API (certsvc),
// renews it at about half its lifetime with jitter, keeps the trust bundle
// current, and writes both where Envoy's file-based secrets and grpc-go's
// file_watcher certificate provider read them.
//
// The files are svid.crt (the SVID, then its intermediates), svid.key and
// bundle.crt (the trust domain's roots), replaced together and atomically:
// each is a symlink into a "..data" directory that is swapped by one rename,
// the way Kubernetes updates projected volumes, so a reader never sees a new
// certificate with an old key and a directory watcher sees one move.
package agent

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/certs/certpb"
)

// Clock is the agent's time: Now, and a timer. Tests inject a fake one.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Config configures an Agent.
type Config struct {
	// Address is Horizon's mutual-TLS port, host:port.
	Address     string
	TrustDomain spiffeid.TrustDomain
	// ServerID is the SPIFFE ID Horizon's certificate must carry; zero
	// accepts any workload of the trust domain.
	ServerID spiffeid.ID
	// Bundle is the trust bundle to start from (the roots Horizon's
	// certificate chains to); each answer from Horizon replaces it.
	Bundle []*x509.Certificate
	// TokenFile holds a projected ServiceAccount token for Horizon's
	// audience, read afresh for each request; Cluster is the member cluster
	// that issued it. Without them the agent can only renew an SVID it
	// already has.
	TokenFile string
	Cluster   string
	// Join, when set, is how every SVID is obtained, the first and each
	// renewal: a workload outside Kubernetes joining its group (vm.go).
	Join func(ctx context.Context, req *certpb.SignRequest) (*certpb.SignResponse, error)
	// Dir is where the files are written (and a valid SVID is picked up
	// from at start).
	Dir string
	// TTL asks for a lifetime (0: the server's default).
	TTL time.Duration
	// Dial is a gRPC dial option for tests (e.g. a bufconn dialer); nil
	// dials Address over TCP.
	Dial    grpc.DialOption
	Clock   Clock
	Log     *slog.Logger
	Metrics *Metrics
	// Jitter is the random part of when renewal happens, as a fraction of
	// the lifetime (default 0.1: between 40% and 60% of it).
	Jitter float64
}

// Agent obtains and renews one SVID. It is an x509svid.Source and an
// x509bundle.Source, so in-process gRPC servers and clients can use it
// through go-spiffe's tlsconfig directly as well as through the files.
type Agent struct {
	cfg Config

	mu      sync.Mutex
	svid    *x509svid.SVID
	renewAt time.Time // when svid is due, drawn once per SVID
	bundle  *x509bundle.Bundle
	notify  chan struct{} // closed and replaced at each update
}

// New checks cfg and makes an Agent. It picks up a still-valid SVID from
// Dir, so a restarted agent does not ask again before renewal is due.
func New(cfg Config) (*Agent, error) {
	switch {
	case cfg.Address == "" && cfg.Dial == nil:
		return nil, errors.New("agent: no server address")
	case cfg.TrustDomain.IsZero():
		return nil, errors.New("agent: no trust domain")
	case len(cfg.Bundle) == 0:
		return nil, errors.New("agent: no trust bundle to verify the server with")
	case cfg.Dir == "":
		return nil, errors.New("agent: no output directory")
	case cfg.TokenFile != "" && cfg.Cluster == "":
		return nil, errors.New("agent: a token needs the member cluster that issued it")
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Jitter <= 0 || cfg.Jitter >= 0.5 {
		cfg.Jitter = 0.1
	}
	a := &Agent{
		cfg:    cfg,
		bundle: x509bundle.FromX509Authorities(cfg.TrustDomain, cfg.Bundle),
		notify: make(chan struct{}),
	}
	if svid, bundle, err := readDir(cfg.Dir, cfg.TrustDomain); err == nil {
		if _, err := certs.Verify(svid.Certificates, bundle, cfg.Clock.Now()); err == nil {
			a.svid, a.bundle = svid, bundle
			a.renewAt = renewAt(svid.Certificates[0], cfg.Jitter, mrand.Float64())
			cfg.Metrics.observe(svid)
			cfg.Log.Info("picked up the SVID in "+cfg.Dir, "id", svid.ID, "expires", svid.Certificates[0].NotAfter)
		}
	}
	return a, nil
}

// GetX509SVID implements x509svid.Source.
func (a *Agent) GetX509SVID() (*x509svid.SVID, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.svid == nil {
		return nil, errors.New("agent: no SVID yet")
	}
	return a.svid, nil
}

// GetX509BundleForTrustDomain implements x509bundle.Source.
func (a *Agent) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if td != a.bundle.TrustDomain() {
		return nil, fmt.Errorf("agent: no bundle for trust domain %s", td)
	}
	return a.bundle, nil
}

// Updated returns a channel closed at the next change of SVID or bundle.
func (a *Agent) Updated() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.notify
}

// RenewAt is when the current SVID is due for renewal: about half way
// through its lifetime, shifted by up to ±Jitter of the lifetime. Zero if
// there is no SVID.
func (a *Agent) RenewAt() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.svid == nil {
		return time.Time{}
	}
	return a.renewAt
}

// renewAt is the renewal time of leaf for a uniform random r in [0, 1).
func renewAt(leaf *x509.Certificate, jitter, r float64) time.Time {
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	frac := 0.5 + jitter*(2*r-1)
	return leaf.NotBefore.Add(time.Duration(float64(life) * frac))
}

// Retry backoff after a failed request: doubling from minBackoff to
// maxBackoff, never past the SVID's expiry when there is one to keep.
const (
	minBackoff = time.Second
	maxBackoff = 2 * time.Minute
)

// recheckEvery is the longest the agent sleeps before it reads the wall clock
// again to see whether a renewal is due.
const recheckEvery = time.Minute

// Run obtains the SVID if there is none (or it expired), then renews it
// whenever it is due, until ctx ends. Failures are logged and retried with
// backoff; Run returns only ctx's error.
func (a *Agent) Run(ctx context.Context) error {
	backoff := minBackoff
	for {
		wait := time.Duration(0)
		if due := a.RenewAt(); !due.IsZero() {
			wait = due.Sub(a.cfg.Clock.Now())
		}
		if wait > 0 {
			// Timers run on the monotonic clock, certificates expire by the
			// wall clock: a wall clock that jumps (a host resumed, NTP
			// stepping it) would leave a long timer firing after the SVID
			// expired. Sleep at most recheckEvery and look at the time again.
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-a.cfg.Clock.After(min(wait, recheckEvery)):
			}
			if wait > recheckEvery {
				continue
			}
		}
		if err := a.Renew(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			a.cfg.Log.Warn("could not obtain an SVID; retrying", "in", backoff, "error", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-a.cfg.Clock.After(backoff):
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		backoff = minBackoff
	}
}

// Renew obtains a new SVID now, for a new key: with the current SVID if it
// is still valid, else (or if Horizon refuses it) with the token. It writes
// the files and updates the sources.
func (a *Agent) Renew(ctx context.Context) error {
	key, err := certs.GenerateKey()
	if err != nil {
		a.cfg.Metrics.attempt("error")
		return err
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{Organization: []string{"SPIFFE"}}}, key)
	if err != nil {
		a.cfg.Metrics.attempt("error")
		return fmt.Errorf("certificate request: %w", err)
	}
	req := &certpb.SignRequest{Csr: csrDER}
	if a.cfg.TTL > 0 {
		req.Ttl = durationpb.New(a.cfg.TTL)
	}

	if a.cfg.Join != nil {
		// A workload outside Kubernetes renews by joining again, which
		// also refreshes its registration.
		resp, err := a.cfg.Join(ctx, req)
		if err != nil {
			a.cfg.Metrics.attempt("error")
			return fmt.Errorf("join: %w", err)
		}
		return a.accept(resp, key, "join")
	}
	var errs []error
	if current := a.current(); current != nil {
		resp, err := a.call(ctx, req, current, "")
		if err == nil {
			return a.accept(resp, key, "renewal")
		}
		errs = append(errs, fmt.Errorf("renew with the current SVID: %w", err))
	}
	if a.cfg.TokenFile != "" {
		token, err := os.ReadFile(a.cfg.TokenFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("token: %w", err))
		} else {
			req.Cluster = a.cfg.Cluster
			resp, err := a.call(ctx, req, nil, strings.TrimSpace(string(token)))
			if err == nil {
				return a.accept(resp, key, "token")
			}
			errs = append(errs, fmt.Errorf("with the token from %s: %w", a.cfg.TokenFile, err))
		}
	}
	if len(errs) == 0 {
		errs = append(errs, errors.New("no valid SVID to renew and no token to ask with"))
	}
	a.cfg.Metrics.attempt("error")
	return errors.Join(errs...)
}

// current is the SVID if it is still valid.
func (a *Agent) current() *x509svid.SVID {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.svid == nil || !a.cfg.Clock.Now().Before(a.svid.Certificates[0].NotAfter) {
		return nil
	}
	return a.svid
}

// call makes one request on a fresh connection, as svid (if not nil) and
// with token (if not empty), verifying the server against the bundle.
func (a *Agent) call(ctx context.Context, req *certpb.SignRequest, svid *x509svid.SVID, token string) (*certpb.SignResponse, error) {
	a.mu.Lock()
	bundle := a.bundle
	a.mu.Unlock()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(a.clientTLS(svid, bundle)))}
	if a.cfg.Dial != nil {
		opts = append(opts, a.cfg.Dial)
	}
	target := a.cfg.Address
	if target == "" {
		target = "passthrough:///horizon"
	}
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return certpb.NewCertificatesClient(conn).Sign(ctx, req)
}

// clientTLS verifies Horizon's certificate as an X509-SVID under bundle at
// the agent's clock, from ServerID (or any workload of the trust domain),
// and shows svid if it is not nil. go-spiffe's tlsconfig does the same but
// always at the wall clock.
func (a *Agent) clientTLS(svid *x509svid.SVID, bundle *x509bundle.Bundle) *tls.Config {
	conf := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verification is VerifyPeerCertificate's: SPIFFE IDs, not host names.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			chain := make([]*x509.Certificate, 0, len(raw))
			for _, der := range raw {
				c, err := x509.ParseCertificate(der)
				if err != nil {
					return fmt.Errorf("server certificate: %w", err)
				}
				chain = append(chain, c)
			}
			id, err := certs.Verify(chain, bundle, a.cfg.Clock.Now())
			if err != nil {
				return fmt.Errorf("server certificate: %w", err)
			}
			if !a.cfg.ServerID.IsZero() && id != a.cfg.ServerID {
				return fmt.Errorf("server is %s, want %s", id, a.cfg.ServerID)
			}
			if id.TrustDomain() != a.cfg.TrustDomain {
				return fmt.Errorf("server %s is not in trust domain %s", id, a.cfg.TrustDomain)
			}
			return nil
		},
	}
	if svid != nil {
		conf.GetClientCertificate = tlsconfig.GetClientCertificate(svid)
	}
	return conf
}

// accept checks an answer (the SVID is for our key, a valid X509-SVID of
// the trust domain under the bundle that came with it), writes the files and
// makes it current.
func (a *Agent) accept(resp *certpb.SignResponse, key crypto.Signer, method string) error {
	svid, bundle, err := parseResponse(resp, key, a.cfg.TrustDomain, a.cfg.Clock.Now())
	if err != nil {
		a.cfg.Metrics.attempt("error")
		return err
	}
	if err := writeDir(a.cfg.Dir, svid, bundle); err != nil {
		a.cfg.Metrics.attempt("error")
		return fmt.Errorf("write %s: %w", a.cfg.Dir, err)
	}
	a.mu.Lock()
	a.svid, a.bundle = svid, bundle
	a.renewAt = renewAt(svid.Certificates[0], a.cfg.Jitter, mrand.Float64())
	close(a.notify)
	a.notify = make(chan struct{})
	a.mu.Unlock()
	a.cfg.Metrics.attempt(method)
	a.cfg.Metrics.observe(svid)
	leaf := svid.Certificates[0]
	a.cfg.Log.Info("obtained X509-SVID", "id", svid.ID, "method", method, "expires", leaf.NotAfter, "roots", len(bundle.X509Authorities()))
	return nil
}

func parseResponse(resp *certpb.SignResponse, key crypto.Signer, td spiffeid.TrustDomain, now time.Time) (*x509svid.SVID, *x509bundle.Bundle, error) {
	var chain, roots []*x509.Certificate
	for _, der := range resp.GetCertChain() {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, fmt.Errorf("answer: certificate: %w", err)
		}
		chain = append(chain, c)
	}
	for _, der := range resp.GetBundle() {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, fmt.Errorf("answer: bundle: %w", err)
		}
		roots = append(roots, c)
	}
	if len(chain) == 0 || len(roots) == 0 {
		return nil, nil, errors.New("answer: no certificate or no bundle")
	}
	bundle := x509bundle.FromX509Authorities(td, roots)
	id, err := certs.Verify(chain, bundle, now)
	if err != nil {
		return nil, nil, fmt.Errorf("answer: %w", err)
	}
	if resp.GetSpiffeId() != id.String() {
		return nil, nil, fmt.Errorf("answer: says %q, certificate is %s", resp.GetSpiffeId(), id)
	}
	svid, err := (&certs.SVID{ID: id, Certificates: chain}).WithKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("answer: %w", err)
	}
	return svid, bundle, nil
}
