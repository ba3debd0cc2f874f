// Package bootstrap writes the bootstraps proxies start with: Envoy's (for
// a sidecar or an east-west gateway) and grpc-go's (proxyless), which
// `horizon bootstrap` prints. A bootstrap is the proxy's half of Horizon's
// contracts, so it lives beside the resources it must agree with: the node
// metadata it declares is what xds.ParseNode reads (CLUSTER_ID, ROLE, ...),
// the secrets it declares are the ones xds's resources reference
// (xds.SecretDefault and xds.SecretRootCA, static or over SDS through
// xds.SDSCluster), the certificate provider instance is
// xds.CertProviderInstance, and ADS goes through its static cluster
// XDSCluster. contract_test.go holds it to that.
//
// Outside the pipeline's flow (nothing here runs in `horizon serve`), it
// takes values and returns documents: flags and files are the caller's.
package bootstrap

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/horizonmesh/horizon/xds"
)

// Proxy is the node-metadata contract a bootstrap carries: who the proxy
// is, as xds.ParseNode reads it back.
type Proxy struct {
	ID, Role, Cluster, Network, Namespace, ServiceAccount string
	Region, Zone, SubZone                                 string
	Labels                                                map[string]string
}

// Metadata is the node metadata: CLUSTER_ID, ROLE, NAMESPACE,
// SERVICE_ACCOUNT, and NETWORK and LABELS when set (xds.Meta*).
func (p Proxy) Metadata() map[string]any {
	m := map[string]any{
		xds.MetaClusterID: p.Cluster, xds.MetaRole: p.Role,
		xds.MetaNamespace: p.Namespace, xds.MetaServiceAccount: p.ServiceAccount,
	}
	if p.Network != "" {
		m[xds.MetaNetwork] = p.Network
	}
	if len(p.Labels) > 0 {
		labels := map[string]any{}
		for k, v := range p.Labels {
			labels[k] = v
		}
		m[xds.MetaLabels] = labels
	}
	return m
}

// Locality is the node's locality, nil when none is set.
func (p Proxy) Locality() *core.Locality {
	if p.Region == "" && p.Zone == "" && p.SubZone == "" {
		return nil
	}
	return &core.Locality{Region: p.Region, Zone: p.Zone, SubZone: p.SubZone}
}

// Node is the xDS node a proxy with this identity sends: the one Envoy
// writes into its bootstrap.
func (p Proxy) Node() (*core.Node, error) {
	meta, err := structpb.NewStruct(p.Metadata())
	if err != nil {
		return nil, err
	}
	return &core.Node{Id: p.ID, Cluster: p.Cluster, Metadata: meta, Locality: p.Locality()}, nil
}

// Environment variables the defaults of `horizon bootstrap` read. In
// Kubernetes the downward API sets them (fieldRef metadata.name,
// metadata.namespace, status.podIP; see examples/kubernetes).
const (
	EnvPodName      = "POD_NAME"
	EnvPodNamespace = "POD_NAMESPACE"
	EnvPodIP        = "POD_IP"
)

// Host is what the defaults of a bootstrap read from where it is made.
type Host struct {
	Getenv   func(string) string
	Hostname func() (string, error)
	Random   io.Reader
}

// OSHost is the machine the bootstrap is made on.
var OSHost = Host{Getenv: os.Getenv, Hostname: os.Hostname, Random: rand.Reader}

