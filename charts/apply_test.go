package charts_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
	"github.com/horizonmesh/horizon/internal/testkit"
	"github.com/horizonmesh/horizon/internal/testkit/manifests"
)

// serviceMonitorCRD is the Prometheus Operator's ServiceMonitor CRD, copied
// verbatim from its Go module (the file's header names the version).
var serviceMonitorCRD = filepath.Join("testdata", "monitoring.coreos.com_servicemonitors.yaml")

// TestChartApplies: every case's documents, the chart's CRDs included, are
// accepted by a real kube-apiserver in a server-side apply with strict field
// validation (dry run). The apiserver has the MCS CRDs (kubetest) and the
// Prometheus Operator's real ServiceMonitor CRD, so the ServiceMonitor is
// checked against its schema too.
func TestChartApplies(t *testing.T) {
	cases := renderCases(t)
	cluster := kubetest.Start(t, "east")[0]
	ctx := t.Context()
	// ci/ha-values.yaml's member Secrets, ci/workload-groups-values.yaml's
	// WorkloadGroups.
	for _, ns := range []string{namespace, "horizon-members", "shop", "payments"} {
		if _, err := cluster.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	installCRD(t, cluster, serviceMonitorCRD)
	applier := manifests.NewApplier(t, cluster.Config)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			applied := 0
			for name, data := range c.release.CRDs {
				raw, err := manifests.RawDocuments(name, data)
				if err != nil {
					t.Fatal(err)
				}
				applied += applier.Apply(t, name, raw)
			}
			for _, name := range c.release.Names() {
				applied += applier.Apply(t, name, c.raw[name])
			}
			want := len(c.release.CRDs)
			for _, raw := range c.raw {
				want += len(raw)
			}
			if applied != want || applied < 5 {
				t.Errorf("applied %d of %d documents", applied, want)
			}
		})
	}
}

// installCRD creates the CRD in file and waits until it is served.
func installCRD(t *testing.T, cluster *kubetest.Cluster, file string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := manifests.RawDocuments(file, data)
	if err != nil || len(raw) != 1 {
		t.Fatalf("%s: %d documents, %v", file, len(raw), err)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.UnmarshalStrict(raw[0], crd); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	client, err := apiextensionsclient.NewForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.ApiextensionsV1().CustomResourceDefinitions().Create(t.Context(), crd, metav1.CreateOptions{}); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	testkit.Eventually(t, 30*time.Second, "CRD "+crd.Name+" established", func() bool {
		got, err := client.ApiextensionsV1().CustomResourceDefinitions().Get(t.Context(), crd.Name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, c := range got.Status.Conditions {
			if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
				return true
			}
		}
		return false
	})
}
