// Package kubernetes_test keeps the Kubernetes deployment example valid: every
// document decodes strictly into its API type, and the contract values
// (labels, ports, flags) are the ones the code uses.
package kubernetes_test

import (
	"bytes"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	mcscrd "sigs.k8s.io/mcs-api/config/crd"

	"github.com/horizonmesh/horizon/charts"
	"github.com/horizonmesh/horizon/discovery/kube"
	"github.com/horizonmesh/horizon/discovery/kube/dnstest"
	"github.com/horizonmesh/horizon/internal/testkit/manifests"
)

// injectorPort is the port the chart serves the injector's webhook on in
// the control plane's pods (values injector.port).
const injectorPort = 15017

// valuesFile holds the chart values the generated manifests are rendered
// with: no manifest.
const valuesFile = "values.yaml"

// decodeAll decodes every manifest matching the patterns strictly
// (manifests.Decode), values.yaml aside.
func decodeAll(t *testing.T, patterns ...string) manifests.Docs {
	t.Helper()
	var files []string
	for _, pattern := range patterns {
		matches, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range matches {
			if f != valuesFile {
				files = append(files, f)
			}
		}
	}
	return manifests.DecodeFiles(t, files...)
}

func TestExamplesDecode(t *testing.T) {
	objs := decodeAll(t, "*.yaml", filepath.Join("crds", "*.yaml"), filepath.Join("opt-in", "*.yaml"))
	if len(objs) < 8 {
		t.Fatalf("decoded %d files, want every example", len(objs))
	}
	for file, list := range objs {
		for _, obj := range list {
			m, _ := meta.Accessor(obj)
			switch obj.(type) {
			case *corev1.Namespace, *apiextensionsv1.CustomResourceDefinition:
			default:
				if file == charts.WorkloadFile || file == charts.InjectedWorkloadFile {
					continue // a workload, in its own namespace
				}
				if file == "coredns.yaml" {
					continue // the cluster's DNS, in kube-system
				}
				if ns := m.GetNamespace(); ns != "horizon-system" && !clusterScoped(obj) {
					t.Errorf("%s: %T %s in namespace %q, want horizon-system", file, obj, m.GetName(), ns)
				}
			}
		}
	}
}

func clusterScoped(obj runtime.Object) bool {
	switch obj.GetObjectKind().GroupVersionKind().Kind {
	case "ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration":
		return true
	}
	return false
}

func one[T runtime.Object](t *testing.T, file string) T {
	t.Helper()
	for _, obj := range decodeAll(t, file)[file] {
		if v, ok := obj.(T); ok {
			return v
		}
	}
	var zero T
	t.Fatalf("%s: no %T", file, zero)
	return zero
}