// DefaultNodeID is the node id of a proxy whose bootstrap has no --id. It is
// unique per proxy, as Horizon's logs, debug pages and `horizon view` name a
// proxy by it:
//
//	<role>~<ip>~<name>.<namespace>~<cluster>
//
// This is Istio's form (sidecar~<pod IP>~<pod>.<ns>~<ns>.svc.cluster.local)
// with the member cluster as the last field, since a ClusterSet has the same
// namespace, and the same StatefulSet pod names, in many clusters. name is
// the pod's name (POD_NAME), unique in its namespace and cluster; ip is
// POD_IP, empty when unset. Without POD_NAME, name is the host name (HOSTNAME,
// else the kernel's) and a random suffix: every proxy on a VM, and every pod
// with hostNetwork on a node, shares its host name. Such an id changes each
// time the bootstrap is made; pass --id for a stable one.
func DefaultNodeID(p Proxy, h Host) (string, error) {
	ip := h.Getenv(EnvPodIP)
	if ip != "" && net.ParseIP(ip) == nil {
		return "", fmt.Errorf("%s=%q is not an IP address", EnvPodIP, ip)
	}
	name := h.Getenv(EnvPodName)
	if name == "" {
		name = h.Getenv("HOSTNAME")
		if name == "" {
			var err error
			if name, err = h.Hostname(); err != nil {
				return "", fmt.Errorf("no --id, no %s and no host name: %w", EnvPodName, err)
			}
		}
		suffix := make([]byte, 4)
		if _, err := io.ReadFull(h.Random, suffix); err != nil {
			return "", fmt.Errorf("node id suffix: %w", err)
		}
		name += "-" + hex.EncodeToString(suffix)
	}
	return p.Role + "~" + ip + "~" + name + "." + p.Namespace + "~" + p.Cluster, nil
}

// Defaults of `horizon bootstrap`.
const (
	// DefaultCertDir is where `horizon agent` writes a workload's SVID files.
	DefaultCertDir = "/etc/horizon/certs"
	// DefaultSDSSocket is the SPIRE agent's socket in SPIRE's Kubernetes
	// examples; its SDS server serves the SVID as "default" and the bundle
	// as "ROOTCA" (default_svid_name, default_bundle_name).
	DefaultSDSSocket = "/run/spire/sockets/agent.sock"
	// certRefresh is how often grpc-go's file_watcher provider rereads the
	// certificate files.
	certRefresh = "60s"
)

// SVIDSource is where a proxy finds its SVID and trust bundle.
type SVIDSource struct {
	Provider  xds.SVIDProvider
	CertDir   string // SVIDFromAgent, and always for proxyless
	SDSSocket string // SVIDFromSPIRE
}

// Server is the Horizon endpoint a bootstrap points at: the plaintext
// port, or the mutual-TLS port. Envoy checks Horizon's certificate against
// its SPIFFE ID, ID; proxyless gRPC cannot (see GRPC).
type Server struct {
	Host string
	Port uint32
	MTLS bool
	ID   spiffeid.ID // with MTLS, Envoy only
	// MaxReceiveBytes is the largest xDS message Envoy accepts from Horizon
	// (0: DefaultEnvoyMaxReceiveBytes). Envoy only: grpc-go's limit is
	// fixed (GRPCMaxReceiveBytes).
	MaxReceiveBytes uint32
}

// Config is everything a bootstrap says: the proxy, where Horizon is, where
// the proxy's SVID comes from, Envoy's admin port and a gateway's limits.
type Config struct {
	Proxy     Proxy
	Server    Server
	SVIDs     SVIDSource
	AdminPort uint32
	Gateway   GatewayLimits
}

// Render renders the bootstrap of cfg.Proxy.Role as `horizon bootstrap`
// prints it, canonical JSON: grpc-go's bootstrap for proxyless, Envoy's for
// a sidecar or a gateway.
func Render(cfg Config) ([]byte, error) {
	var doc []byte
	var err error
	switch xds.Role(cfg.Proxy.Role) {
	case xds.Proxyless:
		if doc, err = GRPC(cfg.Proxy, cfg.Server, cfg.SVIDs.CertDir); err != nil {
			return nil, err
		}
	case xds.Sidecar, xds.Gateway:
		b, err := Envoy(cfg.Proxy, cfg.Server, cfg.SVIDs, cfg.AdminPort, cfg.Gateway)
		if err != nil {
			return nil, err
		}
		if doc, err = (protojson.MarshalOptions{UseProtoNames: true}).Marshal(b); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("bootstrap: role %q: want sidecar, gateway or proxyless", cfg.Proxy.Role)
	}
	if doc, err = CanonicalJSON(doc); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	return doc, nil
}

// CanonicalJSON re-encodes a JSON document in one canonical form: object
// keys sorted, two-space indentation, no HTML escaping, one trailing
// newline. The same document always gives the same bytes, whichever build of
// horizon prints it; protojson's own output does not, as it varies its
// whitespace from build to build on purpose. Numbers are copied as written.
func CanonicalJSON(doc []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("re-encode: %w", err)
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("re-encode: %w", err)
	}
	return out.Bytes(), nil
}
