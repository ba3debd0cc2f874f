package bootstrap

import (
	"net"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	grpcxds "google.golang.org/grpc/xds"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/horizonmesh/horizon/xds"
)

// TestBootstrapValidMatrix renders the Envoy bootstrap of every role with
// every option that changes its shape, parses the printed JSON as Envoy
// would, and checks each one against the protos' validation rules (deep,
// Any contents included) and the invariants every bootstrap keeps: admin on
// loopback only (its endpoints can drain or stop the proxy), ADS through a
// static cluster that exists, the SDS cluster exactly with SPIRE, unique
// names. Proxyless bootstraps go through grpc-go's own parser.
func TestBootstrapValidMatrix(t *testing.T) {
	horizon := func(td string) spiffeid.ID {
		return spiffeid.RequireFromString("spiffe://" + td + "/ns/horizon-system/sa/horizon")
	}
	plaintext := func(host string) func(*Config) {
		return func(c *Config) {
			c.Server = Server{Host: host, Port: 15010, ID: horizon("cluster.local")}
		}
	}
	servers := map[string]func(*Config){
		"plaintext-ip":  plaintext("10.96.0.10"),
		"plaintext-dns": plaintext("horizon.horizon-system.svc"),
		"mtls-dns": func(c *Config) {
			c.Server = Server{Host: "horizon.horizon-system.svc", Port: 15012, MTLS: true, ID: horizon("cluster.local")}
		},
		"mtls-ipv6": func(c *Config) {
			c.Server = Server{Host: "fd00::10", Port: 15012, MTLS: true, ID: horizon("example.org")}
		},
	}
	identities := map[string]func(*Config){
		"minimal": func(*Config) {},
		"full": func(c *Config) {
			c.Proxy.Network, c.Proxy.Namespace, c.Proxy.ServiceAccount = "east", "demo", "echo"
			c.Proxy.Region, c.Proxy.Zone, c.Proxy.SubZone = "us-east", "us-east-1a", "rack-1"
			c.Proxy.Labels = map[string]string{"app": "echo", "version": "v2"}
		},
	}
	gateways := map[string]func(*Config){
		"defaults": func(*Config) {},
		"limits": func(c *Config) {
			c.Gateway = GatewayLimits{MaxConnections: 1000, MaxHeapBytes: 1073741824, ReadinessPort: 8021}
			c.AdminPort = 9901
		},
		"none": func(c *Config) { c.Gateway.MaxConnections, c.Gateway.ReadinessPort = 0, 0 },
	}
	n := 0
	for _, role := range []string{"sidecar", "gateway"} {
		for _, provider := range []string{"agent", "spire"} {
			for sname, server := range servers {
				for iname, identity := range identities {
					for gname, gw := range gateways {
						if role != "gateway" && gname != "defaults" {
							continue
						}
						name := strings.Join([]string{role, provider, sname, iname, gname}, "/")
						cfg := config(role)
						cfg.SVIDs.Provider = xds.SVIDProvider(provider)
						server(&cfg)
						identity(&cfg)
						gw(&cfg)
						t.Run(name, func(t *testing.T) {
							var b bootstrapv3.Bootstrap
							if err := protojson.Unmarshal(render(t, cfg), &b); err != nil {
								t.Fatal(err)
							}
							if err := validateDeep(&b); err != nil {
								t.Fatal(err)
							}
							checkBootstrapInvariants(t, &b, provider)
						})
						n++
					}
				}
			}
		}
	}
	for sname, server := range servers {
		for iname, identity := range identities {
			t.Run("proxyless/"+sname+"/"+iname, func(t *testing.T) {
				cfg := config("proxyless")
				cfg.Proxy.ID = "p1"
				server(&cfg)
				identity(&cfg)
				out := render(t, cfg)
				if _, err := grpcxds.NewXDSResolverWithConfigForTesting(out); err != nil {
					t.Errorf("grpc-go rejects the bootstrap: %v\n%s", err, out)
				}
			})
		}
	}
	if n < 30 {
		t.Errorf("only %d Envoy cases", n)
	}
}

func checkBootstrapInvariants(t *testing.T, b *bootstrapv3.Bootstrap, provider string) {
	t.Helper()
	admin := b.GetAdmin().GetAddress().GetSocketAddress()
	if ip := net.ParseIP(admin.GetAddress()); ip == nil || !ip.IsLoopback() {
		t.Errorf("admin on %q, want a loopback address", admin.GetAddress())
	}
	for _, g := range b.GetDynamicResources().GetAdsConfig().GetGrpcServices() {
		if staticCluster(b, g.GetEnvoyGrpc().GetClusterName()) == nil {
			t.Errorf("ADS names cluster %q, which is not a static cluster", g.GetEnvoyGrpc().GetClusterName())
		}
	}
	if (staticCluster(b, "sds-grpc") != nil) != (provider == "spire") {
		t.Errorf("%s: SDS cluster %v", provider, staticCluster(b, "sds-grpc"))
	}
	names := map[string]bool{}
	for _, c := range b.GetStaticResources().GetClusters() {
		names["cluster "+c.GetName()] = true
	}
	for _, l := range b.GetStaticResources().GetListeners() {
		if names["listener "+l.GetName()] {
			t.Errorf("listener %q twice", l.GetName())
		}
		names["listener "+l.GetName()] = true
		if sa := l.GetAddress().GetSocketAddress(); sa.GetPortValue() == admin.GetPortValue() {
			t.Errorf("listener %q on the admin port %d", l.GetName(), sa.GetPortValue())
		}
	}
	if len(names) != len(b.GetStaticResources().GetClusters())+len(b.GetStaticResources().GetListeners()) {
		t.Errorf("duplicate static cluster names: %v", names)
	}
	monitors := map[string]bool{}
	for _, m := range b.GetOverloadManager().GetResourceMonitors() {
		monitors[m.GetName()] = true
	}
	for _, a := range b.GetOverloadManager().GetActions() {
		for _, tr := range a.GetTriggers() {
			if !monitors[tr.GetName()] {
				t.Errorf("overload action %s: trigger %s names no monitor", a.GetName(), tr.GetName())
			}
		}
	}
}

// TestValidateDeepSeesInsideAny: an invalid message inside an Any (an HTTP
// connection manager without its required stat_prefix) passes
// Bootstrap.ValidateAll but not validateDeep.
func TestValidateDeepSeesInsideAny(t *testing.T) {
	b := envoyOf(t, config("gateway"))
	f := staticListener(b, readinessListener).GetFilterChains()[0].GetFilters()[0]
	var m hcm.HttpConnectionManager
	if err := f.GetTypedConfig().UnmarshalTo(&m); err != nil {
		t.Fatal(err)
	}
	m.StatPrefix = ""
	broken, err := anypb.New(&m)
	if err != nil {
		t.Fatal(err)
	}
	f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: broken}
	if err := b.ValidateAll(); err != nil {
		t.Fatalf("Bootstrap.ValidateAll looked inside the Any after all: %v", err)
	}
	if err := validateDeep(b); err == nil || !strings.Contains(err.Error(), "StatPrefix") {
		t.Errorf("validateDeep: %v, want the missing stat_prefix", err)
	}
}
