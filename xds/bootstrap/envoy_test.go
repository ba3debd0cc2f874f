package bootstrap

import (
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpopts "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/horizonmesh/horizon/xds"
	"github.com/horizonmesh/horizon/xds/server"
)

// config is what `horizon bootstrap --id n1 --cluster east-1 --role <role>`
// renders: the flags' defaults.
func config(role string) Config {
	return Config{
		Proxy:     Proxy{ID: "n1", Role: role, Cluster: "east-1", Namespace: "default", ServiceAccount: "default"},
		Server:    Server{Host: "127.0.0.1", Port: 15010, ID: spiffeid.RequireFromString("spiffe://cluster.local/ns/horizon-system/sa/horizon")},
		SVIDs:     SVIDSource{Provider: xds.SVIDFromAgent, CertDir: DefaultCertDir, SDSSocket: DefaultSDSSocket},
		AdminPort: 15000,
		Gateway:   GatewayLimits{MaxConnections: DefaultMaxDownstreamConnections, ReadinessPort: DefaultReadinessPort},
	}
}

// envoyOf renders an Envoy bootstrap and returns it as Envoy reads it:
// parsed from the printed JSON and validated.
func envoyOf(t *testing.T, cfg Config) *bootstrapv3.Bootstrap {
	t.Helper()
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(render(t, cfg), &b); err != nil {
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
		cfg := config("sidecar")
		cfg.SVIDs.CertDir = "/var/run/certs"
		b := envoyOf(t, cfg)
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
		cfg := config("sidecar")
		cfg.SVIDs.Provider, cfg.SVIDs.SDSSocket = xds.SVIDFromSPIRE, "/run/spire/agent.sock"
		b := envoyOf(t, cfg)
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
			cfg := config("sidecar")
			cfg.SVIDs.Provider = xds.SVIDProvider(provider)
			cfg.Server = Server{Host: "horizon.horizon-system.svc", Port: 15012, MTLS: true, ID: spiffeid.RequireFromString("spiffe://example.org/ns/horizon-system/sa/horizon")}
			b := envoyOf(t, cfg)
			c := staticCluster(b, XDSCluster)
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
	// Without MTLS the connection is plaintext.
	if ts := staticCluster(envoyOf(t, config("sidecar")), XDSCluster).GetTransportSocket(); ts != nil {
		t.Errorf("plaintext xDS cluster has transport socket %v", ts)
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
// enforcement (server.KeepaliveMinTime), or grpc-go answers GOAWAY
// too_many_pings and closes the connection.
func TestBootstrapXDSKeepalive(t *testing.T) {
	for _, provider := range []string{"agent", "spire"} {
		cfg := config("sidecar")
		cfg.SVIDs.Provider = xds.SVIDProvider(provider)
		b := envoyOf(t, cfg)
		c := staticCluster(b, XDSCluster)
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
		if interval < server.KeepaliveMinTime || timeout <= 0 || timeout >= interval {
			t.Errorf("%s: HTTP/2 keepalive interval %v timeout %v: want an interval of at least %v (Horizon's enforcement) and a shorter, positive timeout",
				provider, interval, timeout, server.KeepaliveMinTime)
		}
		// The SPIRE agent's SDS cluster is a Unix socket: no TCP keepalive.
		if sds := staticCluster(b, xds.SDSCluster); sds.GetUpstreamConnectionOptions() != nil {
			t.Errorf("SDS cluster over a Unix socket has connection options %v", sds.GetUpstreamConnectionOptions())
		}
	}
}
