// Package kubernetes_test keeps the Kubernetes deployment example valid: every
// document decodes strictly into its API type, and the contract values
// (labels, ports, flags) are the ones the code uses.
package kubernetes_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
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
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	mcscrd "sigs.k8s.io/mcs-api/config/crd"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/discovery/kube"
	"github.com/horizonmesh/horizon/discovery/kube/dnstest"
	"github.com/horizonmesh/horizon/xds/bootstrap"
)

// decodeAll decodes every YAML document of every file matching the patterns,
// strictly (unknown or duplicate fields are errors).
func decodeAll(t *testing.T, patterns ...string) map[string][]runtime.Object {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme, mcsv1alpha1.AddToScheme, mcsv1beta1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	decoder := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
	out := map[string][]runtime.Object{}
	for _, pattern := range patterns {
		files, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
			for i := 0; ; i++ {
				doc, err := r.Read()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("%s: document %d: %v", file, i, err)
				}
				if isBlank(doc) {
					continue
				}
				obj, gvk, err := decoder.Decode(doc, nil, nil)
				if err != nil {
					t.Errorf("%s: document %d: %v", file, i, err)
					continue
				}
				if m, err := meta.Accessor(obj); err != nil || m.GetName() == "" {
					t.Errorf("%s: %v without a name", file, gvk)
				}
				out[file] = append(out[file], obj)
			}
			if len(out[file]) == 0 {
				t.Errorf("%s: no Kubernetes object", file)
			}
		}
	}
	return out
}

