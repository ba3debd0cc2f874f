package inject

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// documents are the YAML documents of data, decoded.
func documents(t *testing.T, data []byte) []any {
	t.Helper()
	var docs []any
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var d any
		if err := dec.Decode(&d); err != nil {
			return docs
		}
		docs = append(docs, d)
	}
}

// TestManifestsGolden runs each testdata/manifests/*.in.yaml through
// Manifests for cluster west (no node): NAME.out.yaml is the output, or
// NAME.err the error, which names file:line. Run with -update to rewrite.
func TestManifestsGolden(t *testing.T) {
	fx := loadFixture(t)
	target := fx.target(podWithoutNode)
	ins, _ := filepath.Glob("testdata/manifests/*.in.yaml")
	if len(ins) < 3 {
		t.Fatalf("%d cases", len(ins))
	}
	for _, in := range ins {
		base := strings.TrimSuffix(in, ".in.yaml")
		t.Run(filepath.Base(base), func(t *testing.T) {
			f, err := os.Open(in)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var out bytes.Buffer
			ext, got := ".out.yaml", []byte(nil)
			if err := Manifests(&out, f, in, fx.cfg, target, ""); err != nil {
				ext, got = ".err", []byte(err.Error()+"\n")
				if !strings.HasPrefix(err.Error(), in+":") {
					t.Errorf("error %q does not start with file:line", err)
				}
			} else {
				got = out.Bytes()
			}
			golden := base + ext
			if *update {
				os.Remove(base + ".out.yaml")
				os.Remove(base + ".err")
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (the result is %s; run with -update)", err, ext)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs (run with -update):\n%s", golden, got)
			}
			if ext == ".out.yaml" {
				// Injecting the output again changes nothing.
				var again bytes.Buffer
				if err := Manifests(&again, bytes.NewReader(got), golden, fx.cfg, target, ""); err != nil {
					t.Fatal(err)
				}
				if a, b := documents(t, got), documents(t, again.Bytes()); !reflect.DeepEqual(a, b) {
					t.Errorf("injecting %s again changed it:\n%s", golden, again.Bytes())
				}
			}
		})
	}
}
