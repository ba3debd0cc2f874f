package policyfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/horizonmesh/horizon/discovery/file"
	"github.com/horizonmesh/horizon/examples/local"
	"github.com/horizonmesh/horizon/internal/testkit/golden"
)

// exampleTopology is the topology of examples/local/clusterset.yaml.
func exampleTopology(t *testing.T) Topology {
	t.Helper()
	cs, err := file.Parse(local.Name, local.ClusterSet)
	if err != nil {
		t.Fatal(err)
	}
	return TopologyOf(cs)
}

func parseFile(t *testing.T, path string) (*File, error) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return Parse(path, data, exampleTopology(t))
}

func mustParse(t *testing.T, path string) *File {
	t.Helper()
	p, err := parseFile(t, path)
	if err != nil {
		t.Fatalf("Parse(%s):\n%v", path, err)
	}
	return p
}

func TestExamples(t *testing.T) {
	paths, _ := filepath.Glob("../../examples/policy/*.yaml")
	if len(paths) < 3 {
		t.Fatalf("examples: %v", paths)
	}
	paths = append(paths, "../../examples/local/policy.yaml") // what `make run` serves
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			p := mustParse(t, path)
			for _, w := range p.Warnings {
				t.Errorf("warning: %v", w)
			}
		})
	}
}

// TestInvalid parses every testdata/invalid/*.yaml and compares the errors
// with the .err file next to it, line for line.
func TestInvalid(t *testing.T) {
	for _, path := range golden.Pairs(t, "testdata/invalid", ".yaml", ".err") {
		t.Run(filepath.Base(path), func(t *testing.T) {
			_, err := parseFile(t, path)
			if err == nil {
				t.Fatal("Parse succeeded, want errors")
			}
			golden.Check(t, strings.TrimSuffix(path, ".yaml")+".err", []byte(err.Error()+"\n"))
		})
	}
}
