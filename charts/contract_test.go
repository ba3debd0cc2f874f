package charts_test

import (
	"bytes"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/horizonmesh/horizon/discovery/kube"
	"github.com/horizonmesh/horizon/internal/testkit/manifests"
)

var (
	buildOnce sync.Once
	horizon   string
	buildErr  error
)

// horizonBinary builds cmd/horizon once per test binary.
func horizonBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "horizon-chart-test")
		if err != nil {
			buildErr = err
			return
		}
		horizon = filepath.Join(dir, "horizon")
		out, err := exec.Command("go", "build", "-o", horizon, "../cmd/horizon").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ../cmd/horizon: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return horizon
}

var flagLine = regexp.MustCompile(`^\s+(?:-\w, )?--([a-z0-9-]+)`)

// helpFlags are the flags `horizon <command> --help` lists.
func helpFlags(t *testing.T, command string) map[string]bool {
	t.Helper()
	out, err := exec.Command(horizonBinary(t), command, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("horizon %s --help: %v\n%s", command, err, out)
	}
	flags := map[string]bool{}
	for line := range strings.Lines(string(out)) {
		if m := flagLine.FindStringSubmatch(line); m != nil {
			flags[m[1]] = true
		}
	}
	if len(flags) < 3 {
		t.Fatalf("horizon %s --help lists %d flags:\n%s", command, len(flags), out)
	}
	return flags
}

// TestFlagsExist: every flag the chart passes to horizon serve, agent,
// bootstrap and gateway is one that command's --help lists (hidden old
// names do not count), so a renamed flag fails here rather than in a pod.
func TestFlagsExist(t *testing.T) {
	help := map[string]map[string]bool{}
	for _, cmd := range []string{"serve", "agent", "bootstrap", "gateway"} {
		help[cmd] = helpFlags(t, cmd)
	}
	checked := map[string]int{}
	for _, c := range renderCases(t) {
		for name, pod := range manifests.PodTemplates(c.docs) {
			for _, ctr := range manifests.AllContainers(pod) {
				if len(ctr.Args) == 0 || help[ctr.Args[0]] == nil {
					continue
				}
				cmd := ctr.Args[0]
				for _, a := range ctr.Args[1:] {
					if !strings.HasPrefix(a, "--") {
						t.Errorf("%s: %s: container %s: argument %q is no --flag", c.name, name, ctr.Name, a)
						continue
					}
					flag, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
					checked[cmd]++
					if !help[cmd][flag] {
						t.Errorf("%s: %s: container %s: horizon %s has no flag --%s", c.name, name, ctr.Name, cmd, flag)
					}
				}
			}
		}
	}
	for _, cmd := range []string{"serve", "agent", "bootstrap", "gateway"} {
		if checked[cmd] == 0 {
			t.Errorf("no case runs horizon %s", cmd)
		}
	}
}

// serveArgs are the control plane container's arguments.
func serveContainer(t *testing.T, c renderCase) (*appsv1.Deployment, corev1.Container) {
	t.Helper()
	d := deployment(c, "horizon")
	if d == nil {
		t.Fatalf("%s: no Deployment horizon", c.name)
	}
	for _, ctr := range d.Spec.Template.Spec.Containers {
		if len(ctr.Args) > 0 && ctr.Args[0] == "serve" {
			return d, ctr
		}
	}
	t.Fatalf("%s: Deployment horizon runs no horizon serve", c.name)
	return nil, corev1.Container{}
}

func flag1(t *testing.T, c renderCase, args []string, flag string) string {
	t.Helper()
	v := manifests.FlagValues(args, flag)
	if len(v) != 1 {
		t.Errorf("%s: %s given %d times (%q), want once", c.name, flag, len(v), v)
		return ""
	}
	return v[0]
}

func containerPort(ctr corev1.Container, name string) int32 {
	for _, p := range ctr.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

// listenPort is the port of a listen address ":15017".
func listenPort(t *testing.T, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Errorf("address %q: %v", addr, err)
		return 0
	}
	n, _ := strconv.Atoi(p)
	return int32(n)
}

