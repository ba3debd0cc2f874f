package kubernetes_test

import (
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
	"github.com/horizonmesh/horizon/internal/testkit/manifests"
)

// TestManifestsApply: every document of every manifest here, opt-in/ and the
// CRDs included, is accepted by a real kube-apiserver in a server-side apply
// (dry run, strict field validation), so an unknown or misplaced field, an
// invalid value or a field the API does not serve fails the test. The
// namespaces the manifests use are created first.
func TestManifestsApply(t *testing.T) {
	cluster := kubetest.Start(t, "east")[0]
	ctx := t.Context()
	for _, ns := range []string{"horizon-system", "demo"} {
		if _, err := cluster.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	applier := manifests.NewApplier(t, cluster.Config)
	applied := 0
	for _, pattern := range []string{"*.yaml", filepath.Join("crds", "*.yaml"), filepath.Join("opt-in", "*.yaml")} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		for _, file := range files {
			if file == valuesFile {
				continue
			}
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := manifests.RawDocuments(file, data)
			if err != nil {
				t.Fatal(err)
			}
			applied += applier.Apply(t, file, raw)
		}
	}
	if applied < 20 {
		t.Errorf("applied %d documents, want every example's", applied)
	}
}
