package bootstrap

import (
	"encoding/json"
	"maps"
	"reflect"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	grpcxds "google.golang.org/grpc/xds"

	"github.com/horizonmesh/horizon/xds"
)

// grpcBootstrap is the part of grpc-go's bootstrap the tests read.
type grpcBootstrap struct {
	XDSServers []struct {
		ServerURI    string `json:"server_uri"`
		ChannelCreds []struct {
			Type   string            `json:"type"`
			Config map[string]string `json:"config"`
		} `json:"channel_creds"`
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

// grpcOf renders a proxyless bootstrap that grpc-go's own parser accepts
// (channel credentials and certificate provider configuration included) and
// decodes it.
func grpcOf(t *testing.T, cfg Config) grpcBootstrap {
	t.Helper()
	out := render(t, cfg)
	if _, err := grpcxds.NewXDSResolverWithConfigForTesting(out); err != nil {
		t.Fatalf("grpc-go rejects the bootstrap: %v\n%s", err, out)
	}
	var doc grpcBootstrap
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// svidFileConfig is the file_watcher configuration of the SVID files in
// the default certificate directory.
var svidFileConfig = map[string]string{
	"certificate_file": "/etc/horizon/certs/svid.crt", "private_key_file": "/etc/horizon/certs/svid.key",
	"ca_certificate_file": "/etc/horizon/certs/bundle.crt", "refresh_interval": certRefresh,
}

func TestGRPCBootstrap(t *testing.T) {
	cfg := config("proxyless")
	cfg.Proxy.ID, cfg.Proxy.Zone, cfg.Proxy.Region = "p1", "z", "r"
	doc := grpcOf(t, cfg)
	if len(doc.XDSServers) != 1 || doc.XDSServers[0].ServerURI != "127.0.0.1:15010" {
		t.Errorf("xds_servers %+v", doc.XDSServers)
	}
	if creds := doc.XDSServers[0].ChannelCreds; len(creds) != 1 || creds[0].Type != "insecure" || creds[0].Config != nil {
		t.Errorf("channel_creds %+v on the plaintext port, want insecure alone", creds)
	}
	if doc.Node.ID != "p1" || doc.Node.Metadata["CLUSTER_ID"] != "east-1" || doc.Node.Metadata["ROLE"] != "proxyless" || doc.Node.Locality["zone"] != "z" {
		t.Errorf("node %+v", doc.Node)
	}
	provider := doc.CertificateProviders[xds.CertProviderInstance]
	if provider.PluginName != "file_watcher" || !maps.Equal(provider.Config, svidFileConfig) {
		t.Errorf("certificate provider %q: %+v, want file_watcher with %v", xds.CertProviderInstance, provider, svidFileConfig)
	}
	if got, want := doc.ServerListenerTemplate, "grpc/server?xds.resource.listening_address=%s"; got != want {
		t.Errorf("server_listener_resource_name_template %q, want %q", got, want)
	}
}

// TestGRPCBootstrapMTLS: on Horizon's mutual-TLS port the xDS channel has
// gRFC A65's "tls" channel credentials, the only ones: the client's SVID
// from the certificate directory, Horizon's certificate checked against the
// bundle, by trust domain through the SPIFFE bundle map (gRFC A87) where
// grpc-go reads it. There is no insecure fallback. The data plane's
// certificate provider is what it is on the plaintext port.
func TestGRPCBootstrapMTLS(t *testing.T) {
	cfg := config("proxyless")
	cfg.Server = Server{Host: "horizon.horizon-system.svc", Port: 15012, MTLS: true, ID: spiffeid.RequireFromString("spiffe://cluster.local/ns/horizon-system/sa/horizon")}
	doc := grpcOf(t, cfg)
	if len(doc.XDSServers) != 1 || doc.XDSServers[0].ServerURI != "horizon.horizon-system.svc:15012" {
		t.Fatalf("xds_servers %+v", doc.XDSServers)
	}
	want := maps.Clone(svidFileConfig)
	want["spiffe_trust_bundle_map_file"] = "/etc/horizon/certs/bundle.json"
	creds := doc.XDSServers[0].ChannelCreds
	if len(creds) != 1 || creds[0].Type != "tls" || !maps.Equal(creds[0].Config, want) {
		t.Errorf("channel_creds %+v, want tls alone with %v", creds, want)
	}
	plain := config("proxyless")
	if got, want := doc.CertificateProviders, grpcOf(t, plain).CertificateProviders; !reflect.DeepEqual(got, want) {
		t.Errorf("certificate providers %+v on the mutual-TLS port, %+v on the plaintext one", got, want)
	}

	// IPv6: the server URI brackets the address.
	cfg.Server.Host = "fd00::10"
	if got := grpcOf(t, cfg).XDSServers[0].ServerURI; got != "[fd00::10]:15012" {
		t.Errorf("server_uri %q", got)
	}
}
