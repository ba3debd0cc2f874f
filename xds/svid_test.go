package xds

import (
	"strings"
	"testing"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbac "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
)

// TestSidecarSVIDProvider: under the agent provider a sidecar names its
// secrets only (Envoy takes them from the bootstrap's static secrets); under
// SPIRE it fetches them over SDS from the SPIRE agent's cluster. Either way
// clusters check the destination's SPIFFE IDs and the inbound listener
// requires a client certificate from the trust domain.
func TestSidecarSVIDProvider(t *testing.T) {
	cs, g, _ := loadCase(t, "testdata/golden/sidecar-east-1.in.yaml")
	for _, provider := range []SVIDProvider{"", SVIDFromAgent, SVIDFromSPIRE} {
		t.Run(string(provider), func(t *testing.T) {
			res, err := Translate(cs, g, Policy{SVIDProvider: provider})
			if err != nil {
				t.Fatal(err)
			}
			if err := Check(res, cs, g); err != nil {
				t.Fatal(err)
			}
			checkSecret := func(where string, s *tlsv3.SdsSecretConfig, name string) {
				t.Helper()
				if s.GetName() != name {
					t.Errorf("%s: secret %q, want %q", where, s.GetName(), name)
				}
				sds := s.GetSdsConfig().GetApiConfigSource().GetGrpcServices()
				if provider == SVIDFromSPIRE {
					if len(sds) != 1 || sds[0].GetEnvoyGrpc().GetClusterName() != SDSCluster {
						t.Errorf("%s: secret %s: sds_config %v, want SDS from %s", where, name, s.GetSdsConfig(), SDSCluster)
					}
				} else if s.GetSdsConfig() != nil {
					t.Errorf("%s: secret %s has an sds_config under the agent provider: %v", where, name, s.GetSdsConfig())
				}
			}
			checkCommon := func(where string, c *tlsv3.CommonTlsContext) []*tlsv3.SubjectAltNameMatcher {
				t.Helper()
				if s := c.GetTlsCertificateSdsSecretConfigs(); len(s) != 1 {
					t.Fatalf("%s: %d certificate secrets", where, len(s))
				}
				checkSecret(where, c.GetTlsCertificateSdsSecretConfigs()[0], SecretDefault)
				v := c.GetCombinedValidationContext()
				checkSecret(where, v.GetValidationContextSdsSecretConfig(), SecretRootCA)
				return v.GetDefaultValidationContext().GetMatchTypedSubjectAltNames()
			}
			var meshClusters int
			for _, c := range res.Clusters {
				for _, m := range c.GetTransportSocketMatches() {
					if m.GetTransportSocket().GetName() != wellknown.TransportSocketTLS {
						continue
					}
					meshClusters++
					var up tlsv3.UpstreamTlsContext
					unpack(t, m.GetTransportSocket().GetTypedConfig().GetValue(), &up)
					sans := checkCommon(c.GetName(), up.GetCommonTlsContext())
					if len(sans) == 0 {
						t.Errorf("cluster %s checks no SAN", c.GetName())
					}
					for _, s := range sans {
						if s.GetSanType() != tlsv3.SubjectAltNameMatcher_URI || !strings.HasPrefix(s.GetMatcher().GetExact(), "spiffe://cluster.local/ns/") {
							t.Errorf("cluster %s: SAN matcher %v, want an exact SPIFFE ID", c.GetName(), s)
						}
					}
				}
			}
			if meshClusters == 0 {
				t.Fatal("no cluster with mutual TLS")
			}
			inbound := findListener(t, res.Listeners, VirtualInbound)
			var down tlsv3.DownstreamTlsContext
			unpack(t, inbound.GetFilterChains()[0].GetTransportSocket().GetTypedConfig().GetValue(), &down)
			if !down.GetRequireClientCertificate().GetValue() {
				t.Error("inbound listener does not require a client certificate")
			}
			sans := checkCommon("inbound", down.GetCommonTlsContext())
			if len(sans) != 1 || sans[0].GetSanType() != tlsv3.SubjectAltNameMatcher_URI || sans[0].GetMatcher().GetPrefix() != "spiffe://cluster.local/" {
				t.Errorf("inbound SAN matchers %v, want one URI prefix spiffe://cluster.local/", sans)
			}
		})
	}
	if _, err := Translate(cs, g, Policy{SVIDProvider: "vault"}); err == nil {
		t.Error("an unknown SVID provider was accepted")
	}
}

