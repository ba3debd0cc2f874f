package bootstrap

import (
	"encoding/json"
	"path/filepath"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/xds"
)

// GRPC renders grpc-go's xDS bootstrap (GRPC_XDS_BOOTSTRAP): the
// node, Horizon's address, the certificate provider instance that Horizon's
// TLS configuration names (grpc-go's file_watcher over the SVID files in
// certDir), and the name template of an xDS-enabled server's listener.
func GRPC(p Proxy, xdsAddress, certDir string) ([]byte, error) {
	node := map[string]any{"id": p.ID, "cluster": p.Cluster, "metadata": p.Metadata()}
	if l := p.Locality(); l != nil {
		node["locality"] = map[string]string{"region": l.Region, "zone": l.Zone, "sub_zone": l.SubZone}
	}
	doc := map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri":      xdsAddress,
			"channel_creds":   []any{map[string]string{"type": "insecure"}},
			"server_features": []string{"xds_v3"},
		}},
		"node": node,
		"certificate_providers": map[string]any{
			xds.CertProviderInstance: map[string]any{
				"plugin_name": "file_watcher",
				"config": map[string]string{
					"certificate_file":    filepath.Join(certDir, certs.SVIDFile),
					"private_key_file":    filepath.Join(certDir, certs.SVIDKeyFile),
					"ca_certificate_file": filepath.Join(certDir, certs.BundleFile),
					"refresh_interval":    certRefresh,
				},
			},
		},
		"server_listener_resource_name_template": xds.ServerListenerPrefix + "%s",
	}
	return json.Marshal(doc)
}
