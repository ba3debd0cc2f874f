package main

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/xds"
	"github.com/horizonmesh/horizon/xds/bootstrap"
)

// labelFlags is the repeatable --label k=v.
type labelFlags map[string]string

func (l *labelFlags) String() string {
	var kvs []string
	for _, k := range slices.Sorted(maps.Keys(*l)) {
		kvs = append(kvs, k+"="+(*l)[k])
	}
	return strings.Join(kvs, ",")
}

func (l *labelFlags) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q: want key=value", v)
	}
	if *l == nil {
		*l = labelFlags{}
	}
	(*l)[k] = val
	return nil
}

func (l *labelFlags) Type() string { return "key=value" }

// bootstrapConfig is what `horizon bootstrap` is asked for.
type bootstrapConfig struct {
	proxy                                                    bootstrap.Proxy
	xdsAddress, mtlsAddress, provider, trustDomain, serverID string
	svids                                                    bootstrap.SVIDSource
	adminPort, readinessPort                                 int
	maxReceiveBytes                                          uint32
	gateway                                                  bootstrap.GatewayLimits
	out                                                      string          // a file, or "" for stdout
	caBundleEnv                                              string          // write the PEM bundle in this variable into the cert dir
	given                                                    map[string]bool // the flags given
}

// run runs `horizon bootstrap` on the host h: the bootstrap that
// xds/bootstrap renders for cfg.
func (cfg bootstrapConfig) run(h bootstrap.Host, stdout io.Writer) error {
	p, gw, svids := cfg.proxy, cfg.gateway, cfg.svids
	if err := checkGatewayFlags(p.Role, gw, cfg.readinessPort, uint32(cfg.adminPort), cfg.given); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	gw.ReadinessPort = uint32(cfg.readinessPort)
	var err error
	if svids.Provider, err = xds.ParseSVIDProvider(cfg.provider); err != nil {
		return fmt.Errorf("bootstrap: --svid-provider: %w", err)
	}
	if !filepath.IsAbs(svids.CertDir) {
		return fmt.Errorf("bootstrap: --cert-dir %q: want an absolute path", svids.CertDir)
	}
	server, err := parseXDSServer(cfg.xdsAddress, cfg.mtlsAddress, cfg.trustDomain, cfg.serverID)
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	if p.Namespace == "" {
		p.Namespace = cmp.Or(h.Getenv(bootstrap.EnvPodNamespace), "default")
	}
	if p.ID == "" {
		if p.ID, err = bootstrap.DefaultNodeID(p, h); err != nil {
			return fmt.Errorf("bootstrap: %w", err)
		}
	}
	switch xds.Role(p.Role) {
	case xds.Proxyless:
		if cfg.given["xds-max-receive-bytes"] {
			return fmt.Errorf("bootstrap: --xds-max-receive-bytes: grpc-go's xDS client has no setting for its receive limit (4 MiB); Envoy only")
		}
		if cfg.given["xds-server-id"] {
			// grpc-go checks the chain of Horizon's certificate on the xDS
			// channel, not its SPIFFE ID: a pin it would ignore is refused.
			return fmt.Errorf("bootstrap: --xds-server-id: proxyless gRPC cannot check Horizon's SPIFFE ID (it checks the trust bundle only); Envoy only")
		}
	case xds.Sidecar, xds.Gateway:
		if cfg.maxReceiveBytes == 0 {
			return fmt.Errorf("bootstrap: --xds-max-receive-bytes 0: want a limit (Envoy's 0, unlimited, is not offered)")
		}
		server.MaxReceiveBytes = cfg.maxReceiveBytes
	default:
		return fmt.Errorf("bootstrap: --role %q: want sidecar, gateway or proxyless", p.Role)
	}
	if cfg.caBundleEnv != "" {
		if err := writeBundle(h, cfg.caBundleEnv, svids.CertDir); err != nil {
			return fmt.Errorf("bootstrap: --ca-bundle-env: %w", err)
		}
	}
	doc, err := bootstrap.Render(bootstrap.Config{
		Proxy: p, Server: server, SVIDs: svids, AdminPort: uint32(cfg.adminPort), Gateway: gw,
	})
	if err != nil {
		return err
	}
	if cfg.out == "" {
		_, err = stdout.Write(doc)
		return err
	}
	if err := writeFileAtomic(cfg.out, doc); err != nil {
		return fmt.Errorf("bootstrap: --out: %w", err)
	}
	return nil
}

// writeBundle writes the PEM trust bundle held in the environment variable
// name to dir/bundle.crt, the roots `horizon agent` first verifies Horizon
// with, unless a bundle is there already (the agent's, which is newer).
func writeBundle(h bootstrap.Host, name, dir string) error {
	path := filepath.Join(dir, certs.BundleFile)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	pem := h.Getenv(name)
	roots, err := certs.ParseCertificates([]byte(pem))
	if err != nil || len(roots) == 0 {
		return fmt.Errorf("$%s holds no PEM certificates (%v)", name, err)
	}
	return writeFileAtomic(path, certs.EncodeCertificates(roots...))
}

// parseXDSServer picks the Horizon endpoint: the mTLS one when given.
func parseXDSServer(xdsAddress, mtlsAddress, trustDomain, serverID string) (bootstrap.Server, error) {
	flagName, addr := "--xds-address", xdsAddress
	if mtlsAddress != "" {
		flagName, addr = "--mtls-address", mtlsAddress
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return bootstrap.Server{}, fmt.Errorf("%s: %w", flagName, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 || host == "" {
		return bootstrap.Server{}, fmt.Errorf("%s: bad address %q", flagName, addr)
	}
	s := bootstrap.Server{Host: host, Port: uint32(port), MTLS: mtlsAddress != ""}
	td, err := spiffeid.TrustDomainFromString(trustDomain)
	if err != nil {
		return bootstrap.Server{}, fmt.Errorf("--trust-domain: %w", err)
	}
	if serverID == "" {
		s.ID, err = spiffeid.FromSegments(td, "ns", "horizon-system", "sa", "horizon")
	} else {
		s.ID, err = spiffeid.FromString(serverID)
	}
	if err != nil {
		return bootstrap.Server{}, fmt.Errorf("--xds-server-id: %w", err)
	}
	if !s.ID.MemberOf(td) {
		return bootstrap.Server{}, fmt.Errorf("--xds-server-id %s is not in trust domain %s", s.ID, td)
	}
	return s, nil
}

// writeFileAtomic replaces path with data (mode 0644) by a rename, so a
// reader sees the old file or the new one, never a part.
func writeFileAtomic(path string, data []byte) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// checkGatewayFlags refuses the gateway's flags for other roles (set names
// the flags given) and values out of range.
func checkGatewayFlags(role string, g bootstrap.GatewayLimits, readinessPort int, adminPort uint32, set map[string]bool) error {
	for _, name := range []string{"max-downstream-connections", "max-heap-bytes", "readiness-port"} {
		if set[name] && role != string(xds.Gateway) {
			return fmt.Errorf("--%s: for --role gateway only", name)
		}
	}
	if g.MaxConnections < 0 {
		return fmt.Errorf("--max-downstream-connections %d: want 0 (no limit) or more", g.MaxConnections)
	}
	if readinessPort < 0 || readinessPort > 65535 {
		return fmt.Errorf("--readiness-port %d: want 0 (none) or a port", readinessPort)
	}
	if readinessPort != 0 && uint32(readinessPort) == adminPort {
		return fmt.Errorf("--readiness-port %d is the admin port", readinessPort)
	}
	return nil
}