// TestCoreDNSExample: the Corefile serves clusterset.local from the kubernetes
// plugin with the multicluster option, and the ClusterRole bound to CoreDNS's
// ServiceAccount lets it list and watch ServiceImports and EndpointSlices
// (discovery/kube/dnstest runs this very block and RBAC against a real
// apiserver; this test names what must not be lost in an edit).
func TestCoreDNSExample(t *testing.T) {
	cm := one[*corev1.ConfigMap](t, "coredns.yaml")
	if cm.Namespace != "kube-system" || cm.Name != "coredns" {
		t.Errorf("ConfigMap %s/%s, want kube-system/coredns", cm.Namespace, cm.Name)
	}
	block, err := dnstest.KubernetesBlock(cm.Data["Corefile"])
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(block, "\n")
	if zones := strings.Fields(strings.TrimSuffix(strings.TrimSpace(lines[0]), "{")); !slices.Contains(zones[1:], "cluster.local") || !slices.Contains(zones[1:], "clusterset.local") {
		t.Errorf("kubernetes zones %v, want cluster.local and clusterset.local", zones[1:])
	}
	multicluster := false
	for _, line := range lines[1:] {
		if f := strings.Fields(line); len(f) > 0 && f[0] == "multicluster" {
			multicluster = slices.Equal(f[1:], []string{"clusterset.local"})
		}
	}
	if !multicluster {
		t.Errorf("kubernetes block has no `multicluster clusterset.local`:\n%s", block)
	}

	role := one[*rbacv1.ClusterRole](t, "coredns.yaml")
	for _, want := range []struct{ group, resource string }{
		{"multicluster.x-k8s.io", "serviceimports"},
		{"discovery.k8s.io", "endpointslices"},
	} {
		verbs := map[string]bool{}
		for _, r := range role.Rules {
			if slices.Contains(r.APIGroups, want.group) && slices.Contains(r.Resources, want.resource) {
				for _, v := range r.Verbs {
					verbs[v] = true
				}
			}
		}
		if !verbs["list"] || !verbs["watch"] {
			t.Errorf("ClusterRole %s: %s.%s verbs %v, want list and watch", role.Name, want.resource, want.group, verbs)
		}
	}
	binding := one[*rbacv1.ClusterRoleBinding](t, "coredns.yaml")
	if binding.RoleRef.Kind != "ClusterRole" || binding.RoleRef.Name != role.Name {
		t.Errorf("ClusterRoleBinding %s binds %s %s, want ClusterRole %s", binding.Name, binding.RoleRef.Kind, binding.RoleRef.Name, role.Name)
	}
	want := rbacv1.Subject{Kind: "ServiceAccount", Name: "coredns", Namespace: "kube-system"}
	if !slices.Contains(binding.Subjects, want) {
		t.Errorf("ClusterRoleBinding %s subjects %v, want %v", binding.Name, binding.Subjects, want)
	}
}

// TestCRDsVerbatim: the CRDs are the MCS module's, byte for byte after the
// header comment.
func TestCRDsVerbatim(t *testing.T) {
	for file, want := range map[string][]byte{
		"multicluster.x-k8s.io_serviceexports.yaml": mcscrd.ServiceExportCRD,
		"multicluster.x-k8s.io_serviceimports.yaml": mcscrd.ServiceImportCRD,
	} {
		got, err := os.ReadFile(filepath.Join("crds", file))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasSuffix(got, want) || !manifests.IsBlank(got[:len(got)-len(want)]) {
			t.Errorf("crds/%s is not a verbatim copy of sigs.k8s.io/mcs-api's config/crd/%s (with a comment above it)", file, file)
		}
	}
}

func TestDeploymentContract(t *testing.T) {
	d := one[*appsv1.Deployment](t, "deployment.yaml")
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2", d.Spec.Replicas)
	}
	pod := d.Spec.Template.Spec
	if pod.ServiceAccountName != "horizon" || pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
		t.Errorf("pod runs as %q, security context %+v", pod.ServiceAccountName, pod.SecurityContext)
	}
	if len(pod.TopologySpreadConstraints) == 0 {
		t.Error("no topology spread")
	}
	c := pod.Containers[0]
	if c.Args[0] != "serve" || !slices.Contains(c.Args, "--member-secrets-namespace=horizon-system") || !slices.Contains(c.Args, "--ca-dir=/etc/horizon/ca") ||
		!slices.Contains(c.Args, "--mtls-address=:15012") {
		t.Errorf("args %q", c.Args)
	}
	// ROLE=gateway is allowed to the gateways' own identity only.
	gw := one[*appsv1.Deployment](t, "gateway-deployment.yaml")
	wantGW := "spiffe://cluster.local/ns/" + gw.Namespace + "/sa/" + gw.Spec.Template.Spec.ServiceAccountName
	if ids := manifests.FlagValues(c.Args, "--gateway-identity"); !slices.Equal(ids, []string{wantGW}) {
		t.Errorf("--gateway-identity %q, want the gateway deployment's identity %s", ids, wantGW)
	}
	// The plaintext xDS port is off: no proxy in the cluster can use it.
	if xdsAddress := manifests.FlagValues(c.Args, "--xds-address"); !slices.Equal(xdsAddress, []string{""}) {
		t.Errorf("--xds-address %q, want it given once, empty (plaintext xDS off)", xdsAddress)
	}
	var ports []int32
	for _, p := range c.Ports {
		ports = append(ports, p.ContainerPort)
	}
	if !slices.Equal(ports, []int32{15012, 15014, injectorPort}) {
		t.Errorf("container ports %v, want 15012, 15014 and the injector's %d", ports, injectorPort)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Error("probes are not /readyz and /healthz")
	}
	caMounted := false
	for _, m := range c.VolumeMounts {
		for _, v := range pod.Volumes {
			if m.MountPath == "/etc/horizon/ca" && v.Name == m.Name && v.Secret != nil && v.Secret.SecretName == "horizon-ca" {
				caMounted = true
			}
		}
	}
	if !caMounted {
		t.Errorf("the CA Secret is not mounted at --ca-dir: %+v %+v", c.VolumeMounts, pod.Volumes)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v", c.Resources)
	}
}