// TestControlPlaneContract: in every case with the control plane, the
// Deployment, its Services, PodDisruptionBudget, NetworkPolicy and
// ServiceMonitor agree with each other and with the values: replicas,
// ports by name and number, probes on serve's HTTP port, the CA as the
// values say, plaintext xDS off, the gateway's identity, and the reader
// ClusterRole equal to the one add-secret makes.
func TestControlPlaneContract(t *testing.T) {
	for _, c := range renderCases(t) {
		if c.value("controlPlane.enabled", true) != true {
			if deployment(c, "horizon") != nil {
				t.Errorf("%s: controlPlane.enabled false renders the control plane", c.name)
			}
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			d, ctr := serveContainer(t, c)
			pod := d.Spec.Template.Spec
			wantReplicas := int32(toInt(c.value("controlPlane.replicas", 2)))
			if d.Spec.Replicas == nil || *d.Spec.Replicas != wantReplicas {
				t.Errorf("replicas %v, want %d", d.Spec.Replicas, wantReplicas)
			}
			if flag1(t, c, ctr.Args, "--xds-address") != "" {
				t.Error("plaintext xDS is on")
			}
			members := fmt.Sprint(c.value("controlPlane.memberSecretsNamespace", namespace))
			if got := flag1(t, c, ctr.Args, "--member-secrets-namespace"); got != members {
				t.Errorf("--member-secrets-namespace %s, want %s", got, members)
			}
			// The control plane may read Secrets there, and nowhere else.
			secretsRead := map[string]bool{}
			for _, b := range objects[*rbacv1.RoleBinding](c) {
				if !slices.Contains(b.Subjects, rbacv1.Subject{Kind: "ServiceAccount", Name: pod.ServiceAccountName, Namespace: namespace}) {
					continue
				}
				for _, r := range objects[*rbacv1.Role](c) {
					if r.Name == b.RoleRef.Name && r.Namespace == b.Namespace {
						for _, rule := range r.Rules {
							if slices.Contains(rule.Resources, "secrets") && slices.Contains(rule.Verbs, "watch") {
								secretsRead[r.Namespace] = true
							}
						}
					}
				}
			}
			if !mapsEqual(secretsRead, map[string]bool{members: true}) {
				t.Errorf("the control plane reads Secrets in %v, want %s only", secretsRead, members)
			}
			// Members' states: in ConfigMaps of the release's namespace, which
			// the control plane may get, create and update there (and only
			// there), or nowhere.
			persist := c.value("controlPlane.persistMemberState", true) == true
			stateNS := manifests.FlagValues(ctr.Args, "--state-namespace")
			wait := manifests.FlagValues(ctr.Args, "--member-sync-wait")
			if persist != (len(stateNS) == 1 && stateNS[0] == namespace) || persist != (len(wait) == 1 && wait[0] == fmt.Sprint(c.value("controlPlane.memberSyncWait", "10s"))) {
				t.Errorf("--state-namespace %q --member-sync-wait %q with persistMemberState %v", stateNS, wait, persist)
			}
			configMapsWritten := map[string]bool{}
			for _, b := range objects[*rbacv1.RoleBinding](c) {
				if !slices.Contains(b.Subjects, rbacv1.Subject{Kind: "ServiceAccount", Name: pod.ServiceAccountName, Namespace: namespace}) {
					continue
				}
				for _, r := range objects[*rbacv1.Role](c) {
					if r.Name != b.RoleRef.Name || r.Namespace != b.Namespace {
						continue
					}
					for _, rule := range r.Rules {
						if slices.Contains(rule.Resources, "configmaps") && slices.Contains(rule.Verbs, "get") && slices.Contains(rule.Verbs, "create") && slices.Contains(rule.Verbs, "update") {
							configMapsWritten[r.Namespace] = true
						}
					}
				}
			}
			if want := map[string]bool{namespace: true}; persist && !mapsEqual(configMapsWritten, want) || !persist && len(configMapsWritten) > 0 {
				t.Errorf("the control plane writes ConfigMaps in %v with persistMemberState %v", configMapsWritten, persist)
			}
			if p := listenPort(t, flag1(t, c, ctr.Args, "--mtls-address")); p != 15012 || containerPort(ctr, "tls-xds") != p {
				t.Errorf("--mtls-address port %d, container port tls-xds %d: want both 15012", p, containerPort(ctr, "tls-xds"))
			}
			http := listenPort(t, flag1(t, c, ctr.Args, "--http-address"))
			if http != 15014 || containerPort(ctr, "http-monitoring") != http {
				t.Errorf("--http-address port %d, container port http-monitoring %d: want both 15014", http, containerPort(ctr, "http-monitoring"))
			}
			for kind, p := range map[string]*corev1.Probe{"startup": ctr.StartupProbe, "readiness": ctr.ReadinessProbe, "liveness": ctr.LivenessProbe} {
				if p == nil || p.HTTPGet == nil || p.HTTPGet.Port.StrVal != "http-monitoring" || (p.HTTPGet.Path != "/healthz" && p.HTTPGet.Path != "/readyz") {
					t.Errorf("%s probe %+v, want /healthz or /readyz on http-monitoring", kind, p)
				}
			}
			if ctr.ReadinessProbe == nil || ctr.ReadinessProbe.HTTPGet == nil || ctr.ReadinessProbe.HTTPGet.Path != "/readyz" {
				t.Error("readiness is not /readyz")
			}
			if ctr.Lifecycle == nil || ctr.Lifecycle.PreStop == nil || ctr.Lifecycle.PreStop.Sleep == nil || ctr.Lifecycle.PreStop.Sleep.Seconds <= 0 {
				t.Error("no preStop sleep")
			} else if need := ctr.Lifecycle.PreStop.Sleep.Seconds + 5 + 5; pod.TerminationGracePeriodSeconds == nil || *pod.TerminationGracePeriodSeconds < need {
				t.Errorf("terminationGracePeriodSeconds %v, want at least %d", pod.TerminationGracePeriodSeconds, need)
			}
			if len(pod.TopologySpreadConstraints) != 2 {
				t.Errorf("topology spread %+v, want zones and nodes", pod.TopologySpreadConstraints)
			}
			switch c.value("ca.mode", "horizon") {
			case "horizon":
				dir := flag1(t, c, ctr.Args, "--ca-dir")
				if v := volumeAt(pod, ctr, dir); v == nil || v.Secret == nil || v.Secret.SecretName != fmt.Sprint(c.value("ca.secretName", "horizon-ca")) {
					t.Errorf("--ca-dir %s is not the CA Secret: %+v", dir, v)
				}
				if manifests.FlagValues(ctr.Args, "--spire-socket") != nil {
					t.Error("--spire-socket with ca.mode horizon")
				}
			case "spire":
				sock := flag1(t, c, ctr.Args, "--spire-socket")
				if v := volumeAt(pod, ctr, sock); v == nil || (v.CSI == nil && v.HostPath == nil) {
					t.Errorf("--spire-socket %s is not on the SPIRE agent's CSI or hostPath volume: %+v", sock, v)
				} else if want := c.value("ca.spire.volume", "csi"); (want == "csi") != (v.CSI != nil) {
					t.Errorf("SPIRE socket volume %+v, want %s", v, want)
				}
				if manifests.FlagValues(ctr.Args, "--ca-dir") != nil || len(manifests.FlagValues(ctr.Args, "--identity-cluster")) == 0 {
					t.Errorf("args %q: want no --ca-dir and an --identity-cluster", ctr.Args)
				}
			}
			if gw := deployment(c, "horizon-eastwest"); gw != nil {
				want := "spiffe://cluster.local/ns/" + gw.Namespace + "/sa/" + gw.Spec.Template.Spec.ServiceAccountName
				if ids := manifests.FlagValues(ctr.Args, "--gateway-identity"); !slices.Equal(ids, []string{want}) {
					t.Errorf("--gateway-identity %q, want the gateway's %s", ids, want)
				}
			}
			podLabels := labels.Set(d.Spec.Template.Labels)
			services := map[string]*corev1.Service{}
			for _, s := range objects[*corev1.Service](c) {
				services[s.Name] = s
			}
			for name, port := range map[string]string{"horizon": "tls-xds", "horizon-metrics": "http-monitoring"} {
				s := services[name]
				if s == nil {
					t.Errorf("no Service %s", name)
					continue
				}
				if !labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) || len(s.Spec.Ports) != 1 || s.Spec.Ports[0].TargetPort.StrVal != port || containerPort(ctr, port) == 0 {
					t.Errorf("Service %s selects %v, ports %+v: want the control plane's port %s", name, s.Spec.Selector, s.Spec.Ports, port)
				}
			}
			pdbs := objects[*policyv1.PodDisruptionBudget](c)
			if len(pdbs) != 1 || !selects(pdbs[0].Spec.Selector, podLabels) || pdbs[0].Spec.MinAvailable.IntValue() != toInt(c.value("controlPlane.podDisruptionBudget.minAvailable", 1)) || pdbs[0].Spec.MinAvailable.IntValue() >= int(wantReplicas) {
				t.Errorf("PodDisruptionBudgets %+v, want one for the control plane below its replicas", pdbs)
			}
			nps := objects[*networkingv1.NetworkPolicy](c)
			if len(nps) != 1 || !selects(&nps[0].Spec.PodSelector, podLabels) {
				t.Fatalf("NetworkPolicies %+v, want one for the control plane", nps)
			}
			admitted := map[int32]bool{}
			for _, r := range nps[0].Spec.Ingress {
				if len(r.From) == 0 || len(r.Ports) == 0 {
					t.Errorf("ingress rule %+v admits every source or port", r)
				}
				for _, p := range r.Ports {
					admitted[p.Port.IntVal] = true
				}
			}
			want := map[int32]bool{15012: true, 15014: true}
			if c.value("injector.enabled", true) == true {
				want[int32(toInt(c.value("injector.port", 15017)))] = true
			}
			if !mapsEqual(admitted, want) {
				t.Errorf("NetworkPolicy admits %v, want %v", admitted, want)
			}
			var monitors []*unstructured.Unstructured
			for _, obj := range allObjects(c) {
				if u, ok := obj.(*unstructured.Unstructured); ok && u.GetKind() == "ServiceMonitor" {
					monitors = append(monitors, u)
				}
			}
			if (len(monitors) == 1) != (c.value("controlPlane.serviceMonitor.enabled", false) == true) || len(monitors) > 1 {
				t.Errorf("%d ServiceMonitors with controlPlane.serviceMonitor.enabled %v", len(monitors), c.value("controlPlane.serviceMonitor.enabled", false))
			}
			for _, m := range monitors {
				sel, _, _ := unstructured.NestedStringMap(m.Object, "spec", "selector", "matchLabels")
				eps, _, _ := unstructured.NestedSlice(m.Object, "spec", "endpoints")
				metrics := services["horizon-metrics"]
				if metrics == nil || !labels.SelectorFromSet(sel).Matches(labels.Set(metrics.Labels)) || len(eps) != 1 || eps[0].(map[string]any)["port"] != metrics.Spec.Ports[0].Name {
					t.Errorf("ServiceMonitor selects %v, endpoints %v: want the Service horizon-metrics and its port", sel, eps)
				}
			}
			var reader *rbacv1.ClusterRole
			for _, r := range objects[*rbacv1.ClusterRole](c) {
				if r.Name == kube.ReaderClusterRole {
					reader = r
				}
			}
			if reader == nil || !slices.EqualFunc(reader.Rules, kube.ReaderRules(), ruleEqual) {
				t.Errorf("ClusterRole %s %+v, want add-secret's rules %+v", kube.ReaderClusterRole, reader, kube.ReaderRules())
			}
			bound := false
			for _, b := range objects[*rbacv1.ClusterRoleBinding](c) {
				bound = bound || b.RoleRef.Name == kube.ReaderClusterRole && slices.Contains(b.Subjects, rbacv1.Subject{Kind: "ServiceAccount", Name: pod.ServiceAccountName, Namespace: namespace})
			}
			if bound != (c.value("controlPlane.readOwnCluster", false) == true) {
				t.Errorf("%s bound to the control plane: %v, controlPlane.readOwnCluster %v", kube.ReaderClusterRole, bound, c.value("controlPlane.readOwnCluster", false))
			}
		})
	}
}

