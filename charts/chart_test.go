package charts_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/horizonmesh/horizon/charts"
	"github.com/horizonmesh/horizon/internal/testkit/golden"
	"github.com/horizonmesh/horizon/internal/testkit/manifests"
)

const (
	chartDir  = "horizon"
	namespace = "horizon-system"
)

// renderCase is one values file of horizon/ci rendered.
type renderCase struct {
	name    string         // the file's name without -values.yaml
	values  map[string]any // the values as given (without the chart's defaults)
	release *charts.Release
	docs    manifests.Docs // every template's documents, by template path
	raw     map[string][][]byte
}

// renderCases renders the chart with every values file in horizon/ci, and
// decodes every document strictly. There must be the cases the chart
// promises: the defaults, SPIRE, Horizon's gateway, the injector by URL,
// HA with a ServiceMonitor, the own-cluster reader, and WorkloadGroups read
// in listed namespaces and in the release's.
func renderCases(t *testing.T) []renderCase {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []renderCase
	for _, f := range files {
		c := renderCase{name: strings.TrimSuffix(filepath.Base(f), "-values.yaml"), docs: manifests.Docs{}, raw: map[string][][]byte{}}
		if c.values, err = charts.ReadValues(f); err != nil {
			t.Fatal(err)
		}
		if c.release, err = charts.Render(chartDir, namespace, c.values); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, name := range c.release.Names() {
			text := []byte(c.release.Files[name])
			objs, err := manifests.Decode(c.name+":"+name, text)
			if err != nil {
				t.Errorf("%s: %v", f, err)
			}
			c.docs[name] = objs
			if c.raw[name], err = manifests.RawDocuments(name, text); err != nil {
				t.Fatal(err)
			}
		}
		cases = append(cases, c)
	}
	var names []string
	for _, c := range cases {
		names = append(names, c.name)
	}
	for _, want := range []string{"default", "spire", "spire-hostpath", "gateway-horizon", "injector-url", "ha", "own-cluster-reader", "workload-groups", "workload-groups-release-namespace"} {
		if !slices.Contains(names, want) {
			t.Errorf("no case %s in %s/ci (have %q)", want, chartDir, names)
		}
	}
	return cases
}

// value is the value at the dotted path of the values as given, or def.
func (c renderCase) value(path string, def any) any {
	var v any = c.values
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return def
		}
		if v, ok = m[k]; !ok {
			return def
		}
	}
	return v
}

// objects are the objects of type T the case renders.
func objects[T runtime.Object](c renderCase) []T {
	var out []T
	for _, name := range c.docs.Files() {
		for _, obj := range c.docs[name] {
			if v, ok := obj.(T); ok {
				out = append(out, v)
			}
		}
	}
	return out
}

// deployment is the Deployment named name, or nil.
func deployment(c renderCase, name string) *appsv1.Deployment {
	for _, d := range objects[*appsv1.Deployment](c) {
		if d.Name == name {
			return d
		}
	}
	return nil
}

// TestRenderedManifests: every case's manifests pass the checks
// examples/kubernetes passes: strict decoding (renderCases), files mounted
// and written and readable by the user reading them, the agent's SVID key
// read by its own user, every Secret and ConfigMap named either rendered or
// one the values name as the user's, no plaintext xDS, bootstraps made in
// the pod, and no cluster-wide read unless controlPlane.readOwnCluster.
func TestRenderedManifests(t *testing.T) {
	for _, c := range renderCases(t) {
		t.Run(c.name, func(t *testing.T) {
			members := fmt.Sprint(c.value("controlPlane.memberSecretsNamespace", ""))
			for _, obj := range allObjects(c) {
				m, ok := obj.(interface {
					GetNamespace() string
					GetName() string
				})
				if !ok || m.GetNamespace() == "" || m.GetNamespace() == namespace {
					continue
				}
				switch obj.(type) {
				case *rbacv1.Role, *rbacv1.RoleBinding:
					if m.GetNamespace() == members && m.GetName() == "horizon" {
						continue // reading the member Secrets where they are
					}
					if m.GetName() == workloadGroupsRBAC && slices.Contains(workloadGroupsNamespaces(c), m.GetNamespace()) && grantsOnlyWorkloadGroups(obj) {
						continue // reading WorkloadGroups where they are, and nothing more
					}
				}
				t.Errorf("%T %s in namespace %s, want the release's %s", obj, m.GetName(), m.GetNamespace(), namespace)
			}
			if n := manifests.CheckFilesMountedAndWritten(t, c.docs); n < 3 {
				t.Errorf("checked %d paths", n)
			}
			manifests.CheckMountedFilesReadable(t, c.docs)
			agents := manifests.CheckSVIDKeyReadable(t, c.docs)
			if c.value("ca.mode", "horizon") == "horizon" && c.value("gateway.enabled", true) == true && agents == 0 {
				t.Error("the gateway's agent has no reader of its SVID")
			}
			theirs := map[manifests.Ref]bool{}
			for kind, path := range map[string]string{"Secret": "ca.secretName", "ConfigMap": "ca.bundleConfigMap"} {
				def := map[string]string{"Secret": "horizon-ca", "ConfigMap": "horizon-root"}[kind]
				theirs[manifests.Ref{kind, namespace, fmt.Sprint(c.value(path, def))}] = true
			}
			if s := c.value("injector.tlsSecretName", ""); s != "" {
				theirs[manifests.Ref{"Secret", namespace, fmt.Sprint(s)}] = true
			}
			manifests.CheckReferencedObjects(t, c.docs, theirs)
			manifests.CheckNoPlaintextXDS(t, c.docs)
			manifests.CheckBootstrapInThePod(t, c.docs)
			var allowed []string
			if c.value("controlPlane.readOwnCluster", false) == true {
				allowed = []string{"horizon-reader"}
			}
			manifests.CheckNoClusterWideRead(t, c.docs, namespace, allowed...)
		})
	}
}

