// Package manifests checks Kubernetes manifests the way Horizon ships them
// (examples/kubernetes, and what the Helm chart charts/horizon renders):
// strict decoding, files every container reads mounted and readable by its
// user, Secrets and ConfigMaps named created or listed as the user's, no
// plaintext xDS, and a server-side dry-run apply to a real kube-apiserver.
// The folder's tests and the chart's tests run the same checks.
package manifests

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
	"sigs.k8s.io/yaml"
)

// Docs are the decoded objects of a set of manifests, by file name, in the
// order of their documents.
type Docs map[string][]runtime.Object

// Files are the names of d, sorted.
func (d Docs) Files() []string {
	var names []string
	for name := range d {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// ServerValidatedOnly are the kinds no Go type here decodes: they decode as
// unstructured objects, and only the apiserver (with their real CRD
// installed) checks their fields. Any other unknown kind is an error.
var ServerValidatedOnly = []schema.GroupVersionKind{
	{Group: "monitoring.coreos.com", Version: "v1", Kind: "ServiceMonitor"},
}

var decoder = func() runtime.Decoder {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme, mcsv1alpha1.AddToScheme, mcsv1beta1.AddToScheme} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}()

// Decode decodes every YAML document of data strictly (unknown or
// duplicate fields are errors); name names the file in errors.
func Decode(name string, data []byte) ([]runtime.Object, error) {
	raw, err := RawDocuments(name, data)
	if err != nil {
		return nil, err
	}
	var out []runtime.Object
	var errs []error
	for i, doc := range raw {
		obj, gvk, err := decoder.Decode(doc, nil, nil)
		if runtime.IsNotRegisteredError(err) {
			u := &unstructured.Unstructured{}
			if yaml.Unmarshal(doc, &u.Object) == nil && slices.Contains(ServerValidatedOnly, u.GroupVersionKind()) {
				obj, err = u, nil
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: document %d: %w", name, i, err))
			continue
		}
		if m, err := meta.Accessor(obj); err != nil || m.GetName() == "" {
			errs = append(errs, fmt.Errorf("%s: document %d: %v without a name", name, i, gvk))
			continue
		}
		out = append(out, obj)
	}
	if len(raw) == 0 {
		errs = append(errs, fmt.Errorf("%s: no Kubernetes object", name))
	}
	return out, errors.Join(errs...)
}

// DecodeFiles decodes every file matching the patterns (Decode), failing
// the test on any error.
func DecodeFiles(t testing.TB, patterns ...string) Docs {
	t.Helper()
	docs := Docs{}
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
			objs, err := Decode(file, data)
			if err != nil {
				t.Error(err)
			}
			docs[file] = objs
		}
	}
	return docs
}

// RawDocuments are the documents of data that are not blank (IsBlank).
func RawDocuments(name string, data []byte) ([][]byte, error) {
	var docs [][]byte
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if !IsBlank(doc) {
			docs = append(docs, doc)
		}
	}
}

// IsBlank: only comments and white space.
func IsBlank(doc []byte) bool {
	for line := range strings.Lines(string(doc)) {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}

// Deployments are the Deployments of docs, by "file/name".
func Deployments(docs Docs) map[string]*appsv1.Deployment {
	out := map[string]*appsv1.Deployment{}
	for file, list := range docs {
		for _, obj := range list {
			if d, ok := obj.(*appsv1.Deployment); ok {
				out[file+"/"+d.Name] = d
			}
		}
	}
	return out
}

// PodTemplates are the pod templates of every Deployment of docs, by
// "file/name".
func PodTemplates(docs Docs) map[string]corev1.PodSpec {
	pods := map[string]corev1.PodSpec{}
	for name, d := range Deployments(docs) {
		pods[name] = d.Spec.Template.Spec
	}
	return pods
}

// AllContainers are a pod's init containers, then its containers.
func AllContainers(pod corev1.PodSpec) []corev1.Container {
	return append(slices.Clone(pod.InitContainers), pod.Containers...)
}

// FlagValues are the values of flag (--name=value) in args, in order.
func FlagValues(args []string, flag string) []string {
	var values []string
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			values = append(values, v)
		}
	}
	return values
}