// TestProxylessMTLS: grpc-go's subset. Clusters of mesh workloads carry an
// UpstreamTlsContext from certificate provider instances with the
// destination's SPIFFE IDs (as match_subject_alt_names, which grpc-go reads);
// servers get a listener per listening address, requiring a client
// certificate and allowing only the trust domain through RBAC.
func TestProxylessMTLS(t *testing.T) {
	cs, g, _ := loadCase(t, "testdata/golden/proxyless-east-1.in.yaml")
	res, err := Translate(cs, g, Policy{})
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(res, cs, g); err != nil {
		t.Fatal(err)
	}
	for _, c := range res.Clusters {
		if len(c.GetTransportSocketMatches()) != 0 {
			t.Errorf("cluster %s has transport_socket_matches, which grpc-go rejects", c.GetName())
		}
		var up tlsv3.UpstreamTlsContext
		unpack(t, c.GetTransportSocket().GetTypedConfig().GetValue(), &up)
		common := up.GetCommonTlsContext()
		if common.GetTlsCertificateProviderInstance().GetInstanceName() != CertProviderInstance ||
			common.GetValidationContext().GetCaCertificateProviderInstance().GetInstanceName() != CertProviderInstance ||
			len(common.GetTlsCertificateSdsSecretConfigs()) != 0 {
			t.Errorf("cluster %s: TLS %v, want certificate provider instance %q for both identity and roots", c.GetName(), common, CertProviderInstance)
		}
		if up.GetSni() != c.GetName() {
			t.Errorf("cluster %s: SNI %q", c.GetName(), up.GetSni())
		}
		want := "spiffe://cluster.local/ns/demo/sa/echo"
		if strings.Contains(c.GetName(), "admin.demo") {
			want = "spiffe://cluster.local/ns/demo/sa/admin"
		}
		if sans := common.GetValidationContext().GetMatchSubjectAltNames(); len(sans) != 1 || sans[0].GetExact() != want {
			t.Errorf("cluster %s: SAN matchers %v, want exactly %s", c.GetName(), sans, want)
		}
	}

	// Servers listen on all addresses, on the target ports of the mesh
	// endpoints (10.0.1.2 serves grpc on 7071): one listener per port and
	// address family, however many pods serve it.
	for _, name := range []string{
		"grpc/server?xds.resource.listening_address=0.0.0.0:7071",
		"grpc/server?xds.resource.listening_address=[::]:7071",
		"grpc/server?xds.resource.listening_address=0.0.0.0:7070",
		"grpc/server?xds.resource.listening_address=[::]:7070",
	} {
		l := findListener(t, res.Listeners, name)
		checkServerListener(t, l)
	}
	for _, l := range res.Listeners {
		if strings.HasPrefix(l.GetName(), ServerListenerPrefix) {
			if !strings.Contains(l.GetName(), "=0.0.0.0:") && !strings.Contains(l.GetName(), "=[::]:") {
				t.Errorf("listener %s is per pod: views would grow with the pods", l.GetName())
			}
		}
	}
}

func checkServerListener(t *testing.T, l *listener.Listener) {
	t.Helper()
	if len(l.GetListenerFilters()) != 0 || l.GetUseOriginalDst().GetValue() || l.GetApiListener() != nil {
		t.Errorf("%s: not a grpc-go server listener", l.GetName())
	}
	host := l.GetAddress().GetSocketAddress().GetAddress()
	if want := strings.TrimPrefix(l.GetName(), ServerListenerPrefix); ServerListenerName(host, l.GetAddress().GetSocketAddress().GetPortValue()) != l.GetName() {
		t.Errorf("%s: address %v does not match %s", l.GetName(), l.GetAddress(), want)
	}
	if len(l.GetFilterChains()) != 1 {
		t.Fatalf("%s: %d filter chains", l.GetName(), len(l.GetFilterChains()))
	}
	fc := l.GetFilterChains()[0]
	if fc.GetFilterChainMatch() != nil {
		t.Errorf("%s: filter chain match %v (grpc-go ignores chains matching on TLS)", l.GetName(), fc.GetFilterChainMatch())
	}
	var down tlsv3.DownstreamTlsContext
	unpack(t, fc.GetTransportSocket().GetTypedConfig().GetValue(), &down)
	common := down.GetCommonTlsContext()
	if !down.GetRequireClientCertificate().GetValue() ||
		common.GetTlsCertificateProviderInstance().GetInstanceName() != CertProviderInstance ||
		common.GetValidationContext().GetCaCertificateProviderInstance().GetInstanceName() != CertProviderInstance ||
		len(common.GetValidationContext().GetMatchSubjectAltNames()) != 0 {
		t.Errorf("%s: downstream TLS %v", l.GetName(), &down)
	}
	var m hcm.HttpConnectionManager
	unpack(t, fc.GetFilters()[0].GetTypedConfig().GetValue(), &m)
	routes := m.GetRouteConfig().GetVirtualHosts()
	if len(routes) != 1 || routes[0].GetRoutes()[0].GetNonForwardingAction() == nil {
		t.Errorf("%s: inline routes %v, want one non-forwarding route", l.GetName(), routes)
	}
	filters := m.GetHttpFilters()
	if len(filters) != 2 || filters[0].GetName() != wellknown.HTTPRoleBasedAccessControl || filters[1].GetName() != wellknown.Router {
		t.Fatalf("%s: HTTP filters %v, want RBAC then router", l.GetName(), filters)
	}
	var r rbac.RBAC
	unpack(t, filters[0].GetTypedConfig().GetValue(), &r)
	if r.GetRules().GetAction().String() != "ALLOW" || len(r.GetRules().GetPolicies()) != 1 {
		t.Fatalf("%s: RBAC %v", l.GetName(), &r)
	}
	for _, p := range r.GetRules().GetPolicies() {
		if len(p.GetPrincipals()) != 1 || p.GetPrincipals()[0].GetAuthenticated().GetPrincipalName().GetPrefix() != "spiffe://cluster.local/" || !p.GetPermissions()[0].GetAny() {
			t.Errorf("%s: RBAC policy %v, want any permission for authenticated spiffe://cluster.local/", l.GetName(), p)
		}
	}
}

func findListener(t *testing.T, ls []*listener.Listener, name string) *listener.Listener {
	t.Helper()
	for _, l := range ls {
		if l.GetName() == name {
			return l
		}
	}
	t.Fatalf("no listener %q", name)
	return nil
}

func unpack(t *testing.T, b []byte, m proto.Message) {
	t.Helper()
	if err := proto.Unmarshal(b, m); err != nil {
		t.Fatal(err)
	}
}