func TestMemberSecretExample(t *testing.T) {
	s := one[*corev1.Secret](t, "member-secret.example.yaml")
	if s.Labels[kube.LabelMemberSecret] != "true" {
		t.Errorf("labels %v", s.Labels)
	}
	for _, a := range []string{kube.AnnotationClusterName, kube.AnnotationNetwork, kube.AnnotationRegion, kube.AnnotationZone} {
		if s.Annotations[a] == "" {
			t.Errorf("no annotation %s", a)
		}
	}
	if !strings.Contains(s.StringData[kube.SecretKubeconfigKey], "token:") {
		t.Errorf("no %s with a token", kube.SecretKubeconfigKey)
	}
}

func TestGatewayServiceExample(t *testing.T) {
	s := one[*corev1.Service](t, "gateway-service.yaml")
	if s.Labels[kube.LabelGatewayNetwork] == "" || s.Spec.Type != corev1.ServiceTypeLoadBalancer {
		t.Errorf("labels %v, type %s", s.Labels, s.Spec.Type)
	}
	if len(s.Spec.Ports) != 1 || s.Spec.Ports[0].Name != "tls" || s.Spec.Ports[0].Port != kube.DefaultGatewayPort {
		t.Errorf("ports %+v", s.Spec.Ports)
	}
}

// TestBootstrapInThePod: every container that runs `horizon bootstrap` makes
// the bootstrap in its own pod (manifests.CheckBootstrapInThePod).
func TestBootstrapInThePod(t *testing.T) {
	if manifests.CheckBootstrapInThePod(t, decodeAll(t, "*.yaml")) == 0 {
		t.Error("no example runs horizon bootstrap")
	}
}

// TestGatewayDeploymentExample: the Envoy gateway is what gateway-service.yaml
// selects, gets a gateway bootstrap, and is probed where that bootstrap
// answers.
func TestGatewayDeploymentExample(t *testing.T) {
	d := one[*appsv1.Deployment](t, "gateway-deployment.yaml")
	s := one[*corev1.Service](t, "gateway-service.yaml")
	for k, v := range s.Spec.Selector {
		if d.Spec.Template.Labels[k] != v {
			t.Errorf("pod labels %v do not match the gateway Service's selector %v", d.Spec.Template.Labels, s.Spec.Selector)
		}
	}
	pod := d.Spec.Template.Spec
	var bootstrap []string
	for _, c := range pod.InitContainers {
		if len(c.Args) > 0 && c.Args[0] == "bootstrap" {
			bootstrap = c.Args
		}
	}
	if !slices.Contains(bootstrap, "--role=gateway") || !slices.Contains(bootstrap, "--readiness-port=15021") {
		t.Errorf("bootstrap args %q", bootstrap)
	}
	for _, c := range pod.Containers {
		if c.Name != "envoy" {
			continue
		}
		p := c.ReadinessProbe
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz/ready" || p.HTTPGet.Port.String() != "status-port" {
			t.Errorf("envoy readiness probe %+v, want GET /healthz/ready on status-port", p)
		}
		ports := map[string]int32{}
		for _, cp := range c.Ports {
			ports[cp.Name] = cp.ContainerPort
		}
		if ports["status-port"] != 15021 || ports["tls"] != s.Spec.Ports[0].TargetPort.IntVal {
			t.Errorf("envoy ports %v, want status-port 15021 and tls on the Service's target port", ports)
		}
		return
	}
	t.Error("no envoy container")
}

