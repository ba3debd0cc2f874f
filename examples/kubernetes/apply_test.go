package kubernetes_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
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
	client, err := dynamic.NewForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(cluster.Kube.Discovery()))
	applied, force := 0, true
	for _, pattern := range []string{"*.yaml", filepath.Join("crds", "*.yaml"), filepath.Join("opt-in", "*.yaml")} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		for _, file := range files {
			for i, doc := range rawDocuments(t, file) {
				obj := &unstructured.Unstructured{}
				if err := yaml.Unmarshal(doc, &obj.Object); err != nil {
					t.Fatalf("%s: document %d: %v", file, i, err)
				}
				gvk := obj.GroupVersionKind()
				m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
				if err != nil {
					t.Errorf("%s: document %d: %v: %v", file, i, gvk, err)
					continue
				}
				var r dynamic.ResourceInterface = client.Resource(m.Resource)
				if ns := obj.GetNamespace(); ns != "" {
					r = client.Resource(m.Resource).Namespace(ns)
				}
				_, err = r.Patch(ctx, obj.GetName(), types.ApplyPatchType, doc, metav1.PatchOptions{
					FieldManager: "examples-test", Force: &force, DryRun: []string{metav1.DryRunAll},
					FieldValidation: metav1.FieldValidationStrict,
				})
				if err != nil {
					t.Errorf("%s: %s %s: %v", file, gvk.Kind, obj.GetName(), err)
					continue
				}
				applied++
			}
		}
	}
	if applied < 20 {
		t.Errorf("applied %d documents, want every example's", applied)
	}
}

// rawDocuments are the non-blank YAML documents of a file.
func rawDocuments(t *testing.T, file string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var docs [][]byte
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if !isBlank(doc) {
			docs = append(docs, doc)
		}
	}
}
