package manifests

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"
)

// Applier applies documents to a real kube-apiserver: server-side apply,
// strict field validation, dry run (unless ForReal), so an unknown or misplaced field, an
// invalid value or a field the API does not serve is an error and nothing
// is stored.
type Applier struct {
	client dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
	commit bool // store what is applied (ForReal), not a dry run
}

// ForReal is a's twin that stores what it applies: server-side apply with
// strict field validation, no dry run, for tests that deploy the manifests.
func (a *Applier) ForReal() *Applier {
	b := *a
	b.commit = true
	return &b
}

// NewApplier is an Applier for the apiserver of config.
func NewApplier(t testing.TB, config *rest.Config) *Applier {
	t.Helper()
	client, err := dynamic.NewForConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	kube, err := kubernetes.NewForConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	return &Applier{client: client, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(kube.Discovery()))}
}

// Reset forgets the API resources discovered so far: call it after
// installing a CRD.
func (a *Applier) Reset() { a.mapper.Reset() }

// Apply applies every document of raw (named name in errors), reporting
// each refusal as a test error, and returns how many were accepted.
func (a *Applier) Apply(t testing.TB, name string, raw [][]byte) int {
	t.Helper()
	applied, force := 0, true
	for i, doc := range raw {
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(doc, &obj.Object); err != nil {
			t.Errorf("%s: document %d: %v", name, i, err)
			continue
		}
		gvk := obj.GroupVersionKind()
		m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Errorf("%s: document %d: %v: %v", name, i, gvk, err)
			continue
		}
		var r dynamic.ResourceInterface = a.client.Resource(m.Resource)
		if ns := obj.GetNamespace(); ns != "" {
			r = a.client.Resource(m.Resource).Namespace(ns)
		}
		opts := metav1.PatchOptions{
			FieldManager: "manifests-test", Force: &force, DryRun: []string{metav1.DryRunAll},
			FieldValidation: metav1.FieldValidationStrict,
		}
		if a.commit {
			opts.DryRun = nil
		}
		_, err = r.Patch(t.Context(), obj.GetName(), types.ApplyPatchType, doc, opts)
		if err != nil {
			t.Errorf("%s: %s %s: %v", name, gvk.Kind, obj.GetName(), err)
			continue
		}
		applied++
	}
	return applied
}
