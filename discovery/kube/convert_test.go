package kube

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	clientscheme "k8s.io/client-go/kubernetes/scheme"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/internal/testkit/golden"
)

// loadObjects decodes a multi-document file of Kubernetes objects.
func loadObjects(t *testing.T, path string) Objects {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	scheme := runtime.NewScheme()
	if err := clientscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := mcsv1beta1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	decode := serializer.NewCodecFactory(scheme).UniversalDeserializer().Decode
	o := Objects{Pods: map[string]*PodInfo{}, Nodes: map[string]*corev1.Node{},
		Resolved: map[string][]string{"gw.example.net": {"203.0.113.50", "203.0.113.51"}}}
	for i, doc := range strings.Split(string(data), "\n---\n") {
		obj, _, err := decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("%s: document %d: %v", path, i+1, err)
		}
		switch x := obj.(type) {
		case *corev1.Service:
			o.Services = append(o.Services, x)
		case *discoveryv1.EndpointSlice:
			o.Slices = append(o.Slices, x)
		case *mcsv1beta1.ServiceExport:
			o.Exports = append(o.Exports, x)
		case *mcsv1beta1.ServiceImport:
			o.Imports = append(o.Imports, x)
		case *corev1.Node:
			o.Nodes[x.Name] = x
		case *corev1.Pod:
			o.Pods[x.Namespace+"/"+x.Name] = &PodInfo{Namespace: x.Namespace, Name: x.Name, ServiceAccount: x.Spec.ServiceAccountName,
				MTLS: x.Labels[LabelTLSMode] == TLSModeMTLS, Labels: x.Labels}
		default:
			t.Fatalf("%s: document %d: unexpected %T", path, i+1, obj)
		}
	}
	return o
}

// TestBuild renders each testdata/convert/*.yaml member into its part of
// the ClusterSet and the problems found, compared with a golden file.
func TestBuild(t *testing.T) {
	for _, in := range golden.Pairs(t, "testdata/convert", ".yaml", ".golden.yaml") {
		t.Run(filepath.Base(in), func(t *testing.T) {
			o := loadObjects(t, in)
			cfg := MemberConfig{Name: "east-1", Network: "east", Locality: discovery.Locality{Region: "us-east"}}
			c, problems := Build(cfg, o)
			// The member's part must form a valid ClusterSet on its own.
			if _, err := discovery.New([]discovery.Cluster{c}); err != nil {
				t.Fatalf("not a valid cluster: %v", err)
			}
			var texts []string
			for _, p := range problems {
				texts = append(texts, p.Reason+": "+p.String())
			}
			var buf bytes.Buffer
			enc := yaml.NewEncoder(&buf)
			enc.SetIndent(2)
			if err := enc.Encode(map[string]any{"cluster": c, "problems": texts}); err != nil {
				t.Fatal(err)
			}
			golden.Check(t, strings.TrimSuffix(in, ".yaml")+".golden.yaml", buf.Bytes())
		})
	}
}
