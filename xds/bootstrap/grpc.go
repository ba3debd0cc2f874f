package bootstrap

import (
	"encoding/json"
	"net"
	"path/filepath"
	"strconv"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/xds"
)

// EnvGRPCSPIFFE is the environment variable that turns on grpc-go's SPIFFE
// verification (gRFC A87, still experimental): a proxyless client on
// Horizon's mutual-TLS port needs it set to true. See GRPC.
const EnvGRPCSPIFFE = "GRPC_EXPERIMENTAL_XDS_MTLS_SPIFFE"

// GRPC renders grpc-go's xDS bootstrap (GRPC_XDS_BOOTSTRAP): the
// node, Horizon's address, the certificate provider instance that Horizon's
// TLS configuration names (grpc-go's file_watcher over the SVID files in
// certDir), and the name template of an xDS-enabled server's listener.
//
// On the plaintext port the xDS channel is insecure. On the mutual-TLS port
// it has "tls" channel credentials (gRFC A65): the client presents its SVID
// from certDir, as Horizon's port asks, and checks Horizon's certificate
// with the same file_watcher configuration. Horizon's certificate is an
// X509-SVID: its one name is a SPIFFE ID (a URI), no DNS name, so gRPC's
// usual check of the server's host name against ca_certificate_file fails
// on it. The check that works is gRFC A87's: spiffe_trust_bundle_map_file
// (certs.BundleMapFile, which the agent writes beside the SVID) verifies the
// chain against the bundle of the certificate's trust domain, and no host
// name. grpc-go reads that field only with EnvGRPCSPIFFE=true; without it
// the channel fails closed (the host name check), never falls back to
// plaintext. Neither check pins Horizon's SPIFFE ID: grpc-go has no SAN
// matcher for the xDS channel, so what the client verifies is that the
// server holds an SVID of a trust domain in certDir's bundle (Envoy, in
// contrast, pins Server.ID).
func GRPC(p Proxy, server Server, certDir string) ([]byte, error) {
	node := map[string]any{"id": p.ID, "cluster": p.Cluster, "metadata": p.Metadata()}
	if l := p.Locality(); l != nil {
		node["locality"] = map[string]string{"region": l.Region, "zone": l.Zone, "sub_zone": l.SubZone}
	}
	creds := map[string]any{"type": "insecure"}
	if server.MTLS {
		tlsConfig := svidFiles(certDir)
		tlsConfig["spiffe_trust_bundle_map_file"] = filepath.Join(certDir, certs.BundleMapFile)
		creds = map[string]any{"type": "tls", "config": tlsConfig}
	}
	doc := map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri":      net.JoinHostPort(server.Host, strconv.FormatUint(uint64(server.Port), 10)),
			"channel_creds":   []any{creds},
			"server_features": []string{"xds_v3"},
		}},
		"node": node,
		"certificate_providers": map[string]any{
			xds.CertProviderInstance: map[string]any{
				"plugin_name": "file_watcher",
				"config":      svidFiles(certDir),
			},
		},
		"server_listener_resource_name_template": xds.ServerListenerPrefix + "%s",
	}
	return json.Marshal(doc)
}

// svidFiles is the file_watcher configuration of the SVID files in certDir.
func svidFiles(certDir string) map[string]string {
	return map[string]string{
		"certificate_file":    filepath.Join(certDir, certs.SVIDFile),
		"private_key_file":    filepath.Join(certDir, certs.SVIDKeyFile),
		"ca_certificate_file": filepath.Join(certDir, certs.BundleFile),
		"refresh_interval":    certRefresh,
	}
}
