package kube

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/horizonmesh/horizon/discovery"
)

// kubeconfigSeeds are the kubeconfigs of testdata/kubeconfig.
func kubeconfigSeeds(f *testing.F) [][]byte {
	paths, _ := filepath.Glob("testdata/kubeconfig/*.yaml")
	if len(paths) == 0 {
		f.Fatal("no kubeconfigs in testdata/kubeconfig")
	}
	var out [][]byte
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, data)
	}
	return out
}

// FuzzLoadKubeconfig checks LoadKubeconfig, which reads kubeconfigs other
// people write (member Secrets), on any input: no panic; an error names the
// kubeconfig ("kubeconfig: ...") and wraps ErrPluginRefused only when
// plugins are not allowed; an accepted one has a server, reads no file of
// the control plane (no CA, certificate, key or token file) and, without
// allowPlugins, runs no plugin; never skips TLS verification (insecure TLS
// is not allowed here); and allowing plugins never refuses what is accepted
// without.
func FuzzLoadKubeconfig(f *testing.F) {
	for _, data := range kubeconfigSeeds(f) {
		f.Add(data, false)
		f.Add(data, true)
	}
	f.Fuzz(func(t *testing.T, data []byte, allowPlugins bool) {
		rc, err := LoadKubeconfig(data, "", Trust{AllowPlugins: allowPlugins})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "kubeconfig: ") {
				t.Fatalf("error %q does not name the kubeconfig", err)
			}
			if allowPlugins && errors.Is(err, ErrPluginRefused) {
				t.Fatalf("plugins allowed, but refused: %v", err)
			}
			return
		}
		switch {
		case rc.Host == "":
			t.Fatal("accepted without a server")
		case rc.CAFile != "" || rc.CertFile != "" || rc.KeyFile != "" || rc.BearerTokenFile != "":
			t.Fatalf("accepted a file reference: ca %q cert %q key %q token %q", rc.CAFile, rc.CertFile, rc.KeyFile, rc.BearerTokenFile)
		case !allowPlugins && (rc.ExecProvider != nil || rc.AuthProvider != nil):
			t.Fatalf("plugins not allowed, but accepted exec %v auth-provider %v", rc.ExecProvider, rc.AuthProvider)
		case rc.Insecure:
			t.Fatal("insecure TLS not allowed, but accepted")
		}
		if !allowPlugins {
			if _, err := LoadKubeconfig(data, "", Trust{AllowPlugins: true}); err != nil {
				t.Fatalf("accepted without plugins, refused with: %v", err)
			}
		}
	})
}

// FuzzMemberSecret checks how a member cluster Secret becomes a member's
// configuration (SecretWatcher.memberConfig) on any name, annotations and
// kubeconfig: no panic; a refusal has one of the known reasons and an
// error, an acceptance neither; an accepted member has a DNS-label name,
// a network and a connection; the hash is a function of the Secret's
// content and changes with the network.
func FuzzMemberSecret(f *testing.F) {
	for _, data := range kubeconfigSeeds(f) {
		f.Add("east", "", "east-net", "us-east", "", data, true, false)
	}
	f.Add("member-1", "east-1", "east", "", "", []byte(nil), false, false)
	f.Add("Bad_Name", "", "east", "us-east", "us-east-1a", []byte("{}"), true, true)
	f.Fuzz(func(t *testing.T, secretName, clusterName, network, region, zone string, kubeconfig []byte, hasKubeconfig, allowPlugins bool) {
		sec := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: "horizon-system", Name: secretName, Annotations: map[string]string{
				AnnotationClusterName: clusterName, AnnotationNetwork: network, AnnotationRegion: region, AnnotationZone: zone,
			}},
		}
		if hasKubeconfig {
			sec.Data = map[string][]byte{SecretKubeconfigKey: kubeconfig}
		}
		w := &SecretWatcher{AllowPlugins: allowPlugins}
		cfg, hash, reason, err := w.memberConfig(sec)
		if (reason == "") != (err == nil) {
			t.Fatalf("reason %q with error %v", reason, err)
		}
		if reason != "" && !slices.Contains(secretReasons, reason) {
			t.Fatalf("unknown reason %q", reason)
		}
		if err == nil {
			if !discovery.IsDNSLabel(cfg.Name) || cfg.Network == "" || cfg.Rest == nil {
				t.Fatalf("accepted %+v", cfg)
			}
		}
		if !strings.Contains(cfg.Origin, secretName) {
			t.Fatalf("origin %q does not name the Secret %q", cfg.Origin, secretName)
		}
		_, again, _, _ := w.memberConfig(sec)
		sec.Annotations[AnnotationNetwork] += "x"
		_, other, _, _ := w.memberConfig(sec)
		if again != hash || other == hash || len(hash) != 64 {
			t.Fatalf("hashes %q, again %q, with another network %q", hash, again, other)
		}
	})
}

