package policyfile

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/file"
	"github.com/horizonmesh/horizon/examples/local"
)

// problemLine is the one error format of Horizon's input files.
var problemLine = regexp.MustCompile(`^fuzz\.yaml:(\d+):(\d+): \S`)

// FuzzParse checks the policy file parser on any input, against the example
// topology: no panic; every error and warning line is
// "fuzz.yaml:line:col: ..." with a line inside the input; parsing is
// deterministic (same Version); and the parsed policy answers lookups for
// every service and ranks every locality of the topology without panicking.
// Seeds: the examples and every testdata file.
func FuzzParse(f *testing.F) {
	cs, err := file.Parse(local.Name, local.ClusterSet)
	if err != nil {
		f.Fatal(err)
	}
	topo := TopologyOf(cs)
	seeds, _ := filepath.Glob("../../examples/policy/*.yaml")
	more, _ := filepath.Glob("testdata/*/*.yaml")
	for _, path := range append(seeds, more...) {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		lines := yamlLines(data)
		checkLines := func(what, text string) {
			for l := range strings.Lines(text) {
				m := problemLine.FindStringSubmatch(l)
				if m == nil {
					t.Fatalf("%s line %q: want fuzz.yaml:<line>:<col>: <message>", what, l)
				}
				if n := atoi(m[1]); n < 1 || n > lines {
					t.Fatalf("%s line %q: line %d outside the input's %d lines", what, l, n, lines)
				}
			}
		}
		p, err := Parse("fuzz.yaml", data, topo)
		if err != nil {
			checkLines("error", err.Error())
			return
		}
		for _, w := range p.Warnings {
			checkLines("warning", w.Error())
		}
		again, err := Parse("fuzz.yaml", data, topo)
		if err != nil || again.Version != p.Version {
			t.Fatalf("second parse: %v; versions %s, %s", err, again.Version, p.Version)
		}
		for _, c := range topo.Clusters {
			for _, k := range c.Services {
				for _, scope := range []discovery.Scope{discovery.ClusterLocal, discovery.ClusterSetWide} {
					s := p.Lookup(k, scope)
					for _, l := range c.Localities {
						s.Locality.Describe(l)
						a := Attributes{Locality: l, Cluster: c.Name, Network: c.Network}
						s.Locality.Rank(a, a)
					}
				}
			}
		}
	})
}

func atoi(s string) int { // digits only, as the pattern matched
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// yamlLines is the number of lines of data as yaml.v3 counts them: "\r\n",
// "\r", "\n" and the Unicode breaks NEL, LS and PS each end one.
func yamlLines(data []byte) int {
	n := 1 + bytes.Count(data, []byte("\n")) + bytes.Count(data, []byte("\r")) - bytes.Count(data, []byte("\r\n"))
	for _, br := range []string{"\u0085", "\u2028", "\u2029"} {
		n += bytes.Count(data, []byte(br))
	}
	return n
}
