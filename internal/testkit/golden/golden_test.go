package golden

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// errorsT records the errors a check reports.
type errorsT struct {
	testing.TB
	errors []string
}

func (*errorsT) Helper() {}

func (e *errorsT) Errorf(format string, args ...any) {
	e.errors = append(e.errors, fmt.Sprintf(format, args...))
}

func TestPairsFailsOnAGoldenFileWithoutItsCase(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"a.in.yaml", "a.out.yaml", "b.in.yaml", "gone.out.yaml"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rec := &errorsT{TB: t}
	cases := Pairs(rec, dir, ".in.yaml", ".out.yaml")
	if want := []string{filepath.Join(dir, "a.in.yaml"), filepath.Join(dir, "b.in.yaml")}; !slices.Equal(cases, want) {
		t.Errorf("cases %v, want %v (a case without its output is still a case)", cases, want)
	}
	if want := []string{filepath.Join(dir, "gone.out.yaml") + " has no case gone.in.yaml: delete it, or restore its input"}; !slices.Equal(rec.errors, want) {
		t.Errorf("errors %q, want %q", rec.errors, want)
	}

	// An output suffix that ends like the input's (x.golden.yaml, x.yaml).
	rec = &errorsT{TB: t}
	if cases := Pairs(rec, dir, ".yaml", ".out.yaml"); len(cases) != 2 || len(rec.errors) != 2 {
		t.Errorf("with suffixes .yaml and .out.yaml: cases %v, errors %q", cases, rec.errors)
	}

	rec = &errorsT{TB: t}
	Claimed(rec, filepath.Join(dir, "*.out.yaml"), []string{filepath.Join(dir, "a.out.yaml")})
	if want := []string{filepath.Join(dir, "gone.out.yaml") + " belongs to no case: delete it, or restore its case"}; !slices.Equal(rec.errors, want) {
		t.Errorf("Claimed: errors %q, want %q", rec.errors, want)
	}
}

func TestCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.out")
	if err := os.WriteFile(path, []byte("a\nb\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rec := &errorsT{TB: t}
	Check(rec, path, []byte("a\nb\n"))
	Check(rec, path, []byte("a\nc\n"))
	if want := []string{path + " differs from the output (rerun with -update and review the diff); first difference at line 2:\n- b\n+ c"}; !slices.Equal(rec.errors, want) {
		t.Errorf("errors %q, want %q", rec.errors, want)
	}
}