// reasonToken is what a Problem's reason must look like: a short, bounded
// metric label value.
var reasonToken = regexp.MustCompile(`^[a-z][a-z_]{0,40}$`)

// FuzzBuild builds a member's part of the ClusterSet from objects made of
// fuzzed fields: a Service, two EndpointSlices of it that list the same
// addresses (one reversed, with the other readiness), a gateway Service
// with its port label, peer-addresses annotation, load balancer and node
// port, and a node. Whatever the fields (bad, mixed-family or FQDN
// addresses; ports 0, negative or past 65535), Build must not panic, must
// be deterministic, and its output must be a valid member on its own
// (discovery.New accepts it: one bad object never stops the ClusterSet):
// every endpoint and gateway address an IP in canonical form, every port
// in 1-65535, no address twice; problems carry a bounded reason.
func FuzzBuild(f *testing.F) {
	f.Add("IPv4", "10.0.1.1,10.0.1.2", int32(8080), int32(9090), int32(80), int32(90), int32(31443), "10.96.0.10", "", "", "203.0.113.1", "", "192.0.2.1", uint8(0))
	f.Add("IPv6", "2001:db8::1,2001:db8::1", int32(8080), int32(0), int32(80), int32(80), int32(0), "None", "west=10.20.0.5, north=10.30.0.5:8443", "15443", "", "gw.example.net", "", uint8(1))
	f.Add("FQDN", "db.example.com", int32(70000), int32(-1), int32(0), int32(70000), int32(-5), "not-an-ip", "east=10.0.0.1,bad", "0", "not-an-ip", "", "node-1.example", uint8(255))
	f.Add("IPv4", "2001:db8::1,fe80::1%eth0,010.1.1.1", int32(1), int32(65535), int32(65535), int32(1), int32(65536), "", "west=[2001:db8::5]:1", "65536", "::ffff:1.2.3.4", "unresolved.example", "10.0.0.7", uint8(2))
	f.Fuzz(func(t *testing.T, addrType, addrs string, epPort1, epPort2, svcPort1, svcPort2, nodePort int32,
		clusterIP, peers, gwPort, lbIP, lbHost, nodeAddr string, ready uint8) {
		objects := func() Objects {
			return fuzzObjects(addrType, addrs, epPort1, epPort2, svcPort1, svcPort2, nodePort, clusterIP, peers, gwPort, lbIP, lbHost, nodeAddr, ready)
		}
		cfg := MemberConfig{Name: "east-1", Network: "east", Locality: discovery.Locality{Region: "us-east"}}
		c, problems := Build(cfg, objects())
		again, _ := Build(cfg, objects())
		if !reflect.DeepEqual(c, again) {
			t.Fatalf("not deterministic:\n%+v\n%+v", c, again)
		}
		for _, p := range problems {
			if !reasonToken.MatchString(p.Reason) || p.Kind == "" || p.Name == "" {
				t.Fatalf("problem %+v: want a kind, a name and a short reason token", p)
			}
		}
		canonicalIP := func(s string) bool {
			a, err := netip.ParseAddr(s)
			return err == nil && a.String() == s && a.Zone() == ""
		}
		for _, s := range c.Services {
			for i, e := range s.Endpoints {
				if !canonicalIP(e.Address) {
					t.Fatalf("service %s: endpoint address %q", s.Key(), e.Address)
				}
				if i > 0 && s.Endpoints[i-1].Address >= e.Address {
					t.Fatalf("service %s: endpoints not sorted or repeated at %q", s.Key(), e.Address)
				}
				for name, p := range e.Ports {
					if p < 1 || p > 65535 {
						t.Fatalf("service %s: endpoint %s port %q=%d", s.Key(), e.Address, name, p)
					}
				}
			}
			for _, p := range s.Ports {
				if p.Port < 1 || p.Port > 65535 || p.TargetPort > 65535 {
					t.Fatalf("service %s: port %+v", s.Key(), p)
				}
			}
		}
		for _, g := range c.Gateways {
			if !canonicalIP(g.Address) || g.Port < 1 || g.Port > 65535 {
				t.Fatalf("gateway %+v", g)
			}
		}
		if _, err := discovery.New([]discovery.Cluster{c}); err != nil {
			t.Fatalf("not a valid member: %v", err)
		}
	})
}

