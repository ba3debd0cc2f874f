// Package kubernetes_test keeps the Kubernetes deployment example valid: every
// document decodes strictly into its API type, and the contract values
// (labels, ports, flags) are the ones the code uses.
package kubernetes_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	mcscrd "sigs.k8s.io/mcs-api/config/crd"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

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
	objs := decodeAll(t, "*.yaml", filepath.Join("crds", "*.yaml"))
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