// isBlank: only comments and white space.
func isBlank(doc []byte) bool {
	for line := range strings.Lines(string(doc)) {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
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
				if file == "workload-agent.yaml" {
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
	case "ClusterRole", "ClusterRoleBinding":
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
		if !bytes.HasSuffix(got, want) || !isBlank(got[:len(got)-len(want)]) {
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
	if ids := flagValues(c.Args, "--gateway-identity"); !slices.Equal(ids, []string{wantGW}) {
		t.Errorf("--gateway-identity %q, want the gateway deployment's identity %s", ids, wantGW)
	}
	// The plaintext xDS port is off: no proxy in the cluster can use it.
	if xdsAddress := flagValues(c.Args, "--xds-address"); !slices.Equal(xdsAddress, []string{""}) {
		t.Errorf("--xds-address %q, want it given once, empty (plaintext xDS off)", xdsAddress)
	}
	var ports []int32
	for _, p := range c.Ports {
		ports = append(ports, p.ContainerPort)
	}
	if !slices.Equal(ports, []int32{15012, 15014}) {
		t.Errorf("container ports %v", ports)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Error("probes are not /readyz and /healthz")
	}
	if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != "/etc/horizon/ca" || len(pod.Volumes) != 1 || pod.Volumes[0].Secret == nil || pod.Volumes[0].Secret.SecretName != "horizon-ca" {
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
// the bootstrap in its own pod, with the pod's name, namespace and IP from
// the downward API and no --id, so each proxy's node id is its own.
func TestBootstrapInThePod(t *testing.T) {
	want := map[string]string{"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace", "POD_IP": "status.podIP"}
	found := 0
	for file, list := range decodeAll(t, "*.yaml") {
		for _, obj := range list {
			d, ok := obj.(*appsv1.Deployment)
			if !ok {
				continue
			}
			spec := d.Spec.Template.Spec
			for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
				if len(c.Args) == 0 || c.Args[0] != "bootstrap" {
					continue
				}
				found++
				for _, a := range c.Args {
					if strings.HasPrefix(a, "--id") {
						t.Errorf("%s: container %s passes %s: every replica would share it", file, c.Name, a)
					}
				}
				got := map[string]string{}
				for _, e := range c.Env {
					if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
						got[e.Name] = e.ValueFrom.FieldRef.FieldPath
					}
				}
				for name, path := range want {
					if got[name] != path {
						t.Errorf("%s: container %s: env %s from %q, want fieldRef %s", file, c.Name, name, got[name], path)
					}
				}
			}
		}
	}
	if found == 0 {
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

// flagValues are the values of flag (--name=value) in args, in order.
func flagValues(args []string, flag string) []string {
	var values []string
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			values = append(values, v)
		}
	}
	return values
}

// plaintextXDSPort is Horizon's plaintext xDS port: local development only.
const plaintextXDSPort = 15010

// TestNoPlaintextXDS: no example exposes Horizon's plaintext xDS port or
// dials it. No Service port or target port is 15010, no container port is,
// and no container's arguments, command or environment name it. Every
// `horizon bootstrap` points its proxy at the mutual-TLS port, and a
// proxyless app whose bootstrap does runs with grpc-go's SPIFFE switch,
// without which grpc-go cannot verify Horizon there.
func TestNoPlaintextXDS(t *testing.T) {
	port := strconv.Itoa(plaintextXDSPort)
	bootstraps := 0
	for file, list := range decodeAll(t, "*.yaml") {
		for _, obj := range list {
			switch o := obj.(type) {
			case *corev1.Service:
				for _, p := range o.Spec.Ports {
					if p.Port == plaintextXDSPort || p.TargetPort.IntValue() == plaintextXDSPort {
						t.Errorf("%s: Service %s exposes the plaintext xDS port: %+v", file, o.Name, p)
					}
				}
			case *appsv1.Deployment:
				spec := o.Spec.Template.Spec
				containers := append(slices.Clone(spec.InitContainers), spec.Containers...)
				proxyless := false
				for _, c := range containers {
					for _, p := range c.Ports {
						if p.ContainerPort == plaintextXDSPort {
							t.Errorf("%s: container %s has the plaintext xDS port: %+v", file, c.Name, p)
						}
					}
					words := append(slices.Clone(c.Command), c.Args...)
					for _, e := range c.Env {
						words = append(words, e.Value)
					}
					for _, w := range words {
						if strings.Contains(w, port) {
							t.Errorf("%s: container %s names the plaintext xDS port: %q", file, c.Name, w)
						}
					}
					if len(c.Args) == 0 || c.Args[0] != "bootstrap" {
						continue
					}
					bootstraps++
					addr := flagValues(c.Args, "--mtls-address")
					if len(addr) != 1 || !strings.HasSuffix(addr[0], ":15012") || flagValues(c.Args, "--xds-address") != nil {
						t.Errorf("%s: container %s: bootstrap %q, want --mtls-address on port 15012 and no --xds-address", file, c.Name, c.Args)
					}
					proxyless = proxyless || slices.Contains(c.Args, "--role=proxyless")
				}
				if !proxyless {
					continue
				}
				for _, c := range containers {
					env := map[string]string{}
					for _, e := range c.Env {
						env[e.Name] = e.Value
					}
					if _, app := env["GRPC_XDS_BOOTSTRAP"]; app && env[bootstrap.EnvGRPCSPIFFE] != "true" {
						t.Errorf("%s: container %s reads a proxyless bootstrap on the mutual-TLS port without %s=true", file, c.Name, bootstrap.EnvGRPCSPIFFE)
					}
				}
			}
		}
	}
	if bootstraps < 2 {
		t.Errorf("%d containers run horizon bootstrap, want the workload's and the gateway's", bootstraps)
	}
}

// podTemplates are the pod templates of every Deployment in the files
// matching the patterns, by "file/name".
func podTemplates(t *testing.T, patterns ...string) map[string]corev1.PodSpec {
	t.Helper()
	pods := map[string]corev1.PodSpec{}
	for file, list := range decodeAll(t, patterns...) {
		for _, obj := range list {
			if d, ok := obj.(*appsv1.Deployment); ok {
				pods[file+"/"+d.Name] = d.Spec.Template.Spec
			}
		}
	}
	if len(pods) == 0 {
		t.Fatal("no Deployment")
	}
	return pods
}

func allContainers(pod corev1.PodSpec) []corev1.Container {
	return append(slices.Clone(pod.InitContainers), pod.Containers...)
}

// namedPaths are the absolute file paths a container's arguments, command
// and environment name (--flag=/path, /path, env value /path), except
// `horizon bootstrap --cert-dir`, which names a path in the proxy's
// containers, not its own (see bootstrapCertDirs).
func namedPaths(c corev1.Container) []string {
	var paths []string
	words := append(slices.Clone(c.Command), c.Args...)
	for _, e := range c.Env {
		words = append(words, e.Value)
	}
	for _, w := range words {
		if len(c.Args) > 0 && c.Args[0] == "bootstrap" && strings.HasPrefix(w, "--cert-dir=") {
			continue
		}
		if _, v, ok := strings.Cut(w, "="); ok && strings.HasPrefix(w, "--") {
			w = v
		}
		if strings.HasPrefix(w, "/") {
			paths = append(paths, filepath.Clean(w))
		}
	}
	return paths
}

// outPaths are the paths a container writes: --out=, or a shell redirect.
func outPaths(c corev1.Container) []string {
	out := flagValues(c.Args, "--out")
	words := strings.Fields(strings.Join(append(slices.Clone(c.Command), c.Args...), " "))
	for i, w := range words {
		if w == ">" && i+1 < len(words) {
			out = append(out, words[i+1])
		}
	}
	for i := range out {
		out[i] = filepath.Clean(out[i])
	}
	return out
}

// mountOf is the mount of c holding path (the longest mount path prefix),
// and path relative to it.
func mountOf(c corev1.Container, path string) (corev1.VolumeMount, string, bool) {
	var best corev1.VolumeMount
	rel, found := "", false
	for _, m := range c.VolumeMounts {
		mp := filepath.Clean(m.MountPath)
		if r, err := filepath.Rel(mp, path); err == nil && !strings.HasPrefix(r, "..") && (!found || len(mp) > len(best.MountPath)) {
			best, rel, found = m, r, true
		}
	}
	return best, rel, found
}

// related: one relative path is the other or inside it (a file in a
// directory written, or the directory of a file written).
func related(a, b string) bool {
	inside := func(x, dir string) bool { return dir == "." || x == dir || strings.HasPrefix(x, dir+"/") }
	return inside(a, b) || inside(b, a)
}

// TestFilesMountedAndWritten: every file path a container's arguments or
// environment name is on a volume mounted in that container, and is either
// provided by the volume's source (Secret, ConfigMap, projected token) or,
// on an emptyDir, written by some container of the pod that mounts it
// writable (--out or a redirect). The paths `horizon bootstrap --cert-dir`
// names are checked in the containers that read that bootstrap.
func TestFilesMountedAndWritten(t *testing.T) {
	checked := 0
	for name, pod := range podTemplates(t, "*.yaml") {
		volumes := map[string]corev1.Volume{}
		for _, v := range pod.Volumes {
			volumes[v.Name] = v
		}
		containers := allContainers(pod)
		check := func(c corev1.Container, path string) {
			checked++
			m, rel, ok := mountOf(c, path)
			if !ok {
				t.Errorf("%s: container %s names %s, on no volume it mounts", name, c.Name, path)
				return
			}
			v, ok := volumes[m.Name]
			if !ok {
				t.Errorf("%s: container %s mounts volume %s, which the pod does not have", name, c.Name, m.Name)
				return
			}
			if v.EmptyDir == nil {
				if v.Secret == nil && v.ConfigMap == nil && v.Projected == nil && v.DownwardAPI == nil {
					t.Errorf("%s: container %s: %s is on volume %s, which is neither an emptyDir nor a Secret, ConfigMap or projected volume", name, c.Name, path, m.Name)
				}
				return
			}
			for _, w := range containers {
				for _, out := range outPaths(w) {
					wm, wrel, ok := mountOf(w, out)
					if ok && wm.Name == m.Name && !wm.ReadOnly && related(rel, wrel) {
						return
					}
				}
			}
			t.Errorf("%s: container %s reads %s from the emptyDir %s, which no container writes", name, c.Name, path, m.Name)
		}
		for _, c := range containers {
			for _, p := range namedPaths(c) {
				check(c, p)
			}
			if len(c.Args) == 0 || c.Args[0] != "bootstrap" {
				continue
			}
			// The bootstrap's --cert-dir is read by the containers that
			// mount the volume the bootstrap is written to.
			out := outPaths(c)
			if len(out) != 1 {
				t.Errorf("%s: container %s: bootstrap writes %q, want one --out", name, c.Name, out)
				continue
			}
			bm, _, ok := mountOf(c, out[0])
			if !ok {
				t.Errorf("%s: container %s writes %s on no volume", name, c.Name, out[0])
				continue
			}
			readers := 0
			for _, r := range containers {
				if rm, _, ok := mountOf(r, out[0]); !ok || rm.Name != bm.Name || r.Name == c.Name {
					continue
				}
				readers++
				for _, dir := range flagValues(c.Args, "--cert-dir") {
					check(r, filepath.Clean(dir))
				}
			}
			if readers == 0 {
				t.Errorf("%s: container %s writes its bootstrap where no other container mounts it", name, c.Name)
			}
		}
	}
	if checked < 10 {
		t.Errorf("checked %d paths, want every example's", checked)
	}
}

// userObjects are the Secrets and ConfigMaps README.md's table "Objects you
// create" lists (kind, namespace, name), each with the command that makes it.
func userObjects(t *testing.T) map[[3]string]bool {
	t.Helper()
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## Objects you create\n")
	if !ok {
		t.Fatal(`README.md has no section "## Objects you create"`)
	}
	out := map[[3]string]bool{}
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
		out[[3]string{cells[0], cells[1], cells[2]}] = true
	}
	return out
}

// TestReferencedObjectsExist: every Secret and ConfigMap a manifest names
// (volumes, projected sources, env and envFrom references) is created by a
// manifest of this folder or listed in README.md as the user's, with the
// command that creates it.
func TestReferencedObjectsExist(t *testing.T) {
	objs := decodeAll(t, "*.yaml", filepath.Join("opt-in", "*.yaml"))
	created := userObjects(t)
	for _, list := range objs {
		for _, obj := range list {
			switch o := obj.(type) {
			case *corev1.Secret:
				created[[3]string{"Secret", o.Namespace, o.Name}] = true
			case *corev1.ConfigMap:
				created[[3]string{"ConfigMap", o.Namespace, o.Name}] = true
			}
		}
	}
	refs := 0
	for file, list := range objs {
		for _, obj := range list {
			d, ok := obj.(*appsv1.Deployment)
			if !ok {
				continue
			}
			need := func(kind, name string) {
				refs++
				if !created[[3]string{kind, d.Namespace, name}] {
					t.Errorf("%s: Deployment %s names %s %s/%s, which no manifest creates and README.md's \"Objects you create\" does not list", file, d.Name, kind, d.Namespace, name)
				}
			}
			spec := d.Spec.Template.Spec
			for _, v := range spec.Volumes {
				switch {
				case v.Secret != nil:
					need("Secret", v.Secret.SecretName)
				case v.ConfigMap != nil:
					need("ConfigMap", v.ConfigMap.Name)
				case v.Projected != nil:
					for _, s := range v.Projected.Sources {
						if s.Secret != nil {
							need("Secret", s.Secret.Name)
						}
						if s.ConfigMap != nil {
							need("ConfigMap", s.ConfigMap.Name)
						}
					}
				}
			}
			for _, c := range allContainers(spec) {
				for _, e := range c.Env {
					if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
						need("Secret", e.ValueFrom.SecretKeyRef.Name)
					}
					if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
						need("ConfigMap", e.ValueFrom.ConfigMapKeyRef.Name)
					}
				}
				for _, e := range c.EnvFrom {
					if e.SecretRef != nil {
						need("Secret", e.SecretRef.Name)
					}
					if e.ConfigMapRef != nil {
						need("ConfigMap", e.ConfigMapRef.Name)
					}
				}
			}
		}
	}
	if refs < 3 {
		t.Errorf("%d references checked, want the CA Secret's and horizon-root's", refs)
	}
}

