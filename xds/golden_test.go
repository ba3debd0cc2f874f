package xds

import (
	"github.com/horizonmesh/horizon/internal/testkit/fixture"

	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"gopkg.in/yaml.v3"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/file"
	"github.com/horizonmesh/horizon/internal/testkit/golden"
)

// goldenCase is a testdata/golden/*.in.yaml: a proxy, optionally the policy
// its view is rendered with, and the ClusterSet it sees, in the local
// ClusterSet file format.
type goldenCase struct {
	Policy struct {
		SVIDProvider SVIDProvider `yaml:"svidProvider"`
		// File is a policy file, relative to the .in.yaml.
		File string `yaml:"file"`
	} `yaml:"policy"`
	Proxy struct {
		Role    Role   `yaml:"role"`
		Cluster string `yaml:"cluster"`
		Region  string `yaml:"region"`
		Zone    string `yaml:"zone"`
		SubZone string `yaml:"subZone"`
		Network string `yaml:"network"`
		NodeID  string `yaml:"id"`
	} `yaml:"proxy"`
	// Resolved are the addresses Horizon's resolver found for external
	// services' DNS names (discovery.ClusterSet.WithResolved).
	Resolved map[string][]string `yaml:"resolved"`
}

// loadCase splits an .in.yaml into its proxy, policy and ClusterSet.
func loadCase(t testing.TB, path string) (*discovery.ClusterSet, Group, Policy) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var tc goldenCase
	if err := yaml.Unmarshal(data, &tc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	// Drop the proxy and the policy: the rest is a ClusterSet file.
	root := doc.Content[0]
	for i := 0; i < len(root.Content); {
		if k := root.Content[i].Value; k == "proxy" || k == "policy" || k == "resolved" {
			root.Content = append(root.Content[:i], root.Content[i+2:]...)
			continue
		}
		i += 2
	}
	rest, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := file.Parse(path, rest)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if tc.Resolved != nil {
		cs = cs.WithResolved(tc.Resolved, nil)
	}
	p := &Proxy{ID: "test", Role: tc.Proxy.Role, Cluster: tc.Proxy.Cluster, Network: tc.Proxy.Network,
		Locality: discovery.Locality{Region: tc.Proxy.Region, Zone: tc.Proxy.Zone, SubZone: tc.Proxy.SubZone}}
	if err := p.Resolve(cs); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	policy := Policy{SVIDProvider: tc.Policy.SVIDProvider}
	if tc.Policy.File != "" {
		policy.File = fixture.Policy(t, filepath.Join(filepath.Dir(path), tc.Policy.File), cs)
	}
	return cs, p.Group(), policy
}

// renderYAML turns a view into stable, reviewable YAML.
func renderYAML(t *testing.T, r *Resources) []byte {
	t.Helper()
	out := map[string]any{}
	for _, typeURL := range TypeURLs {
		var list []any
		for _, res := range r.ByType(typeURL) {
			b, err := protojson.Marshal(res)
			if err != nil {
				t.Fatal(err)
			}
			var v any
			if err := json.Unmarshal(b, &v); err != nil {
				t.Fatal(err)
			}
			list = append(list, v)
		}
		out[ShortType(typeURL)+"s"] = list
	}
	out["notes"] = r.Notes
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(out); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestGolden(t *testing.T) {
	for _, in := range golden.Pairs(t, "testdata/golden", ".in.yaml", ".out.yaml") {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		t.Run(name, func(t *testing.T) {
			cs, g, policy := loadCase(t, in)
			res, err := Translate(cs, g, policy)
			if err != nil {
				t.Fatal(err)
			}
			// Invariants hold on every case: proto validation, references,
			// no duplicate address, only known gateways cross networks,
			// weights > 0, contiguous priorities.
			if err := Check(res, cs, g); err != nil {
				t.Fatalf("invariants: %v", err)
			}
			// Pure and deterministic: a second rendering is byte-equal.
			again, _ := Translate(cs, g, policy)
			got := renderYAML(t, res)
			if !bytes.Equal(got, renderYAML(t, again)) {
				t.Fatal("two renderings of the same input differ")
			}
			golden.Check(t, strings.TrimSuffix(in, ".in.yaml")+".out.yaml", got)
		})
	}
}
