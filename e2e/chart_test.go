package e2e

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/horizonmesh/horizon/charts"
	"github.com/horizonmesh/horizon/internal/testkit/manifests"
)

// chartObjects is one render of the chart: its Deployments, which the test
// turns into Pods on a node (there is no controller for them here), and
// every other document, applied as they are.
type chartObjects struct {
	deployments map[string]*appsv1.Deployment
	others      [][]byte
}

// deployment is the rendered Deployment of that name, or nil.
func (o chartObjects) deployment(name string) *appsv1.Deployment { return o.deployments[name] }

// renderChart renders charts/horizon with values into namespace, as `helm
// template` does, through Helm's Go SDK.
func renderChart(t *testing.T, values map[string]any, namespace string) chartObjects {
	t.Helper()
	rel, err := charts.Render("../charts/horizon", namespace, values)
	if err != nil {
		t.Fatalf("render charts/horizon: %v", err)
	}
	out := chartObjects{deployments: map[string]*appsv1.Deployment{}}
	for _, name := range rel.Names() {
		raw, err := manifests.RawDocuments(name, []byte(rel.Files[name]))
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range raw {
			objs, err := manifests.Decode(name, doc)
			if err != nil {
				t.Fatal(err)
			}
			if len(objs) == 1 {
				if d, ok := objs[0].(*appsv1.Deployment); ok {
					out.deployments[d.Name] = d
					continue
				}
			}
			out.others = append(out.others, doc)
		}
	}
	return out
}

// applyObjects applies documents to m's cluster for real (server-side,
// strict field validation).
func applyObjects(t *testing.T, m member, docs [][]byte) {
	t.Helper()
	a := manifests.NewApplier(t, m.kube.Config).ForReal()
	if n := a.Apply(t, "chart for "+m.name, docs); n != len(docs) {
		t.Fatalf("chart for %s: %d of %d documents applied", m.name, n, len(docs))
	}
}

// applyYAML applies a multi-document YAML stream to m's cluster for real.
func applyYAML(t *testing.T, m member, data []byte) {
	t.Helper()
	raw, err := manifests.RawDocuments("yaml for "+m.name, data)
	if err != nil {
		t.Fatal(err)
	}
	applyObjects(t, m, raw)
}

// injectorConfig is the injector configuration the chart renders (the
// ConfigMap horizon-injector's config.yaml).
func (o chartObjects) injectorConfig(t *testing.T) string {
	t.Helper()
	for _, doc := range o.others {
		objs, err := manifests.Decode("chart", doc)
		if err != nil || len(objs) != 1 {
			continue
		}
		if cm, ok := objs[0].(*corev1.ConfigMap); ok && cm.Name == "horizon-injector" {
			return cm.Data["config.yaml"]
		}
	}
	t.Fatal("the chart rendered no ConfigMap horizon-injector")
	return ""
}