// TestGatewayContract: the gateway Service carries the network label
// Horizon looks for, names its port tls, and selects the gateway's pods,
// whose container listens on the Service's target port and is probed on
// status-port 15021; Envoy or `horizon gateway` as gateway.kind says.
func TestGatewayContract(t *testing.T) {
	for _, c := range renderCases(t) {
		if c.value("gateway.enabled", true) != true {
			continue
		}
		d := deployment(c, "horizon-eastwest")
		var svc *corev1.Service
		for _, s := range objects[*corev1.Service](c) {
			if s.Labels[kube.LabelGatewayNetwork] != "" {
				svc = s
			}
		}
		if d == nil || svc == nil {
			t.Errorf("%s: gateway Deployment %v, Service %v", c.name, d != nil, svc != nil)
			continue
		}
		if network := fmt.Sprint(c.value("cluster.network", "")); svc.Labels[kube.LabelGatewayNetwork] != network {
			t.Errorf("%s: gateway Service network %q, want %q", c.name, svc.Labels[kube.LabelGatewayNetwork], network)
		}
		if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "tls" || svc.Spec.Ports[0].Port != int32(toInt(c.value("gateway.service.port", kube.DefaultGatewayPort))) {
			t.Errorf("%s: gateway Service ports %+v", c.name, svc.Spec.Ports)
		}
		if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("%s: gateway Service selects %v, not the gateway's pods %v", c.name, svc.Spec.Selector, d.Spec.Template.Labels)
		}
		kind := c.value("gateway.kind", "envoy")
		var gw *corev1.Container
		for _, ctr := range d.Spec.Template.Spec.Containers {
			if (kind == "envoy" && ctr.Name == "envoy") || (kind == "horizon" && len(ctr.Args) > 0 && ctr.Args[0] == "gateway") {
				gw = &ctr
			}
		}
		if gw == nil {
			t.Errorf("%s: no %s gateway container", c.name, kind)
			continue
		}
		if containerPort(*gw, "tls") != svc.Spec.Ports[0].TargetPort.IntVal || containerPort(*gw, "status-port") != 15021 {
			t.Errorf("%s: gateway ports %+v, want tls on the Service's target port and status-port 15021", c.name, gw.Ports)
		}
		wantPath := map[any]string{"envoy": "/healthz/ready", "horizon": "/readyz"}[kind]
		if p := gw.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != wantPath || p.HTTPGet.Port.StrVal != "status-port" {
			t.Errorf("%s: readiness %+v, want %s on status-port", c.name, p, wantPath)
		}
		if kind == "horizon" {
			if listenPort(t, flag1(t, c, gw.Args, "--listen")) != 15443 || listenPort(t, flag1(t, c, gw.Args, "--http-address")) != 15021 {
				t.Errorf("%s: horizon gateway args %q, want --listen :15443 and --http-address :15021", c.name, gw.Args)
			}
		}
		for _, ctr := range manifests.AllContainers(d.Spec.Template.Spec) {
			if len(ctr.Args) > 0 && slices.Contains([]string{"agent", "bootstrap", "gateway"}, ctr.Args[0]) {
				if got := manifests.FlagValues(ctr.Args, "--cluster"); !slices.Equal(got, []string{fmt.Sprint(c.value("cluster.name", ""))}) {
					t.Errorf("%s: %s --cluster %q, want cluster.name", c.name, ctr.Name, got)
				}
				wantID := fmt.Sprint(c.value("xdsServerID", "spiffe://cluster.local/ns/"+namespace+"/sa/horizon"))
				if got := manifests.FlagValues(ctr.Args, "--xds-server-id"); !slices.Equal(got, []string{wantID}) {
					t.Errorf("%s: %s --xds-server-id %q, want %s", c.name, ctr.Name, got, wantID)
				}
				wantAddr := fmt.Sprint(c.value("xdsAddress", "horizon."+namespace+".svc:15012"))
				addr := append(manifests.FlagValues(ctr.Args, "--mtls-address"), manifests.FlagValues(ctr.Args, "--xds-address")...)
				if !slices.Equal(addr, []string{wantAddr}) {
					t.Errorf("%s: %s reaches Horizon at %q, want %s", c.name, ctr.Name, addr, wantAddr)
				}
			}
		}
	}
}

