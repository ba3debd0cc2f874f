package bootstrap

import (
	"encoding/json"
	"testing"

	grpcxds "google.golang.org/grpc/xds"

	"github.com/horizonmesh/horizon/xds"
)

func TestGRPCBootstrap(t *testing.T) {
	cfg := config("proxyless")
	cfg.Proxy.ID, cfg.Proxy.Zone, cfg.Proxy.Region = "p1", "z", "r"
	out := render(t, cfg)
	var doc struct {
		XDSServers []struct {
			ServerURI      string   `json:"server_uri"`
			ServerFeatures []string `json:"server_features"`
		} `json:"xds_servers"`
		Node struct {
			ID       string            `json:"id"`
			Metadata map[string]string `json:"metadata"`
			Locality map[string]string `json:"locality"`
		} `json:"node"`
		CertificateProviders map[string]struct {
			PluginName string            `json:"plugin_name"`
			Config     map[string]string `json:"config"`
		} `json:"certificate_providers"`
		ServerListenerTemplate string `json:"server_listener_resource_name_template"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.XDSServers) != 1 || doc.XDSServers[0].ServerURI != "127.0.0.1:15010" {
		t.Errorf("xds_servers %+v", doc.XDSServers)
	}
	if doc.Node.ID != "p1" || doc.Node.Metadata["CLUSTER_ID"] != "east-1" || doc.Node.Metadata["ROLE"] != "proxyless" || doc.Node.Locality["zone"] != "z" {
		t.Errorf("node %+v", doc.Node)
	}
	provider := doc.CertificateProviders[xds.CertProviderInstance]
	want := map[string]string{
		"certificate_file": "/etc/horizon/certs/svid.crt", "private_key_file": "/etc/horizon/certs/svid.key",
		"ca_certificate_file": "/etc/horizon/certs/bundle.crt", "refresh_interval": certRefresh,
	}
	if provider.PluginName != "file_watcher" || len(provider.Config) != len(want) {
		t.Errorf("certificate provider %q: %+v", xds.CertProviderInstance, provider)
	}
	for k, v := range want {
		if provider.Config[k] != v {
			t.Errorf("certificate provider config %s = %q, want %q", k, provider.Config[k], v)
		}
	}
	if got, want := doc.ServerListenerTemplate, "grpc/server?xds.resource.listening_address=%s"; got != want {
		t.Errorf("server_listener_resource_name_template %q, want %q", got, want)
	}
	// grpc-go's own parser accepts it, certificate provider config included.
	if _, err := grpcxds.NewXDSResolverWithConfigForTesting(out); err != nil {
		t.Errorf("grpc-go rejects the bootstrap: %v\n%s", err, out)
	}
}