// TestNoPlaintextXDS: no example exposes Horizon's plaintext xDS port or
// dials it (manifests.CheckNoPlaintextXDS).
func TestNoPlaintextXDS(t *testing.T) {
	if n := manifests.CheckNoPlaintextXDS(t, decodeAll(t, "*.yaml")); n < 2 {
		t.Errorf("%d containers run horizon bootstrap, want the workload's and the gateway's", n)
	}
}

// TestFilesMountedAndWritten: every file path a container names is mounted,
// and provided by its volume or written by a container of the pod
// (manifests.CheckFilesMountedAndWritten).
func TestFilesMountedAndWritten(t *testing.T) {
	if checked := manifests.CheckFilesMountedAndWritten(t, decodeAll(t, "*.yaml")); checked < 10 {
		t.Errorf("checked %d paths, want every example's", checked)
	}
}

// userObjects are the Secrets and ConfigMaps README.md's table "Objects you
// create" lists (kind, namespace, name), each with the command that makes it.
func userObjects(t *testing.T) map[manifests.Ref]bool {
	t.Helper()
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## Objects you create\n")
	if !ok {
		t.Fatal(`README.md has no section "## Objects you create"`)
	}
	out := map[manifests.Ref]bool{}
	for line := range strings.Lines(section) {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "## ") {
			break
		}
		if !strings.HasPrefix(line, "|") || strings.HasPrefix(line, "|---") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.Trim(strings.TrimSpace(cells[i]), "`")
		}
		if len(cells) != 4 || cells[0] == "kind" {
			continue
		}
		if !strings.Contains(cells[3], "kubectl") || !strings.Contains(cells[3], cells[2]) {
			t.Errorf("README.md: %s %s/%s: %q is not the command that creates it", cells[0], cells[1], cells[2], cells[3])
		}
		out[manifests.Ref{cells[0], cells[1], cells[2]}] = true
	}
	return out
}

// TestReferencedObjectsExist: every Secret and ConfigMap a manifest names
// (volumes, projected sources, env and envFrom references) is created by a
// manifest of this folder or listed in README.md as the user's, with the
// command that creates it.
func TestReferencedObjectsExist(t *testing.T) {
	if refs := manifests.CheckReferencedObjects(t, decodeAll(t, "*.yaml", filepath.Join("opt-in", "*.yaml")), userObjects(t)); refs < 3 {
		t.Errorf("%d references checked, want the CA Secret's and horizon-root's", refs)
	}
}

// TestMountedFilesReadable: every file of a Secret, ConfigMap or projected
// volume a container mounts is readable by the user it runs as
// (manifests.CheckMountedFilesReadable).
func TestMountedFilesReadable(t *testing.T) {
	if checked := manifests.CheckMountedFilesReadable(t, decodeAll(t, "*.yaml")); checked < 5 {
		t.Errorf("checked %d mounted files, want every example's", checked)
	}
}

func fmtPtr(p *int64) string {
	if p == nil {
		return "unset"
	}
	return strconv.FormatInt(*p, 10)
}

