package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/certs/certsvc"
	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/kube"
	"github.com/horizonmesh/horizon/inject"
	corev1 "k8s.io/api/core/v1"
)

// injectorConfig is what serve's --injector-* flags say.
type injectorConfig struct {
	address       string
	config        string
	dnsNames      string
	ipSANs        string
	cert, key     string
	webhookConfig string
}

func (ic injectorConfig) enabled() bool { return ic.address != "" }

// injectorServingTTL is the lifetime of the serving certificate Horizon's
// CA issues the injector; it is renewed at half of it.
const injectorServingTTL = 24 * time.Hour

// injector is the sidecar injector's part of serve: its listener and the
// tasks to run.
type injector struct {
	lis   net.Listener
	tasks map[string]func(context.Context) error
}

// setupInjector checks the injector's flags and makes its webhook, serving
// certificate and caBundle keeper. clusterSet is the latest ClusterSet.
func setupInjector(cfg serveConfig, port mtlsPort, td spiffeid.TrustDomain, clusterSet *atomic.Pointer[discovery.ClusterSet], source *kube.Source, reg prometheus.Registerer, log *slog.Logger) (*injector, error) {
	ic := cfg.injector
	if !ic.enabled() {
		for flag, v := range map[string]string{"injector-config": ic.config, "injector-cert": ic.cert, "injector-webhook-config": ic.webhookConfig} {
			if v != "" {
				return nil, fmt.Errorf("--%s needs --injector-address", flag)
			}
		}
		return nil, nil
	}
	if ic.config == "" {
		return nil, errors.New("--injector-address needs --injector-config")
	}
	c, err := inject.LoadConfig(ic.config)
	if err != nil {
		return nil, fmt.Errorf("--injector-config: %w", err)
	}
	log = log.With("component", "injector")

	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case ic.cert != "" || ic.key != "":
		if ic.cert == "" || ic.key == "" {
			return nil, errors.New("--injector-cert and --injector-key go together")
		}
		if conf.GetCertificate, err = inject.KeyPairFiles(ic.cert, ic.key); err != nil {
			return nil, fmt.Errorf("--injector-cert: %w", err)
		}
	case port.ca != nil:
		dns, ips, err := servingNames(ic)
		if err != nil {
			return nil, err
		}
		self := certsvc.NewSelf(port.identity, injectorServingTTL, port.ca, time.Now, certs.WithServingNames(dns, ips))
		if _, err := self.GetX509SVID(); err != nil {
			return nil, fmt.Errorf("injector serving certificate: %w", err)
		}
		conf.GetCertificate = tlsconfig.GetCertificate(self)
	default:
		return nil, errors.New("--injector-address needs a serving certificate: Horizon's CA (--ca-dir), or --injector-cert and --injector-key")
	}
	if ic.webhookConfig != "" && port.ca == nil {
		return nil, errors.New("--injector-webhook-config keeps the caBundle equal to Horizon's CA bundle: it needs --ca-dir (with --injector-cert, set the caBundle yourself)")
	}

	bundle := func() ([]byte, error) {
		if port.bundles != nil {
			b, err := port.bundles.GetX509BundleForTrustDomain(td)
			if err != nil {
				return nil, err
			}
			return certs.EncodeCertificates(b.X509Authorities()...), nil
		}
		if cfg.tlsClientCA != "" {
			return os.ReadFile(cfg.tlsClientCA)
		}
		return nil, errors.New("no trust bundle: serve has no mutual-TLS port (--ca-dir, --spire-socket or --tls-cert)")
	}
	if _, err := bundle(); err != nil {
		return nil, fmt.Errorf("--injector-address: %w", err)
	}
	resolver := inject.Resolver{ClusterSet: clusterSet.Load, Bundle: bundle, Log: log}
	if source != nil {
		resolver.Node = func(ctx context.Context, cluster, name string) (*corev1.Node, error) {
			m, ok := source.Member(cluster)
			if !ok {
				return nil, fmt.Errorf("no synced member cluster %q", cluster)
			}
			return m.Node(ctx, name)
		}
	}
	wh := inject.NewWebhook(c, resolver, inject.NewMetrics(reg), log)

	lis, err := net.Listen("tcp", ic.address)
	if err != nil {
		return nil, fmt.Errorf("injector listener: %w", err)
	}
	inj := &injector{lis: lis, tasks: map[string]func(context.Context) error{
		"injector":        func(ctx context.Context) error { return inject.Serve(ctx, lis, wh.Handler(), conf) },
		"injector config": func(ctx context.Context) error { return wh.WatchConfig(ctx, ic.config) },
	}}
	if ic.webhookConfig != "" {
		client, err := cfg.kube.controlPlane()
		if err != nil {
			lis.Close()
			return nil, fmt.Errorf("--injector-webhook-config: %w", err)
		}
		cab := &inject.CABundle{Client: client, Name: ic.webhookConfig, Bundle: bundle, Log: log}
		inj.tasks["injector caBundle"] = cab.Run
	}
	return inj, nil
}

// servingNames are the SANs of the injector's certificate.
func servingNames(ic injectorConfig) ([]string, []net.IP, error) {
	var dns []string
	for n := range strings.SplitSeq(ic.dnsNames, ",") {
		if n = strings.TrimSpace(n); n != "" {
			dns = append(dns, n)
		}
	}
	if len(dns) == 0 {
		ns := os.Getenv("POD_NAMESPACE")
		if ns == "" {
			ns = "horizon-system"
		}
		dns = []string{"horizon-injector." + ns + ".svc"}
	}
	var ips []net.IP
	for s := range strings.SplitSeq(ic.ipSANs, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, nil, fmt.Errorf("--injector-ip-sans: %q is not an IP address", s)
		}
		ips = append(ips, ip)
	}
	return dns, ips, nil
}