// injectorConfig is the contract's --injector-config file; decoding it
// with unknown fields refused checks the chart writes only its keys.
type injectorConfig struct {
	TrustDomain     string `yaml:"trustDomain"`
	XDSAddress      string `yaml:"xdsAddress"`
	XDSServerID     string `yaml:"xdsServerID"`
	TokenAudience   string `yaml:"tokenAudience"`
	HorizonImage    string `yaml:"horizonImage"`
	ProxyImage      string `yaml:"proxyImage"`
	ImagePullPolicy string `yaml:"imagePullPolicy"`
	ProxyUID        int64  `yaml:"proxyUID"`
	Capture         struct {
		InboundPort             int      `yaml:"inboundPort"`
		OutboundPort            int      `yaml:"outboundPort"`
		ExcludeInboundPorts     []int    `yaml:"excludeInboundPorts"`
		ExcludeOutboundPorts    []int    `yaml:"excludeOutboundPorts"`
		ExcludeOutboundIPRanges []string `yaml:"excludeOutboundIPRanges"`
	} `yaml:"capture"`
	Clusters map[string]struct {
		XDSAddress string `yaml:"xdsAddress"`
	} `yaml:"clusters"`
}

// TestInjectorContract: the MutatingWebhookConfiguration is the issue's
// contract (two webhooks, selected by namespace and pod labels as below,
// CREATE pods, v1, no side effects, Fail, Never, 10 s), calls the injector
// at /inject/<cluster> through the Service horizon-injector on 443 (or
// injector.url), which reaches --injector-address; the control plane reads
// its config from the ConfigMap it mounts, and may get and patch only that
// one webhook configuration.
func TestInjectorContract(t *testing.T) {
	for _, c := range renderCases(t) {
		hooks := objects[*admissionregistrationv1.MutatingWebhookConfiguration](c)
		if c.value("injector.enabled", true) != true {
			if len(hooks) != 0 {
				t.Errorf("%s: injector.enabled false renders %d webhook configurations", c.name, len(hooks))
			}
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			if len(hooks) != 1 || hooks[0].Name != "horizon-injector" || len(hooks[0].Webhooks) != 2 {
				t.Fatalf("webhook configurations %+v, want horizon-injector with two webhooks", hooks)
			}
			mwc := hooks[0]
			path := "/inject/" + fmt.Sprint(c.value("cluster.name", ""))
			for _, w := range mwc.Webhooks {
				rule := admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
				}
				if len(w.Rules) != 1 || fmt.Sprint(w.Rules[0]) != fmt.Sprint(rule) || w.SideEffects == nil || *w.SideEffects != admissionregistrationv1.SideEffectClassNone ||
					!slices.Equal(w.AdmissionReviewVersions, []string{"v1"}) || w.FailurePolicy == nil || *w.FailurePolicy != admissionregistrationv1.Fail ||
					w.ReinvocationPolicy == nil || *w.ReinvocationPolicy != admissionregistrationv1.NeverReinvocationPolicy || w.TimeoutSeconds == nil || *w.TimeoutSeconds != 10 {
					t.Errorf("webhook %s: %+v", w.Name, w)
				}
				if url := c.value("injector.url", ""); url != "" {
					if w.ClientConfig.URL == nil || *w.ClientConfig.URL != fmt.Sprint(url)+path || w.ClientConfig.Service != nil {
						t.Errorf("webhook %s calls %+v, want %s%s", w.Name, w.ClientConfig, url, path)
					}
				} else if s := w.ClientConfig.Service; s == nil || s.Name != "horizon-injector" || s.Namespace != namespace || s.Path == nil || *s.Path != path || s.Port == nil || *s.Port != 443 {
					t.Errorf("webhook %s calls %+v, want Service %s/horizon-injector:443%s", w.Name, w.ClientConfig, namespace, path)
				}
				if pem := c.value("injector.caBundle", ""); pem != "" && !bytes.Equal(w.ClientConfig.CABundle, []byte(fmt.Sprint(pem))) {
					t.Errorf("webhook %s caBundle is not injector.caBundle", w.Name)
				}
			}
			// Which webhooks a pod's creation calls, by its namespace's
			// labels and its own.
			for _, tc := range []struct {
				ns       string
				nsLabels map[string]string
				pod      map[string]string
				want     int
			}{
				{"demo", map[string]string{"horizon-injection": "enabled"}, nil, 1},
				{"demo", map[string]string{"horizon-injection": "enabled"}, map[string]string{"sidecar.horizon.io/inject": "false"}, 0},
				{"demo", map[string]string{"horizon-injection": "enabled"}, map[string]string{"sidecar.horizon.io/inject": "true"}, 1},
				{"demo", nil, map[string]string{"sidecar.horizon.io/inject": "true"}, 1},
				{"demo", nil, nil, 0},
				{"demo", map[string]string{"horizon-injection": "disabled"}, map[string]string{"sidecar.horizon.io/inject": "true"}, 0},
				{namespace, map[string]string{"horizon-injection": "enabled"}, map[string]string{"sidecar.horizon.io/inject": "true"}, 0},
				{"kube-system", map[string]string{"horizon-injection": "enabled"}, map[string]string{"sidecar.horizon.io/inject": "true"}, 0},
			} {
				nsLabels := labels.Set{corev1.LabelMetadataName: tc.ns}
				for k, v := range tc.nsLabels {
					nsLabels[k] = v
				}
				called := 0
				for _, w := range mwc.Webhooks {
					if selects(w.NamespaceSelector, nsLabels) && selects(w.ObjectSelector, labels.Set(tc.pod)) {
						called++
					}
				}
				if called != tc.want {
					t.Errorf("namespace %v, pod %v: %d webhooks called, want %d", nsLabels, tc.pod, called, tc.want)
				}
			}
			if c.value("controlPlane.enabled", true) != true {
				return
			}
			d, ctr := serveContainer(t, c)
			port := listenPort(t, flag1(t, c, ctr.Args, "--injector-address"))
			if port != int32(toInt(c.value("injector.port", 15017))) {
				t.Errorf("--injector-address port %d, want injector.port", port)
			}
			var svc *corev1.Service
			for _, s := range objects[*corev1.Service](c) {
				if s.Name == "horizon-injector" {
					svc = s
				}
			}
			if svc == nil || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 443 || containerPort(ctr, svc.Spec.Ports[0].TargetPort.StrVal) != port ||
				!labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
				t.Errorf("Service horizon-injector %+v does not send 443 to the control plane's port %d", svc, port)
			}
			// The webhook's certificate covers the name the apiserver calls.
			host := "horizon-injector." + namespace + ".svc"
			if u := fmt.Sprint(c.value("injector.url", "")); u != "" {
				parsed, err := url.Parse(u)
				if err != nil {
					t.Fatal(err)
				}
				host = parsed.Hostname()
			}
			names := append([]string{"horizon-injector." + namespace + ".svc"}, manifests.FlagValues(ctr.Args, "--injector-dns-names")...)
			if !slices.Contains(strings.Split(strings.Join(names, ","), ","), host) {
				t.Errorf("the injector's certificate names %q, not %s, which the apiserver calls", names, host)
			}
			if ips := fmt.Sprint(c.value("injector.ipSANs", []any{})); ips != "[]" && !slices.Equal(manifests.FlagValues(ctr.Args, "--injector-ip-sans"), []string{strings.Trim(strings.ReplaceAll(ips, " ", ","), "[]")}) {
				t.Errorf("--injector-ip-sans %q, want injector.ipSANs %s", manifests.FlagValues(ctr.Args, "--injector-ip-sans"), ips)
			}
			file := flag1(t, c, ctr.Args, "--injector-config")
			v := volumeAt(d.Spec.Template.Spec, ctr, file)
			if v == nil || v.ConfigMap == nil {
				t.Fatalf("--injector-config %s is on no ConfigMap volume", file)
			}
			var cm *corev1.ConfigMap
			for _, m := range objects[*corev1.ConfigMap](c) {
				if m.Name == v.ConfigMap.Name {
					cm = m
				}
			}
			data, ok := "", false
			if cm != nil {
				data, ok = cm.Data[filepath.Base(file)]
			}
			if !ok {
				t.Fatalf("ConfigMap %s has no %s", v.ConfigMap.Name, filepath.Base(file))
			}
			var cfg injectorConfig
			dec := yaml.NewDecoder(strings.NewReader(data))
			dec.KnownFields(true)
			if err := dec.Decode(&cfg); err != nil {
				t.Fatalf("ConfigMap %s %s: %v", cm.Name, filepath.Base(file), err)
			}
			want := injectorConfig{
				TrustDomain: "cluster.local", XDSAddress: "horizon." + namespace + ".svc:15012",
				XDSServerID:   "spiffe://cluster.local/ns/" + namespace + "/sa/" + d.Spec.Template.Spec.ServiceAccountName,
				TokenAudience: "horizon", HorizonImage: ctr.Image, ProxyImage: "envoyproxy/envoy:v1.36.2", ImagePullPolicy: "IfNotPresent", ProxyUID: 1337,
			}
			want.Capture.InboundPort, want.Capture.OutboundPort = 15006, 15001
			want.Capture.ExcludeInboundPorts, want.Capture.ExcludeOutboundPorts, want.Capture.ExcludeOutboundIPRanges = []int{15020, 15021, 15090}, []int{}, []string{}
			if clusters, _ := c.value("injector.clusters", map[string]any{}).(map[string]any); len(clusters) > 0 {
				want.Clusters = map[string]struct {
					XDSAddress string `yaml:"xdsAddress"`
				}{}
				for name, v := range clusters {
					want.Clusters[name] = struct {
						XDSAddress string `yaml:"xdsAddress"`
					}{fmt.Sprint(v.(map[string]any)["xdsAddress"])}
				}
			}
			if fmt.Sprintf("%+v", cfg) != fmt.Sprintf("%+v", want) {
				t.Errorf("injector config\n%+v\nwant\n%+v", cfg, want)
			}
			// The caBundle: Horizon keeps it (and may touch that one object
			// only), or the values give it.
			managed := manifests.FlagValues(ctr.Args, "--injector-webhook-config")
			if (len(managed) == 1) == (c.value("injector.caBundle", "") != "") || (len(managed) == 1 && managed[0] != mwc.Name) {
				t.Errorf("--injector-webhook-config %q with injector.caBundle %q", managed, c.value("injector.caBundle", ""))
			}
			var rules []rbacv1.PolicyRule
			for _, b := range objects[*rbacv1.ClusterRoleBinding](c) {
				if !slices.Contains(b.Subjects, rbacv1.Subject{Kind: "ServiceAccount", Name: d.Spec.Template.Spec.ServiceAccountName, Namespace: namespace}) {
					continue
				}
				for _, r := range objects[*rbacv1.ClusterRole](c) {
					if r.Name == b.RoleRef.Name && r.Name != kube.ReaderClusterRole {
						rules = append(rules, r.Rules...)
					}
				}
			}
			wantRules := []rbacv1.PolicyRule{{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"mutatingwebhookconfigurations"}, ResourceNames: []string{mwc.Name}, Verbs: []string{"get", "patch"}}}
			if len(managed) == 0 {
				wantRules = nil
			}
			if !slices.EqualFunc(rules, wantRules, ruleEqual) {
				t.Errorf("cluster-wide rules of the control plane (reader aside) %+v, want %+v", rules, wantRules)
			}
		})
	}
}

// volumeAt is the volume of pod that ctr mounts path on (the longest
// mount path holding it), or nil.
func volumeAt(pod corev1.PodSpec, ctr corev1.Container, path string) *corev1.Volume {
	best := ""
	var vol *corev1.Volume
	for _, m := range ctr.VolumeMounts {
		mp := filepath.Clean(m.MountPath)
		if (path == mp || strings.HasPrefix(path, mp+"/")) && len(mp) > len(best) {
			for i := range pod.Volumes {
				if pod.Volumes[i].Name == m.Name {
					best, vol = mp, &pod.Volumes[i]
				}
			}
		}
	}
	return vol
}

func selects(sel *metav1.LabelSelector, set labels.Set) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && s.Matches(set)
}

func ruleEqual(a, b rbacv1.PolicyRule) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

func mapsEqual[K comparable](a, b map[K]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// toInt reads a values number (YAML gives int64 or float64).
func toInt(v any) int {
	switch n := v.(type) {
	case int:
		return n
	case int64:
		return int(n)
	case float64:
		return int(n)
	}
	return -1
}
