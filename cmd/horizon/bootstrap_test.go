package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpopts "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	grpcxds "google.golang.org/grpc/xds"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/horizonmesh/horizon/xds"
)

func TestEnvoyBootstrap(t *testing.T) {
	for _, role := range []string{"sidecar", "gateway"} {
		t.Run(role, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := run(t.Context(), []string{"bootstrap", "--role", role, "--id", "n1", "--cluster", "east-1", "--network", "east",
				"--namespace", "demo", "--service-account", "echo", "--region", "us-east", "--zone", "us-east-1a",
				"--xds-address", "horizon.horizon-system.svc:15010"}, &out, &errb)
			if err != nil {
				t.Fatalf("%v: %s", err, errb.String())
			}
			var b bootstrapv3.Bootstrap
			if err := protojson.Unmarshal(out.Bytes(), &b); err != nil {
				t.Fatalf("output is not an Envoy bootstrap: %v", err)
			}
			if err := b.ValidateAll(); err != nil {
				t.Fatal(err)
			}
			md := b.GetNode().GetMetadata().GetFields()
			for k, want := range map[string]string{"CLUSTER_ID": "east-1", "NETWORK": "east", "NAMESPACE": "demo", "SERVICE_ACCOUNT": "echo", "ROLE": role} {
				if got := md[k].GetStringValue(); got != want {
					t.Errorf("metadata %s = %q, want %q", k, got, want)
				}
			}
			if b.GetNode().GetLocality().GetZone() != "us-east-1a" || b.GetNode().GetId() != "n1" {
				t.Errorf("node %v", b.GetNode())
			}
			if !b.GetDynamicResources().GetAdsConfig().GetSetNodeOnFirstMessageOnly() {
				t.Error("ADS config does not send the node once")
			}
			// A DNS name for the xDS server needs a DNS cluster.
			for _, c := range b.GetStaticResources().GetClusters() {
				if c.GetName() == xdsCluster && c.GetType().String() != "STRICT_DNS" {
					t.Errorf("xds cluster type %v for a host name", c.GetType())
				}
			}
		})
	}
}

// envoyBootstrapOf runs `horizon bootstrap` and returns its validated output.
func envoyBootstrapOf(t *testing.T, args ...string) *bootstrapv3.Bootstrap {
	t.Helper()
	var out, errb bytes.Buffer
	if err := run(t.Context(), append([]string{"bootstrap", "--id", "n1", "--cluster", "east-1"}, args...), &out, &errb); err != nil {
		t.Fatalf("%v: %s", err, errb.String())
	}
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(out.Bytes(), &b); err != nil {
		t.Fatalf("output is not an Envoy bootstrap: %v", err)
	}
	if err := b.ValidateAll(); err != nil {
		t.Fatal(err)
	}
	return &b
}

func staticCluster(b *bootstrapv3.Bootstrap, name string) *clusterv3.Cluster {
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == name {
			return c
		}
	}
	return nil
}

// TestEnvoyBootstrapSVIDs: with the agent, the SVID and bundle are static
// secrets read from the certificate directory, which Envoy watches; with
// SPIRE they come over SDS from the SPIRE agent's socket.
func TestEnvoyBootstrapSVIDs(t *testing.T) {
	t.Run("agent", func(t *testing.T) {
		b := envoyBootstrapOf(t, "--cert-dir", "/var/run/certs")
		secrets := map[string]*tlsv3.Secret{}
		for _, s := range b.GetStaticResources().GetSecrets() {
			secrets[s.GetName()] = s
		}
		cert := secrets[xds.SecretDefault].GetTlsCertificate()
		if cert.GetCertificateChain().GetFilename() != "/var/run/certs/svid.crt" || cert.GetPrivateKey().GetFilename() != "/var/run/certs/svid.key" ||
			cert.GetWatchedDirectory().GetPath() != "/var/run/certs" {
			t.Errorf("secret %s: %v", xds.SecretDefault, cert)
		}
		roots := secrets[xds.SecretRootCA].GetValidationContext()
		if roots.GetTrustedCa().GetFilename() != "/var/run/certs/bundle.crt" || roots.GetWatchedDirectory().GetPath() != "/var/run/certs" {
			t.Errorf("secret %s: %v", xds.SecretRootCA, roots)
		}
		if len(secrets) != 2 || staticCluster(b, xds.SDSCluster) != nil {
			t.Errorf("secrets %v, SDS cluster %v: want the two static secrets and no SDS", secrets, staticCluster(b, xds.SDSCluster))
		}
	})
	t.Run("spire", func(t *testing.T) {
		b := envoyBootstrapOf(t, "--svid-provider", "spire", "--sds-socket", "/run/spire/agent.sock")
		sds := staticCluster(b, xds.SDSCluster)
		pipe := sds.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetPipe()
		if pipe.GetPath() != "/run/spire/agent.sock" {
			t.Errorf("SDS cluster %v, want the SPIRE agent's socket", sds)
		}
		if n := len(b.GetStaticResources().GetSecrets()); n != 0 {
			t.Errorf("%d static secrets under SPIRE", n)
		}
	})
}