// TestMountedFilesReadable: every file of a Secret, ConfigMap or projected
// volume a container mounts is readable by the user it runs as. The kubelet
// writes these files owned by root, in group fsGroup when the pod sets one,
// with the volume's mode: so a non-root user reads them through the "other"
// bits, or through the group bits when fsGroup is one of its groups.
func TestMountedFilesReadable(t *testing.T) {
	checked := 0
	for name, pod := range podTemplates(t, "*.yaml") {
		psc := pod.SecurityContext
		if psc == nil {
			psc = &corev1.PodSecurityContext{}
		}
		modes := map[string][]int32{} // volume → its files' modes
		for _, v := range pod.Volumes {
			var def int32 = 0o644
			var items []int32
			var dm *int32
			switch {
			case v.Secret != nil:
				dm = v.Secret.DefaultMode
				for _, it := range v.Secret.Items {
					items = append(items, ptrOr(it.Mode, -1))
				}
			case v.ConfigMap != nil:
				dm = v.ConfigMap.DefaultMode
				for _, it := range v.ConfigMap.Items {
					items = append(items, ptrOr(it.Mode, -1))
				}
			case v.Projected != nil:
				dm = v.Projected.DefaultMode
				for _, s := range v.Projected.Sources {
					var its []corev1.KeyToPath
					switch {
					case s.Secret != nil:
						its = s.Secret.Items
					case s.ConfigMap != nil:
						its = s.ConfigMap.Items
					}
					for _, it := range its {
						items = append(items, ptrOr(it.Mode, -1))
					}
				}
			default:
				continue
			}
			def = ptrOr(dm, def)
			list := []int32{def}
			for _, m := range items {
				if m >= 0 {
					list = append(list, m)
				}
			}
			modes[v.Name] = list
		}
		for _, c := range allContainers(pod) {
			uid, gids := psc.RunAsUser, []int64{}
			if psc.RunAsGroup != nil {
				gids = append(gids, *psc.RunAsGroup)
			}
			gids = append(gids, psc.SupplementalGroups...)
			if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
				uid = c.SecurityContext.RunAsUser
			}
			if c.SecurityContext != nil && c.SecurityContext.RunAsGroup != nil {
				gids = append(gids, *c.SecurityContext.RunAsGroup)
			}
			for _, m := range c.VolumeMounts {
				for _, mode := range modes[m.Name] {
					checked++
					switch {
					case uid != nil && *uid == 0:
					case mode&0o004 != 0:
					case psc.FSGroup != nil && mode&0o040 != 0:
						// fsGroup is a supplementary group of every container.
					default:
						t.Errorf("%s: container %s (uid %v, groups %v, fsGroup %v) cannot read volume %s's files, mode %#o", name, c.Name, fmtPtr(uid), gids, fmtPtr(psc.FSGroup), m.Name, mode)
					}
				}
			}
		}
	}
	if checked < 5 {
		t.Errorf("checked %d mounted files, want every example's", checked)
	}
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
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
	for _, want := range []string{"namespace.yaml", "rbac.yaml", "service.yaml", "deployment.yaml"} {
		if !slices.Contains(files, want) {
			t.Errorf("README.md does not apply %s (applies %q)", want, files)
		}
	}
	for file, list := range decodeAll(t, files...) {
		for _, obj := range list {
			if b, ok := obj.(*rbacv1.ClusterRoleBinding); ok {
				for _, s := range b.Subjects {
					if s.Kind == "ServiceAccount" && s.Namespace == "horizon-system" {
						t.Errorf("%s (applied by default): ClusterRoleBinding %s gives %s/%s the ClusterRole %s cluster-wide", file, b.Name, s.Namespace, s.Name, b.RoleRef.Name)
					}
				}
			}
		}
	}
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
		if want := flagValues(c.Args, "--http-address"); port != 15014 || !slices.Equal(want, []string{":15014"}) {
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
	if xds := flagValues(c.Args, "--xds-address"); len(xds) == 0 || xds[len(xds)-1] != "" {
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
	if len(from) != 2 {
		t.Errorf("ports admitted %v, want 15012 and 15014", slices.Collect(maps.Keys(from)))
	}
}

// effectiveUser is the uid a container runs as when the manifest sets one.
func effectiveUser(pod corev1.PodSpec, c corev1.Container) *int64 {
	if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
		return c.SecurityContext.RunAsUser
	}
	if pod.SecurityContext != nil {
		return pod.SecurityContext.RunAsUser
	}
	return nil
}

