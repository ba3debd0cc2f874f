package main

import (
	"net"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	grpcxds "google.golang.org/grpc/xds"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
)

// TestBootstrapValidMatrix renders the Envoy bootstrap of every role with
// every option that changes its shape, parses the printed JSON as Envoy
// would, and checks each one against the protos' validation rules (deep,
// Any contents included) and the invariants every bootstrap keeps: admin on
// loopback only (its endpoints can drain or stop the proxy), ADS through a
// static cluster that exists, the SDS cluster exactly with SPIRE, unique
// names. Proxyless bootstraps go through grpc-go's own parser.
func TestBootstrapValidMatrix(t *testing.T) {
	servers := map[string][]string{
		"plaintext-ip":  {"--xds-address", "10.96.0.10:15010"},
		"plaintext-dns": {"--xds-address", "horizon.horizon-system.svc:15010"},
		"mtls-dns":      {"--mtls-address", "horizon.horizon-system.svc:15012"},
		"mtls-ipv6":     {"--mtls-address", "[fd00::10]:15012", "--trust-domain", "example.org"},
	}
	identities := map[string][]string{
		"minimal": nil,
		"full": {"--network", "east", "--namespace", "demo", "--service-account", "echo", "--region", "us-east",
			"--zone", "us-east-1a", "--subzone", "rack-1", "--label", "app=echo", "--label", "version=v2"},
	}
	gateways := map[string][]string{
		"defaults": nil,
		"limits":   {"--max-downstream-connections", "1000", "--max-heap-bytes", "1073741824", "--readiness-port", "8021", "--admin-port", "9901"},
		"none":     {"--max-downstream-connections", "0", "--readiness-port", "0"},
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
						args := append([]string{"--role", role, "--cluster", "east-1", "--id", "n1", "--svid-provider", provider}, server...)
						args = append(append(args, identity...), gw...)
						t.Run(name, func(t *testing.T) {
							var b bootstrapv3.Bootstrap
							if err := protojson.Unmarshal(runBootstrap(t, args), &b); err != nil {
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
	for iname, identity := range identities {
		t.Run("proxyless/"+iname, func(t *testing.T) {
			out := runBootstrap(t, append([]string{"--role", "proxyless", "--cluster", "east-1", "--id", "p1"}, identity...))
			if _, err := grpcxds.NewXDSResolverWithConfigForTesting(out); err != nil {
				t.Errorf("grpc-go rejects the bootstrap: %v\n%s", err, out)
			}
		})
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
	b := envoyBootstrapOf(t, "--role", "gateway")
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