// TestEnvoyBootstrapMTLS: on Horizon's mTLS port the xDS cluster presents the
// proxy's SVID and checks Horizon's, from the same secrets as the mesh.
func TestEnvoyBootstrapMTLS(t *testing.T) {
	for _, provider := range []string{"agent", "spire"} {
		t.Run(provider, func(t *testing.T) {
			b := envoyBootstrapOf(t, "--svid-provider", provider, "--mtls-address", "horizon.horizon-system.svc:15012", "--trust-domain", "example.org")
			c := staticCluster(b, xdsCluster)
			sa := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
			if sa.GetAddress() != "horizon.horizon-system.svc" || sa.GetPortValue() != 15012 {
				t.Errorf("xds cluster address %v", sa)
			}
			var up tlsv3.UpstreamTlsContext
			if c.GetTransportSocket().GetName() != "envoy.transport_sockets.tls" {
				t.Fatalf("xds cluster transport socket %v", c.GetTransportSocket())
			}
			if err := c.GetTransportSocket().GetTypedConfig().UnmarshalTo(&up); err != nil {
				t.Fatal(err)
			}
			common := up.GetCommonTlsContext()
			v := common.GetCombinedValidationContext()
			secrets := []*tlsv3.SdsSecretConfig{common.GetTlsCertificateSdsSecretConfigs()[0], v.GetValidationContextSdsSecretConfig()}
			if secrets[0].GetName() != xds.SecretDefault || secrets[1].GetName() != xds.SecretRootCA {
				t.Errorf("secrets %v", secrets)
			}
			for _, s := range secrets {
				if got := s.GetSdsConfig() != nil; got != (provider == "spire") {
					t.Errorf("%s: secret %s sds_config %v", provider, s.GetName(), s.GetSdsConfig())
				}
			}
			sans := v.GetDefaultValidationContext().GetMatchTypedSubjectAltNames()
			if len(sans) != 1 || sans[0].GetMatcher().GetExact() != "spiffe://example.org/ns/horizon-system/sa/horizon" {
				t.Errorf("Horizon's identity is checked with %v", sans)
			}
		})
	}
	// Without --mtls-address the connection is plaintext.
	if ts := staticCluster(envoyBootstrapOf(t), xdsCluster).GetTransportSocket(); ts != nil {
		t.Errorf("plaintext xDS cluster has transport socket %v", ts)
	}
}

func TestGRPCBootstrap(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(t.Context(), []string{"bootstrap", "--role", "proxyless", "--id", "p1", "--cluster", "east-1", "--zone", "z", "--region", "r"}, &out, &errb); err != nil {
		t.Fatalf("%v: %s", err, errb.String())
	}
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
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
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
	if _, err := grpcxds.NewXDSResolverWithConfigForTesting(out.Bytes()); err != nil {
		t.Errorf("grpc-go rejects the bootstrap: %v\n%s", err, out.String())
	}
	// grpc-go's TLS channel credentials check a DNS name an SVID lacks.
	if err := run(t.Context(), []string{"bootstrap", "--role", "proxyless", "--cluster", "east-1", "--mtls-address", "h:15012"}, &out, &errb); err == nil {
		t.Error("proxyless bootstrap accepted --mtls-address")
	}
}

func TestBootstrapRejects(t *testing.T) {
	for _, args := range [][]string{
		{"bootstrap"},
		{"bootstrap", "--cluster", "c", "--role", "router"},
		{"bootstrap", "--cluster", "c", "--xds-address", "nohost"},
		{"bootstrap", "--cluster", "c", "--svid-provider", "vault"},
		{"bootstrap", "--cluster", "c", "--cert-dir", "certs"},
		{"bootstrap", "--cluster", "c", "--mtls-address", "h:15012", "--xds-server-id", "spiffe://other.org/ns/horizon-system/sa/horizon"},
	} {
		var out, errb bytes.Buffer
		if err := run(t.Context(), args, &out, &errb); err == nil || out.Len() != 0 {
			t.Errorf("%s: err %v, output %q", strings.Join(args, " "), err, out.String())
		}
	}
}