func allObjects(c renderCase) []runtime.Object {
	var out []runtime.Object
	for _, name := range c.docs.Files() {
		out = append(out, c.docs[name]...)
	}
	return out
}

// TestBadValues: values the chart cannot install fail to render with a
// message naming the value (testdata/invalid/<case>.yaml → <case>.err,
// rewritten with -update).
func TestBadValues(t *testing.T) {
	for _, in := range golden.Pairs(t, filepath.Join("testdata", "invalid"), ".yaml", ".err") {
		t.Run(filepath.Base(in), func(t *testing.T) {
			values, err := charts.ReadValues(in)
			if err != nil {
				t.Fatal(err)
			}
			_, err = charts.Render(chartDir, namespace, values)
			if err == nil {
				t.Fatalf("%s renders", in)
			}
			golden.Check(t, strings.TrimSuffix(in, ".yaml")+".err", []byte(err.Error()+"\n"))
		})
	}
}

// TestDefaultsNeedOnlyTheCluster: the chart's own values.yaml leaves the
// cluster's name and network empty, and the schema refuses that, so an
// install that forgets them fails instead of guessing.
func TestDefaultsNeedOnlyTheCluster(t *testing.T) {
	if _, err := charts.Render(chartDir, namespace, nil); err == nil || !strings.Contains(err.Error(), "/cluster/name") {
		t.Errorf("render without values: %v, want an error naming /cluster/name", err)
	}
	if _, err := charts.Render(chartDir, namespace, map[string]any{"cluster": map[string]any{"name": "east", "network": "net-east"}}); err != nil {
		t.Errorf("render with only the cluster: %v", err)
	}
}

// TestNotes: NOTES.txt tells what to create and run next, in the mode
// rendered.
func TestNotes(t *testing.T) {
	for _, c := range renderCases(t) {
		notes := c.release.Notes
		var want []string
		switch {
		case c.value("controlPlane.enabled", true) != true:
		case c.value("ca.mode", "horizon") == "horizon":
			want = append(want, "create secret generic horizon-ca", "horizon cluster add-secret")
		default:
			want = append(want, "CA: SPIRE", "horizon cluster add-secret")
		}
		if c.value("injector.enabled", true) == true {
			want = append(want, "horizon-injection=enabled", "sidecar.horizon.io/inject=true")
		}
		for _, w := range want {
			if !strings.Contains(notes, w) {
				t.Errorf("%s: NOTES.txt does not say %q:\n%s", c.name, w, notes)
			}
		}
	}
}

// TestImage: every Horizon container runs the chart's image, tagged with
// the chart's appVersion unless image.tag says otherwise.
func TestImage(t *testing.T) {
	for _, c := range renderCases(t) {
		for _, d := range objects[*appsv1.Deployment](c) {
			for _, ctr := range manifests.AllContainers(d.Spec.Template.Spec) {
				if len(ctr.Args) > 0 && slices.Contains([]string{"serve", "agent", "bootstrap", "gateway"}, ctr.Args[0]) && ctr.Image != "horizon:dev" {
					t.Errorf("%s: %s/%s runs %s, want horizon:dev (repository horizon, appVersion dev)", c.name, d.Name, ctr.Name, ctr.Image)
				}
				if ctr.ImagePullPolicy != "" && ctr.ImagePullPolicy != corev1.PullIfNotPresent {
					t.Errorf("%s: %s/%s pull policy %s", c.name, d.Name, ctr.Name, ctr.ImagePullPolicy)
				}
			}
		}
	}
	if _, err := os.Stat(filepath.Join(chartDir, "Chart.yaml")); err != nil {
		t.Fatal(err)
	}
}
