package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/certs/castore"
	"github.com/horizonmesh/horizon/certs/certsvc"
	"github.com/horizonmesh/horizon/certs/tlsfiles"
	"github.com/horizonmesh/horizon/discovery/kube"
)

// DefaultTokenAudience is the audience a workload's projected token for
// Horizon must carry.
const DefaultTokenAudience = "horizon"

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
	store *castore.Store
	// review is the token reviewer of the member clusters, nil without
	// any: the workload registration API's too.
	review certsvc.Reviewer
}

func newCertAuthority(cfg identityConfig, td spiffeid.TrustDomain, source *kube.Source, reg prometheus.Registerer, log *slog.Logger, now func() time.Time) (*certAuthority, error) {
	store, err := castore.New(cfg.caDir, td, certs.NewMetrics(reg), log, now)
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
	src := certsvc.NewSelf(self, cfg.svidTTL, store.Current, now)
	if _, err := src.GetX509SVID(); err != nil {
		return nil, fmt.Errorf("Horizon's own SVID from %s: %w", cfg.caDir, err)
	}
	svcCfg := certsvc.Config{
		TrustDomain: td,
		Signer:      store.Signer,
		MaxTTL:      cfg.svidTTL,
		Metrics:     certsvc.NewMetrics(reg),
		Log:         log,
		Now:         now,

		// Agents and proxies know Horizon by this ID on the mutual-TLS
		// port: no member cluster's token for that ServiceAccount gets it.
		Reserved: []spiffeid.ID{self},
	}
	if source != nil {
		svcCfg.Review = tokenReviewer(source, cfg.tokenAudience)
	}
	svc, err := certsvc.New(svcCfg)
	if err != nil {
		return nil, err
	}
	return &certAuthority{tls: certsvc.ServerTLS(src, src, td, now), svc: svc, store: store, review: svcCfg.Review}, nil
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
func mtlsSetup(ctx context.Context, cfg serveConfig, td spiffeid.TrustDomain, source *kube.Source, reg prometheus.Registerer, log *slog.Logger) (mtlsPort, error) {
	p, err := mtlsSetupPort(ctx, cfg, td, source, reg, log)
	if p.close == nil {
		p.close = func() {}
	}
	return p, err
}

// mtlsPort is what the mutual-TLS port serves with.
type mtlsPort struct {
	conf     *tls.Config
	register func(*grpc.Server) // the certificate API, when Horizon is the CA
	close    func()
	// bundles verifies client chains again for their claims (server.Trust);
	// nil when the handshake keeps its verified chains (--tls-client-ca).
	bundles x509bundle.Source
	// ca is the current CA and identity Horizon's own SPIFFE ID, when
	// Horizon is the CA (--ca-dir): the injector's serving certificate.
	ca       func() (*certs.CA, error)
	identity spiffeid.ID
	// signer is the CA that signs for a member cluster, when Horizon is
	// the CA (the workload registration API's SVIDs); caDir holds it.
	signer func(cluster string) (*certs.CA, error)
	caDir  string
	// review asks a member cluster whose ServiceAccount token a caller
	// sent (nil without members): the certificate API's reviewer, which
	// workload groups with a tokenReviewCluster use too.
	review certsvc.Reviewer
}

// bundleFunc is an x509bundle.Source made of a function.
type bundleFunc func(spiffeid.TrustDomain) (*x509bundle.Bundle, error)

func (f bundleFunc) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return f(td)
}

func mtlsSetupPort(ctx context.Context, cfg serveConfig, td spiffeid.TrustDomain, source *kube.Source, reg prometheus.Registerer, log *slog.Logger) (mtlsPort, error) {
	files := cfg.tlsCert != "" || cfg.tlsKey != "" || cfg.tlsClientCA != ""
	switch {
	case cfg.identity.caDir != "" && cfg.spireSocket != "":
		return mtlsPort{}, errors.New("--ca-dir and --spire-socket exclude each other: one CA")
	case cfg.spireSocket != "" && files:
		return mtlsPort{}, errors.New("--spire-socket and --tls-cert exclude each other: SPIRE provides Horizon's certificate")
	case cfg.identity.caDir != "" && cfg.tlsClientCA != "":
		return mtlsPort{}, errors.New("--ca-dir and --tls-client-ca exclude each other: the CA's bundle verifies clients")
	case cfg.identity.caDir != "":
		if files {
			return mtlsPort{}, errors.New("--ca-dir issues Horizon's own certificate: drop --tls-cert and --tls-key")
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
			return mtlsPort{}, err
		}
		log.Info("Horizon is the CA: the certificate API is on the mutual-TLS port", "dir", ic.caDir, "identity", ic.identity, "token_audience", ic.tokenAudience)
		current := bundleFunc(func(want spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
			top, err := ca.store.Current()
			if err != nil {
				return nil, err
			}
			if want != top.TrustDomain() {
				return nil, fmt.Errorf("no bundle for trust domain %s", want)
			}
			return top.Bundle(), nil
		})
		return mtlsPort{conf: ca.tls, register: ca.register, bundles: current, ca: ca.store.Current, identity: spiffeid.RequireFromString(ic.identity),
			signer: ca.store.Signer, caDir: ic.caDir, review: ca.review}, nil
	case cfg.spireSocket != "":
		conf, src, err := spireServerTLS(ctx, cfg.spireSocket, td, DefaultSPIRETimeout, log)
		if err != nil {
			return mtlsPort{}, err
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
		return mtlsPort{conf: conf, close: func() { src.Close() }, bundles: src.source}, nil
	case files:
		if cfg.tlsCert == "" || cfg.tlsKey == "" || cfg.tlsClientCA == "" {
			return mtlsPort{}, errors.New("--tls-cert, --tls-key and --tls-client-ca go together")
		}
		creds, err := tlsfiles.NewServer(cfg.tlsCert, cfg.tlsKey, cfg.tlsClientCA)
		if err != nil {
			return mtlsPort{}, err
		}
		return mtlsPort{conf: creds.Config()}, nil
	}
	return mtlsPort{}, nil
}