// TestBootstrapLabels: --label becomes node metadata LABELS, which Horizon
// reads back as the proxy's labels.
func TestBootstrapLabels(t *testing.T) {
	b := envoyBootstrapOf(t, "--role", "sidecar", "--namespace", "demo", "--service-account", "echo",
		"--label", "tier=web", "--label", "track=canary")
	p, err := xds.ParseNode(b.GetNode())
	if err != nil {
		t.Fatal(err)
	}
	if p.Labels["tier"] != "web" || p.Labels["track"] != "canary" || len(p.Labels) != 2 {
		t.Fatalf("labels %v", p.Labels)
	}
	var out, errb bytes.Buffer
	if err := run(t.Context(), []string{"bootstrap", "--cluster", "east-1", "--label", "novalue"}, &out, &errb); err == nil {
		t.Error("--label without = accepted")
	}
}

// TestBootstrapOut: --out writes the same bytes as standard output, to a file.
func TestBootstrapOut(t *testing.T) {
	args := []string{"--role", "proxyless", "--id", "p1", "--cluster", "east-1"}
	path := filepath.Join(t.TempDir(), "bootstrap.json")
	var out, errb bytes.Buffer
	if err := run(t.Context(), append([]string{"bootstrap", "--out", path}, args...), &out, &errb); err != nil {
		t.Fatalf("%v: %s", err, errb.String())
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if out.Len() != 0 || !bytes.Equal(got, runBootstrap(t, args)) {
		t.Errorf("--out wrote %q and printed %q; want the standard output's bytes in the file alone", got, out.String())
	}
}

// TestBootstrapXDSKeepalive: the xDS connection has TCP keepalive and HTTP/2
// PING keepalive, so Envoy notices a Horizon that vanished without closing
// the connection (a lost node, a NAT or load balancer that dropped the flow)
// and reconnects, to another replica. Without them an idle connection to a
// dead peer is never noticed.
//
//   - Cluster.upstream_connection_options.tcp_keepalive (core.v3.TcpKeepalive:
//     probes, time, interval; Linux defaults 9, 7200 s, 75 s):
//     https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/cluster/v3/cluster.proto#envoy-v3-api-msg-config-cluster-v3-upstreamconnectionoptions
//     https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/address.proto#envoy-v3-api-msg-config-core-v3-tcpkeepalive
//   - Http2ProtocolOptions.connection_keepalive (core.v3.KeepaliveSettings:
//     a PING each interval, plus up to 15% jitter by default; the connection
//     is aborted when no frame arrives within timeout):
//     https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/protocol.proto#envoy-v3-api-msg-config-core-v3-keepalivesettings
//     set in the cluster's typed_extension_protocol_options
//     envoy.extensions.upstreams.http.v3.HttpProtocolOptions explicit_http_config:
//     https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/upstreams/http/v3/http_protocol_options.proto
//
// The PING interval must not be shorter than Horizon's gRPC keepalive
// enforcement (xds.KeepaliveMinTime), or grpc-go answers GOAWAY
// too_many_pings and closes the connection.
func TestBootstrapXDSKeepalive(t *testing.T) {
	for _, provider := range []string{"agent", "spire"} {
		b := envoyBootstrapOf(t, "--svid-provider", provider)
		c := staticCluster(b, xdsCluster)
		ka := c.GetUpstreamConnectionOptions().GetTcpKeepalive()
		if ka.GetKeepaliveTime().GetValue() == 0 || ka.GetKeepaliveInterval().GetValue() == 0 || ka.GetKeepaliveProbes().GetValue() == 0 {
			t.Errorf("%s: xds cluster TCP keepalive %v: want time, interval and probes set", provider, ka)
		}
		var opts httpopts.HttpProtocolOptions
		if err := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].UnmarshalTo(&opts); err != nil {
			t.Fatal(err)
		}
		h2 := opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions().GetConnectionKeepalive()
		interval, timeout := h2.GetInterval().AsDuration(), h2.GetTimeout().AsDuration()
		if interval < xds.KeepaliveMinTime || timeout <= 0 || timeout >= interval {
			t.Errorf("%s: HTTP/2 keepalive interval %v timeout %v: want an interval of at least %v (Horizon's enforcement) and a shorter, positive timeout",
				provider, interval, timeout, xds.KeepaliveMinTime)
		}
		// The SPIRE agent's SDS cluster is a Unix socket: no TCP keepalive.
		if sds := staticCluster(b, xds.SDSCluster); sds.GetUpstreamConnectionOptions() != nil {
			t.Errorf("SDS cluster over a Unix socket has connection options %v", sds.GetUpstreamConnectionOptions())
		}
	}
}
