package main

import (
	"cmp"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/xds"
	"github.com/horizonmesh/horizon/xds/bootstrap"
)

// labelFlags is the repeatable --label k=v.
type labelFlags map[string]string

func (l *labelFlags) String() string { return fmt.Sprint(map[string]string(*l)) }

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

// bootstrapCommand runs `horizon bootstrap`: flags in, the bootstrap that
// xds/bootstrap renders for them out.
func bootstrapCommand(args []string, stdout, stderr io.Writer) error {
	return bootstrapOn(bootstrap.OSHost, args, stdout, stderr)
}

func bootstrapOn(h bootstrap.Host, args []string, stdout, stderr io.Writer) error {
	var p bootstrap.Proxy
	var xdsAddress, mtlsAddress, provider, trustDomain, serverID string
	var svids bootstrap.SVIDSource
	var adminPort int
	var outPath string
	var gw bootstrap.GatewayLimits
	var readinessPort int
	fs := flag.NewFlagSet("bootstrap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&p.Role, "role", "sidecar", "sidecar or gateway (Envoy bootstrap), or proxyless (grpc-go bootstrap JSON)")
	fs.StringVar(&p.ID, "id", "", "node id, unique per proxy (default <role>~$POD_IP~$POD_NAME.<namespace>~<cluster>; without POD_NAME, the host name and a random suffix)")
	fs.StringVar(&p.Cluster, "cluster", "", "member cluster the proxy runs in (CLUSTER_ID, required)")
	fs.StringVar(&p.Network, "network", "", "network the proxy is on (default: its cluster's)")
	fs.StringVar(&p.Namespace, "namespace", "", "workload namespace (NAMESPACE; default $POD_NAMESPACE, else default)")
	fs.StringVar(&p.ServiceAccount, "service-account", "default", "workload service account (SERVICE_ACCOUNT)")
	fs.StringVar(&p.Region, "region", "", "locality region (default: its cluster's)")
	fs.StringVar(&p.Zone, "zone", "", "locality zone")
	fs.StringVar(&p.SubZone, "subzone", "", "locality sub-zone")
	fs.Var((*labelFlags)(&p.Labels), "label", "a workload label, key=value (repeatable): node metadata LABELS, which a traffic policy's failoverPriority may rank on")
	fs.StringVar(&xdsAddress, "xds-address", "127.0.0.1:15010", "host:port of Horizon's plaintext xDS server (local development)")
	fs.StringVar(&mtlsAddress, "mtls-address", "", "host:port of Horizon's mutual-TLS xDS server (its port 15012); when set, Envoy connects there with its SVID instead of to --xds-address, and checks Horizon's SPIFFE ID (--xds-server-id). Envoy only")
	fs.StringVar(&trustDomain, "trust-domain", xds.DefaultTrustDomain.Name(), "SPIFFE trust domain of the mesh")
	fs.StringVar(&serverID, "xds-server-id", "", "SPIFFE ID Horizon's certificate must carry on --mtls-address (default spiffe://<trust-domain>/ns/horizon-system/sa/horizon)")
	fs.StringVar(&provider, "svid-provider", string(xds.SVIDFromAgent), "where Envoy gets its SVID and trust bundle: agent (files that 'horizon agent' writes into --cert-dir, as static secrets) or spire (a SPIRE agent's SDS server on --sds-socket). Must match 'horizon serve''s setting. Proxyless gRPC always reads --cert-dir")
	fs.StringVar(&svids.CertDir, "cert-dir", bootstrap.DefaultCertDir, "directory holding "+certs.SVIDFile+", "+certs.SVIDKeyFile+" and "+certs.BundleFile+" (--svid-provider agent, and proxyless gRPC); watched for atomic replacement")
	fs.StringVar(&svids.SDSSocket, "sds-socket", bootstrap.DefaultSDSSocket, "Unix socket of the SPIRE agent's SDS server (--svid-provider spire; Envoy only)")
	fs.IntVar(&adminPort, "admin-port", 15000, "Envoy admin port on 127.0.0.1")
	fs.Int64Var(&gw.MaxConnections, "max-downstream-connections", bootstrap.DefaultMaxDownstreamConnections, "gateway: cap on open downstream connections, all listeners together (the overload manager's downstream connections monitor); keep it under half the file descriptor limit; 0 for none")
	fs.Uint64Var(&gw.MaxHeapBytes, "max-heap-bytes", 0, "gateway: heap Envoy may use, e.g. 80% of its container's memory limit; the overload manager then shrinks the heap at 95% and stops accepting connections at 98% (0: heap not watched)")
	fs.IntVar(&readinessPort, "readiness-port", bootstrap.DefaultReadinessPort, "gateway: port of the readiness endpoint GET "+bootstrap.ReadinessPath+" on 0.0.0.0 (200 while Envoy is live, 503 while it drains); 0 for none")
	fs.StringVar(&outPath, "out", "", "write the bootstrap to this file (replaced atomically) instead of standard output, e.g. from an init container whose image has no shell")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if p.Cluster == "" {
		return fmt.Errorf("bootstrap: --cluster is required")
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if err := checkGatewayFlags(p.Role, gw, readinessPort, uint32(adminPort), set); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	gw.ReadinessPort = uint32(readinessPort)
	var err error
	if svids.Provider, err = xds.ParseSVIDProvider(provider); err != nil {
		return fmt.Errorf("bootstrap: --svid-provider: %w", err)
	}
	if !filepath.IsAbs(svids.CertDir) {
		return fmt.Errorf("bootstrap: --cert-dir %q: want an absolute path", svids.CertDir)
	}
	server, err := parseXDSServer(xdsAddress, mtlsAddress, trustDomain, serverID)
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
		if server.MTLS {
			// grpc-go's "tls" channel credentials check the server's DNS
			// name, which an X509-SVID does not carry.
			return fmt.Errorf("bootstrap: --mtls-address: proxyless gRPC connects to --xds-address only")
		}
	case xds.Sidecar, xds.Gateway:
	default:
		return fmt.Errorf("bootstrap: --role %q: want sidecar, gateway or proxyless", p.Role)
	}
	doc, err := bootstrap.Render(bootstrap.Config{
		Proxy: p, XDSAddress: xdsAddress, Server: server, SVIDs: svids, AdminPort: uint32(adminPort), Gateway: gw,
	})
	if err != nil {
		return err
	}
	if outPath == "" {
		_, err = stdout.Write(doc)
		return err
	}
	if err := writeFileAtomic(outPath, doc); err != nil {
		return fmt.Errorf("bootstrap: --out: %w", err)
	}
	return nil
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
