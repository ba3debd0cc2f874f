package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/certs/certsvc"
	"github.com/horizonmesh/horizon/discovery/kube"
)

// DefaultTokenAudience is the audience a workload's projected token for
// Horizon must carry.
const DefaultTokenAudience = "horizon"

// caStore is the CA directory of --ca-dir, reloaded when its files change:
// the CA at the top signs for every cluster, unless a subdirectory named
// after a member cluster holds that cluster's own intermediate. A reload
// that fails keeps the last good CAs and says why in the log.
type caStore struct {
	dir     string
	td      spiffeid.TrustDomain
	metrics *certs.Metrics
	log     *slog.Logger
	now     func() time.Time // the CAs' clock

	mu        sync.Mutex
	checked   time.Time // when the files were last looked at
	stamp     string    // their names, sizes and times then
	top       *certs.CA
	byCluster map[string]*certs.CA
}

// caRecheck is how often at most the directory is looked at again.
const caRecheck = time.Second

func newCAStore(dir string, td spiffeid.TrustDomain, m *certs.Metrics, log *slog.Logger, now func() time.Time) (*caStore, error) {
	s := &caStore{dir: dir, td: td, metrics: m, log: log, now: now}
	if err := s.reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// signer returns the CA for a member cluster ("" or an unknown one: the
// top CA).
func (s *caStore) signer(cluster string) (*certs.CA, error) {
	s.maybeReload()
	s.mu.Lock()
	defer s.mu.Unlock()
	if ca, ok := s.byCluster[cluster]; ok {
		return ca, nil
	}
	return s.top, nil
}

func (s *caStore) current() (*certs.CA, error) { return s.signer("") }

func (s *caStore) maybeReload() {
	s.mu.Lock()
	due := time.Since(s.checked) >= caRecheck
	s.mu.Unlock()
	if !due {
		return
	}
	if err := s.reload(); err != nil {
		s.log.Error("CA directory: keeping the CAs loaded before", "dir", s.dir, "error", err)
	}
}

// reload loads the directory if its stamp changed.
func (s *caStore) reload() error {
	stamp, subdirs, err := dirStamp(s.dir)
	s.mu.Lock()
	s.checked = time.Now()
	unchanged := err == nil && stamp == s.stamp
	s.mu.Unlock()
	if err != nil || unchanged {
		return err
	}
	opts := []certs.Option{certs.WithTrustDomain(s.td), certs.WithMetrics(s.metrics), certs.WithClock(s.now)}
	top, err := certs.LoadDir(s.dir, opts...)
	if err != nil {
		return err
	}
	byCluster := map[string]*certs.CA{}
	for _, sub := range subdirs {
		ca, err := certs.LoadDir(filepath.Join(s.dir, sub), append(opts, certs.WithCluster(sub))...)
		if err != nil {
			return err
		}
		if !sameRoots(ca, top) {
			return fmt.Errorf("%s: its trust bundle (%s) differs from %s's", filepath.Join(s.dir, sub, certs.RootCertFile), sub, s.dir)
		}
		byCluster[sub] = ca
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.top != nil {
		s.log.Info("CA directory reloaded", "dir", s.dir, "ca", top.Certificate().Subject.String(), "roots", len(top.Bundle().X509Authorities()), "clusters", slices.Sorted(maps.Keys(byCluster)))
	}
	s.stamp, s.top, s.byCluster = stamp, top, byCluster
	return nil
}

// sameRoots says whether two CAs have the same roots, in any order.
func sameRoots(a, b *certs.CA) bool {
	ra, rb := a.Bundle().X509Authorities(), b.Bundle().X509Authorities()
	if len(ra) != len(rb) {
		return false
	}
	for _, x := range ra {
		if !slices.ContainsFunc(rb, x.Equal) {
			return false
		}
	}
	return true
}

// dirStamp describes the PEM files of dir and of its subdirectories (which
// it returns, those holding a CA key), so that a change to any is noticed.
func dirStamp(dir string) (string, []string, error) {
	var b strings.Builder
	var subdirs []string
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", nil, err
	}
	stampFile := func(path string) error {
		st, err := os.Stat(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %d %d\n", path, st.Size(), st.ModTime().UnixNano())
		return nil
	}
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		switch {
		case strings.HasPrefix(e.Name(), "."):
		case e.IsDir():
			if _, err := os.Stat(filepath.Join(path, certs.KeyFile)); errors.Is(err, fs.ErrNotExist) {
				continue
			}
			subdirs = append(subdirs, e.Name())
			for _, name := range []string{certs.CertFile, certs.KeyFile, certs.RootCertFile} {
				if err := stampFile(filepath.Join(path, name)); err != nil {
					return "", nil, err
				}
			}
		default:
			if err := stampFile(path); err != nil {
				return "", nil, err
			}
		}
	}
	return b.String(), subdirs, nil
}

// identityConfig is what serve's flags say about certificates.
type identityConfig struct {
	caDir         string
	identity      string
	tokenAudience string
	svidTTL       time.Duration
}

// certAuthority is Horizon as the CA: the TLS configuration of the mTLS port
// (Horizon's own SVID, and client certificates optional but verified) and the
// certificate API to register on it.
type certAuthority struct {
	tls   *tls.Config
	svc   *certsvc.Server
	store *caStore
}

func newCertAuthority(cfg identityConfig, td spiffeid.TrustDomain, source *kube.Source, reg prometheus.Registerer, log *slog.Logger, now func() time.Time) (*certAuthority, error) {
	store, err := newCAStore(cfg.caDir, td, certs.NewMetrics(reg), log, now)
	if err != nil {
		return nil, fmt.Errorf("--ca-dir: %w", err)
	}
	self, err := spiffeid.FromString(cfg.identity)
	if err != nil {
		return nil, fmt.Errorf("--identity: %w", err)
	}
	if self.TrustDomain() != td {
		return nil, fmt.Errorf("--identity %s is not in trust domain %s", self, td)
	}
	src := certsvc.NewSelf(self, cfg.svidTTL, store.current, now)
	if _, err := src.GetX509SVID(); err != nil {
		return nil, fmt.Errorf("Horizon's own SVID from %s: %w", cfg.caDir, err)
	}
	svcCfg := certsvc.Config{
		TrustDomain: td,
		Signer:      store.signer,
		MaxTTL:      cfg.svidTTL,
		Metrics:     certsvc.NewMetrics(reg),
		Log:         log,
		Now:         now,
	}
	if source != nil {
		svcCfg.Review = tokenReviewer(source, cfg.tokenAudience)
	}
	svc, err := certsvc.New(svcCfg)
	if err != nil {
		return nil, err
	}
	return &certAuthority{tls: certsvc.ServerTLS(src, src, td, now), svc: svc, store: store}, nil
}

func (c *certAuthority) register(g *grpc.Server) { c.svc.Register(g) }

// tokenReviewer asks the member cluster a caller names, through Horizon's
// own connection to it, who the caller's token belongs to.
func tokenReviewer(source *kube.Source, audience string) certsvc.Reviewer {
	return func(ctx context.Context, cluster, token string) (string, string, error) {
		m, ok := source.Member(cluster)
		if !ok {
			return "", "", &certsvc.Denied{Reason: certsvc.ReasonUnknownCluster, Err: fmt.Errorf("no synced member cluster %q", cluster)}
		}
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		id, err := kube.ReviewToken(ctx, m.Kube(), token, audience)
		if err == nil {
			return id.Namespace, id.ServiceAccount, nil
		}
		reason := certsvc.ReasonReviewFailed
		switch {
		case errors.Is(err, kube.ErrTokenRejected):
			reason = certsvc.ReasonTokenRejected
		case errors.Is(err, kube.ErrTokenAudience):
			reason = certsvc.ReasonTokenAudience
		case errors.Is(err, kube.ErrNotServiceAccount):
			reason = certsvc.ReasonNotSA
		}
		return "", "", &certsvc.Denied{Reason: reason, Err: err}
	}
}

// mtlsSetup decides what the mutual-TLS port serves, from the flags:
//
//   - --ca-dir: Horizon is the CA. Its own SVID comes from the CA, clients
//     may come without a certificate (to get one with a token), and the
//     certificate API is served.
//   - --spire-socket: SPIRE is the CA. Horizon's SVID and the bundle come
//     from the SPIRE agent; no certificate API.
//   - --tls-cert, --tls-key, --tls-client-ca: files from elsewhere; every
//     client must show a certificate; no certificate API.
//
// With none of them there is no mTLS port (nil config).
func mtlsSetup(ctx context.Context, cfg serveConfig, td spiffeid.TrustDomain, source *kube.Source, reg prometheus.Registerer, log *slog.Logger) (*tls.Config, func(*grpc.Server), func(), error) {
	files := cfg.tlsCert != "" || cfg.tlsKey != "" || cfg.tlsClientCA != ""
	nop := func() {}
	switch {
	case cfg.identity.caDir != "" && cfg.spireSocket != "":
		return nil, nil, nop, errors.New("--ca-dir and --spire-socket exclude each other: one CA")
	case cfg.spireSocket != "" && files:
		return nil, nil, nop, errors.New("--spire-socket and --tls-cert exclude each other: SPIRE provides Horizon's certificate")
	case cfg.identity.caDir != "" && cfg.tlsClientCA != "":
		return nil, nil, nop, errors.New("--ca-dir and --tls-client-ca exclude each other: the CA's bundle verifies clients")
	case cfg.identity.caDir != "":
		if files {
			return nil, nil, nop, errors.New("--ca-dir issues Horizon's own certificate: drop --tls-cert and --tls-key")
		}
		ic := cfg.identity
		if ic.identity == "" {
			ns := os.Getenv("POD_NAMESPACE")
			if ns == "" {
				ns = "horizon-system"
			}
			ic.identity = "spiffe://" + td.Name() + "/ns/" + ns + "/sa/horizon"
		}
		ca, err := newCertAuthority(ic, td, source, reg, log, time.Now)
		if err != nil {
			return nil, nil, nop, err
		}
		log.Info("Horizon is the CA: the certificate API is on the mutual-TLS port", "dir", ic.caDir, "identity", ic.identity, "token_audience", ic.tokenAudience)
		return ca.tls, ca.register, nop, nil
	case cfg.spireSocket != "":
		conf, src, err := spireServerTLS(ctx, cfg.spireSocket, td, DefaultSPIRETimeout, log)
		if err != nil {
			return nil, nil, nop, err
		}
		reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "horizon_spire_bundle_expiry_timestamp_seconds",
				Help: "Unix time at which the first root of the trust bundle from SPIRE expires.",
			}, func() float64 {
				var first time.Time
				for _, c := range src.Authorities() {
					if first.IsZero() || c.NotAfter.Before(first) {
						first = c.NotAfter
					}
				}
				return float64(first.Unix())
			}),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "horizon_spire_svid_expiry_timestamp_seconds",
				Help: "Unix time at which Horizon's own SVID from SPIRE expires.",
			}, func() float64 { return float64(src.SVIDExpiry().Unix()) }),
		)
		log.Info("SPIRE is the CA: Horizon's SVID and the trust bundle come from the Workload API", "socket", cfg.spireSocket)
		return conf, nil, func() { src.Close() }, nil
	case files:
		creds, err := newFileCreds(cfg.tlsCert, cfg.tlsKey, cfg.tlsClientCA)
		if err != nil {
			return nil, nil, nop, err
		}
		return creds.serverConfig(), nil, nop, nil
	}
	return nil, nil, nop, nil
}