func fuzzObjects(addrType, addrs string, epPort1, epPort2, svcPort1, svcPort2, nodePort int32,
	clusterIP, peers, gwPort, lbIP, lbHost, nodeAddr string, ready uint8) Objects {
	const ns = "demo"
	list := strings.Split(addrs, ",")
	if len(list) > 16 {
		list = list[:16]
	}
	node, zone := "node-1", "us-east-1a"
	slice := func(name string, addrs []string, readyBits uint8) *discoveryv1.EndpointSlice {
		s := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{labelServiceName: "echo"}},
			AddressType: discoveryv1.AddressType(addrType),
			Ports: []discoveryv1.EndpointPort{
				{Name: new("http"), Port: &epPort1},
				{Name: new("grpc"), Port: &epPort2},
				{Name: new("none")},
			},
		}
		for i, a := range addrs {
			e := discoveryv1.Endpoint{Addresses: []string{a}, NodeName: &node, Zone: &zone}
			switch readyBits >> (i % 4 * 2) & 3 {
			case 0:
				e.Conditions.Ready = new(true)
			case 1:
				e.Conditions.Ready = new(false)
			case 2:
				e.Conditions.Serving, e.Conditions.Terminating = new(true), new(true)
			}
			s.Endpoints = append(s.Endpoints, e)
		}
		return s
	}
	reversed := slices.Clone(list)
	slices.Reverse(reversed)
	gw := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "horizon-system", Name: "gateway",
			Labels:      map[string]string{LabelGatewayNetwork: "east"},
			Annotations: map[string]string{AnnotationPeerAddresses: peers}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Ports: []corev1.ServicePort{
			{Name: "tls", Port: svcPort1, NodePort: nodePort},
			{Name: "status", Port: svcPort2},
		}},
	}
	if gwPort != "" {
		gw.Labels[LabelGatewayPort] = gwPort
	}
	gw.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: lbIP}, {Hostname: lbHost}}
	return Objects{
		Services: []*corev1.Service{
			{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "echo"},
				Spec: corev1.ServiceSpec{ClusterIP: clusterIP, Ports: []corev1.ServicePort{
					{Name: "http", Port: svcPort1, TargetPort: intstr.FromInt32(epPort1)},
					{Name: "grpc", Port: svcPort2, TargetPort: intstr.FromInt32(epPort2), Protocol: corev1.ProtocolUDP},
					{Name: "again", Port: svcPort1},
				}},
			},
			gw,
		},
		Slices: []*discoveryv1.EndpointSlice{slice("echo-b", reversed, ^ready), slice("echo-a", list, ready)},
		Nodes: map[string]*corev1.Node{node: {
			ObjectMeta: metav1.ObjectMeta{Name: node, Labels: map[string]string{labelRegion: "us-east", labelZone: zone}},
			Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeExternalIP, Address: nodeAddr}}},
		}},
		Resolved: map[string][]string{"gw.example.net": {"203.0.113.50", "2001:db8::50"}},
	}
}