// TestSVIDKeyReadable: `horizon agent` writes the SVID's private key 0600
// (certs.SVIDFiles), owned by the user it runs as, so every other container
// that mounts the agent's output volume must run as that same user, and the
// manifest must say which (an image's default user is not known here).
func TestSVIDKeyReadable(t *testing.T) {
	checked := 0
	for name, pod := range podTemplates(t, "*.yaml") {
		containers := allContainers(pod)
		for _, agent := range containers {
			if len(agent.Args) == 0 || agent.Args[0] != "agent" {
				continue
			}
			out := outPaths(agent)
			if len(out) != 1 {
				t.Errorf("%s: agent %s writes %q, want one --out", name, agent.Name, out)
				continue
			}
			am, _, ok := mountOf(agent, out[0])
			if !ok {
				t.Errorf("%s: agent %s writes %s on no volume", name, agent.Name, out[0])
				continue
			}
			writer := effectiveUser(pod, agent)
			for _, r := range containers {
				if m, _, ok := mountOf(r, out[0]); !ok || m.Name != am.Name || (len(r.Args) > 0 && r.Args[0] == "agent") {
					continue
				}
				if len(r.Args) > 0 && r.Args[0] == "bootstrap" {
					continue // names the files, does not read them
				}
				checked++
				reader := effectiveUser(pod, r)
				if reader != nil && *reader == 0 {
					continue
				}
				if writer == nil || reader == nil || *writer != *reader {
					t.Errorf("%s: container %s (uid %s) reads %s/%s, written 0600 by agent %s (uid %s): run both as one user", name, r.Name, fmtPtr(reader), out[0], certs.SVIDKeyFile, agent.Name, fmtPtr(writer))
				}
			}
		}
	}
	if checked < 2 {
		t.Errorf("checked %d readers of an agent's SVID, want the workload's app and the gateway's Envoy", checked)
	}
}