// defaultInstall are the files README.md's `kubectl apply` commands apply,
// outside opt-in/ (a folder stands for its *.yaml).
func defaultInstall(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "kubectl" || !slices.Contains(f, "apply") {
			continue
		}
		for i, w := range f[:len(f)-1] {
			if w != "-f" {
				continue
			}
			file := f[i+1]
			if file == "-" || strings.HasPrefix(file, "opt-in/") {
				continue
			}
			if strings.HasSuffix(file, "/") {
				file += "*.yaml"
			}
			if !slices.Contains(files, file) {
				files = append(files, file)
			}
		}
	}
	return files
}

// TestNoClusterWideReadByDefault: the default install (every file README.md
// applies, opt-in/ aside) binds no ClusterRole to a ServiceAccount of
// horizon-system: cluster-wide read for the control plane in its own cluster
// is opt-in/own-cluster-reader.yaml, which README.md documents.
func TestNoClusterWideReadByDefault(t *testing.T) {
	files := defaultInstall(t)
	for _, want := range []string{"namespace.yaml", "rbac.yaml", "service.yaml", "deployment.yaml", "injector.yaml"} {
		if !slices.Contains(files, want) {
			t.Errorf("README.md does not apply %s (applies %q)", want, files)
		}
	}
	manifests.CheckNoClusterWideRead(t, decodeAll(t, files...), "horizon-system")
	// The opt-in binding exists, binds the reader role to the control
	// plane, and README.md says when to apply it.
	b := one[*rbacv1.ClusterRoleBinding](t, filepath.Join("opt-in", "own-cluster-reader.yaml"))
	d := one[*appsv1.Deployment](t, "deployment.yaml")
	want := rbacv1.Subject{Kind: "ServiceAccount", Name: d.Spec.Template.Spec.ServiceAccountName, Namespace: d.Namespace}
	if b.RoleRef.Name != kube.ReaderClusterRole || !slices.Contains(b.Subjects, want) {
		t.Errorf("opt-in ClusterRoleBinding %s binds %s to %v, want %s to %v", b.Name, b.RoleRef.Name, b.Subjects, kube.ReaderClusterRole, want)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(readme, []byte("apply -f opt-in/own-cluster-reader.yaml")) {
		t.Error("README.md does not say how to apply opt-in/own-cluster-reader.yaml")
	}
}

// Serve's shutdown (cmd/horizon/serve.go): each gRPC server stops gracefully
// within 5 s (then hard), then HTTP within 5 s.
const (
	grpcStopSeconds = 5
	httpStopSeconds = 5
)

// TestControlPlaneLifecycle: a startup probe on a path serve answers on the
// monitoring port, and a drain on termination: a preStop sleep while the pod
// leaves the endpoints, then serve's shutdown, all within the grace period.
func TestControlPlaneLifecycle(t *testing.T) {
	d := one[*appsv1.Deployment](t, "deployment.yaml")
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for kind, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("no HTTP %s probe", kind)
			continue
		}
		if path := p.HTTPGet.Path; path != "/healthz" && path != "/readyz" {
			t.Errorf("%s probe on %s, which serve does not answer", kind, path)
		}
		port := p.HTTPGet.Port.IntVal
		if p.HTTPGet.Port.StrVal != "" {
			port = ports[p.HTTPGet.Port.StrVal]
		}
		if want := manifests.FlagValues(c.Args, "--http-address"); port != 15014 || !slices.Equal(want, []string{":15014"}) {
			t.Errorf("%s probe on port %v (%d), serve's --http-address %q: want both 15014", kind, p.HTTPGet.Port.String(), port, want)
		}
	}
	if p := c.StartupProbe; p != nil && p.PeriodSeconds*p.FailureThreshold < 30 {
		t.Errorf("startup probe gives %d s, want at least 30", p.PeriodSeconds*p.FailureThreshold)
	}
	if p := c.LivenessProbe; p != nil && p.InitialDelaySeconds != 0 && c.StartupProbe != nil {
		t.Errorf("liveness waits %d s on top of the startup probe", p.InitialDelaySeconds)
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds <= 0 {
		t.Fatalf("no preStop sleep: %+v", c.Lifecycle)
	}
	grpcServers := int64(1) // the mutual-TLS port
	if xds := manifests.FlagValues(c.Args, "--xds-address"); len(xds) == 0 || xds[len(xds)-1] != "" {
		grpcServers++
	}
	need := c.Lifecycle.PreStop.Sleep.Seconds + grpcServers*grpcStopSeconds + httpStopSeconds
	if pod.TerminationGracePeriodSeconds == nil || *pod.TerminationGracePeriodSeconds < need {
		t.Errorf("terminationGracePeriodSeconds %v, want at least %d (preStop %d s, %d gRPC server(s) × %d s, HTTP %d s)",
			fmtPtr(pod.TerminationGracePeriodSeconds), need, c.Lifecycle.PreStop.Sleep.Seconds, grpcServers, grpcStopSeconds, httpStopSeconds)
	}
}

