// Package golden compares a test's output with the golden files in its
// testdata, rewrites them when the test runs with -update, and fails on a
// golden file whose case is gone: a file nobody checks any more would
// otherwise pass for documentation of what the code does.
package golden

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// Update reports whether the run rewrites golden files (go test -update).
func Update() bool { return *update }

// Check compares got with the golden file at path, byte for byte; with
// -update it writes got to path instead (creating its folder).
func Check(t testing.TB, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run the test with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the output (rerun with -update and review the diff); first difference at %s", path, firstDiff(want, got))
	}
}

// firstDiff shows the first line where want and got differ.
func firstDiff(want, got []byte) string {
	w, g := strings.Split(string(want), "\n"), strings.Split(string(got), "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			return "line " + strconv.Itoa(i+1) + ":\n- " + a + "\n+ " + b
		}
	}
	return "the end: " + strconv.Itoa(len(want)) + " bytes, got " + strconv.Itoa(len(got))
}

// Pairs returns the cases in dir: the files whose names end in in (such as
// ".in.yaml") but not in out (such as ".out.yaml"), sorted. It fails the test
// if there is none, and for every file ending in out whose input is gone.
func Pairs(t testing.TB, dir, in, out string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	var inputs, outputs []string
	for _, f := range files {
		switch {
		case strings.HasSuffix(f, out):
			outputs = append(outputs, f)
		case strings.HasSuffix(f, in):
			inputs = append(inputs, f)
		}
	}
	if len(inputs) == 0 {
		t.Fatalf("no cases %s/*%s", dir, in)
	}
	for _, o := range outputs {
		if !slices.Contains(inputs, strings.TrimSuffix(o, out)+in) {
			t.Errorf("%s has no case %s: delete it, or restore its input", o, strings.TrimSuffix(filepath.Base(o), out)+in)
		}
	}
	return inputs
}

// Claimed fails the test for every file matching pattern that is not one of
// paths: the golden files of cases that are gone, where the cases are a list
// in the test rather than input files.
func Claimed(t testing.TB, pattern string, paths []string) {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !slices.Contains(paths, f) {
			t.Errorf("%s belongs to no case: delete it, or restore its case", f)
		}
	}
}
