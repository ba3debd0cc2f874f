package bootstrap

import (
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/file"
	"github.com/horizonmesh/horizon/examples/local"
	"github.com/horizonmesh/horizon/xds"
)

// TestContract holds a bootstrap to what xds makes of it and serves it, for
// every role, SVID provider and xDS port:
//
//   - its node, read by xds.ParseNode, is the proxy it was made for;
//   - ADS goes through the static cluster XDSCluster;
//   - every secret that the bootstrap's own xDS cluster and Horizon's
//     resources for that proxy (xds.Render) reference is one the bootstrap
//     declares: a static secret under the agent, or a secret over SDS from a
//     static cluster, xds.SDSCluster, under SPIRE;
//   - proxyless: every certificate provider instance Horizon's resources
//     name is one grpc-go's bootstrap declares, and Horizon's server
//     listeners follow the bootstrap's name template.
func TestContract(t *testing.T) {
	cs, err := file.Parse(local.Name, local.ClusterSet)
	if err != nil {
		t.Fatal(err)
	}
	proxy := Proxy{
		Cluster: "east-1", Network: "east", Namespace: "demo", ServiceAccount: "echo",
		Region: "us-east", Zone: "us-east-1a", SubZone: "rack-1", Labels: map[string]string{"app": "echo", "version": "v1"},
	}
	mtls := Server{Host: "horizon.horizon-system.svc", Port: 15012, MTLS: true, ID: spiffeid.RequireFromString("spiffe://cluster.local/ns/horizon-system/sa/horizon")}
	for _, role := range []xds.Role{xds.Sidecar, xds.Gateway} {
		for _, provider := range []xds.SVIDProvider{xds.SVIDFromAgent, xds.SVIDFromSPIRE} {
			for _, onMTLS := range []bool{false, true} {
				cfg := config(string(role))
				cfg.Proxy = proxy
				cfg.Proxy.ID, cfg.Proxy.Role = string(role)+"~10.0.1.7~echo.demo~east-1", string(role)
				cfg.SVIDs.Provider = provider
				if onMTLS {
					cfg.Server = mtls
				}
				name := string(role) + "/" + string(provider) + map[bool]string{false: "/plaintext", true: "/mtls"}[onMTLS]
				t.Run(name, func(t *testing.T) {
					b := envoyOf(t, cfg)
					p := checkNode(t, b.GetNode(), cfg.Proxy)
					checkEnvoySecrets(t, b, cs, p, provider)
				})
			}
		}
	}
	t.Run("proxyless", func(t *testing.T) {
		cfg := config(string(xds.Proxyless))
		cfg.Proxy = proxy
		cfg.Proxy.ID, cfg.Proxy.Role = "proxyless~10.0.1.8~client.demo~east-1", string(xds.Proxyless)
		var doc struct {
			Node                 json.RawMessage            `json:"node"`
			CertificateProviders map[string]json.RawMessage `json:"certificate_providers"`
			ServerListenerName   string                     `json:"server_listener_resource_name_template"`
		}
		if err := json.Unmarshal(render(t, cfg), &doc); err != nil {
			t.Fatal(err)
		}
		var node core.Node
		if err := protojson.Unmarshal(doc.Node, &node); err != nil {
			t.Fatalf("node: %v", err)
		}
		p := checkNode(t, &node, cfg.Proxy)
		res := renderFor(t, cs, p, xds.Policy{})
		var instances []string
		for _, m := range res {
			if err := eachMessage(m, func(m proto.Message, _ bool) error {
				if pi, ok := m.(*tlsv3.CertificateProviderPluginInstance); ok {
					instances = append(instances, pi.GetInstanceName())
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		if len(instances) == 0 {
			t.Fatal("Horizon's resources name no certificate provider instance: nothing to check")
		}
		for _, name := range instances {
			if _, ok := doc.CertificateProviders[name]; !ok {
				t.Errorf("Horizon's resources name certificate provider instance %q, which the bootstrap does not declare", name)
			}
		}
		prefix, ok := strings.CutSuffix(doc.ServerListenerName, "%s")
		if !ok {
			t.Fatalf("server listener name template %q", doc.ServerListenerName)
		}
		servers := 0
		for _, m := range res {
			if l, ok := m.(*listenerv3.Listener); ok && l.GetApiListener() == nil {
				if !strings.HasPrefix(l.GetName(), prefix) {
					t.Errorf("server listener %q does not follow the bootstrap's template %q", l.GetName(), doc.ServerListenerName)
				}
				servers++
			}
		}
		if servers == 0 {
			t.Error("no server listener for a proxyless proxy whose cluster serves echo: nothing to check")
		}
	})
}

// checkNode reads the node as Horizon does and compares it with the proxy
// the bootstrap was made for.
func checkNode(t *testing.T, n *core.Node, want Proxy) *xds.Proxy {
	t.Helper()
	got, err := xds.ParseNode(n)
	if err != nil {
		t.Fatal(err)
	}
	wantProxy := &xds.Proxy{
		ID: want.ID, Role: xds.Role(want.Role), Cluster: want.Cluster, Network: want.Network,
		Namespace: want.Namespace, ServiceAccount: want.ServiceAccount,
		Locality: discovery.Locality{Region: want.Region, Zone: want.Zone, SubZone: want.SubZone}, Labels: want.Labels,
	}
	if !reflect.DeepEqual(got, wantProxy) {
		t.Errorf("xds.ParseNode reads\n%+v\nwant\n%+v", got, wantProxy)
	}
	return got
}

// checkEnvoySecrets checks that every secret Horizon's resources for p and
// the bootstrap itself reference is declared by the bootstrap.
func checkEnvoySecrets(t *testing.T, b *bootstrapv3.Bootstrap, cs *discovery.ClusterSet, p *xds.Proxy, provider xds.SVIDProvider) {
	t.Helper()
	for _, g := range b.GetDynamicResources().GetAdsConfig().GetGrpcServices() {
		if c := g.GetEnvoyGrpc().GetClusterName(); c != XDSCluster || staticCluster(b, c) == nil {
			t.Errorf("ADS through cluster %q, want the static cluster %q", c, XDSCluster)
		}
	}
	static := map[string]bool{}
	for _, s := range b.GetStaticResources().GetSecrets() {
		static[s.GetName()] = true
	}
	refs := secretRefs(b)
	for _, m := range renderFor(t, cs, p, xds.Policy{SVIDProvider: provider}) {
		refs = append(refs, secretRefs(m)...)
	}
	if p.Role == xds.Sidecar && len(refs) == 0 {
		t.Fatal("a sidecar's resources reference no secret: nothing to check")
	}
	for _, ref := range refs {
		src := ref.GetSdsConfig()
		if src == nil {
			if !static[ref.GetName()] {
				t.Errorf("secret %q is referenced without SDS, and the bootstrap declares no such static secret (it has %v)", ref.GetName(), slices.Sorted(maps.Keys(static)))
			}
			continue
		}
		for _, g := range src.GetApiConfigSource().GetGrpcServices() {
			c := g.GetEnvoyGrpc().GetClusterName()
			if c != xds.SDSCluster || staticCluster(b, c) == nil {
				t.Errorf("secret %q comes over SDS from cluster %q, which is not the bootstrap's static %q", ref.GetName(), c, xds.SDSCluster)
			}
		}
		if provider != xds.SVIDFromSPIRE {
			t.Errorf("secret %q over SDS under the %s provider", ref.GetName(), provider)
		}
	}
}

// renderFor is what Horizon serves p: its view rendered under policy.
func renderFor(t *testing.T, cs *discovery.ClusterSet, p *xds.Proxy, policy xds.Policy) []proto.Message {
	t.Helper()
	resolved := *p
	if err := resolved.Resolve(cs); err != nil {
		t.Fatal(err)
	}
	res, err := xds.Render(cs, resolved.GroupFor(policy.LabelKeys()), policy)
	if err != nil {
		t.Fatal(err)
	}
	var out []proto.Message
	for _, c := range res.Clusters {
		out = append(out, c)
	}
	for _, l := range res.Listeners {
		out = append(out, l)
	}
	for _, r := range res.Routes {
		out = append(out, r)
	}
	for _, e := range res.Endpoints {
		out = append(out, e)
	}
	return out
}

func secretRefs(m proto.Message) []*tlsv3.SdsSecretConfig {
	var refs []*tlsv3.SdsSecretConfig
	if err := eachMessage(m, func(m proto.Message, _ bool) error {
		if s, ok := m.(*tlsv3.SdsSecretConfig); ok {
			refs = append(refs, s)
		}
		return nil
	}); err != nil {
		panic(err) // only messages this test rendered: every Any unpacks
	}
	return refs
}