// TestNetworkPolicy: the control plane's pods admit 15012 (xDS over mutual
// TLS) from every namespace and 15014 (monitoring) from the monitoring
// namespace only, and nothing else; both are container ports.
func TestNetworkPolicy(t *testing.T) {
	d := one[*appsv1.Deployment](t, "deployment.yaml")
	np := one[*networkingv1.NetworkPolicy](t, "deployment.yaml")
	if np.Namespace != d.Namespace {
		t.Errorf("NetworkPolicy in %s, Deployment in %s", np.Namespace, d.Namespace)
	}
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil || np.Spec.PodSelector.Size() == 0 || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("NetworkPolicy selects %v, not the control plane's pods %v", np.Spec.PodSelector, d.Spec.Template.Labels)
	}
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
		t.Errorf("policy types %v, want Ingress", np.Spec.PolicyTypes)
	}
	containerPorts := map[int32]bool{}
	for _, p := range d.Spec.Template.Spec.Containers[0].Ports {
		containerPorts[p.ContainerPort] = true
	}
	from := map[int32][]networkingv1.NetworkPolicyPeer{}
	for _, r := range np.Spec.Ingress {
		if len(r.Ports) == 0 || len(r.From) == 0 {
			t.Errorf("ingress rule %+v admits every port or every source", r)
		}
		for _, p := range r.Ports {
			if p.Port == nil || p.Port.IntVal == 0 || !containerPorts[p.Port.IntVal] {
				t.Errorf("ingress port %v is not a container port of %v", p.Port, containerPorts)
				continue
			}
			from[p.Port.IntVal] = append(from[p.Port.IntVal], r.From...)
		}
	}
	mesh := []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}}}
	if !reflect.DeepEqual(from[15012], mesh) {
		t.Errorf("15012 admitted from %+v, want every namespace", from[15012])
	}
	monitoring := []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: "monitoring"}}}}
	if !reflect.DeepEqual(from[15014], monitoring) {
		t.Errorf("15014 admitted from %+v, want the namespace monitoring only", from[15014])
	}
	// The injector's webhook is called by the apiserver, which is no pod.
	anywhere := []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0"}}, {IPBlock: &networkingv1.IPBlock{CIDR: "::/0"}}}
	if !reflect.DeepEqual(from[injectorPort], anywhere) {
		t.Errorf("%d admitted from %+v, want any address", injectorPort, from[injectorPort])
	}
	if len(from) != 3 {
		t.Errorf("ports admitted %v, want 15012, 15014 and %d", slices.Collect(maps.Keys(from)), injectorPort)
	}
}

// TestSVIDKeyReadable: every container reading an agent's SVID key runs as
// the agent's user (manifests.CheckSVIDKeyReadable).
func TestSVIDKeyReadable(t *testing.T) {
	if checked := manifests.CheckSVIDKeyReadable(t, decodeAll(t, "*.yaml")); checked < 2 {
		t.Errorf("checked %d readers of an agent's SVID, want the workload's app and the gateway's Envoy", checked)
	}
}
