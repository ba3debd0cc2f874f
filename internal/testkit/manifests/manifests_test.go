package manifests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recorder is a testing.TB that keeps the errors a check reports.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper()                   {}
func (r *recorder) Error(args ...any)         { r.errs = append(r.errs, fmt.Sprint(args...)) }
func (r *recorder) Errorf(f string, a ...any) { r.errs = append(r.errs, fmt.Sprintf(f, a...)) }

var checks = map[string]func(testing.TB, Docs){
	"CheckMountedFilesReadable":   func(t testing.TB, d Docs) { CheckMountedFilesReadable(t, d) },
	"CheckSVIDKeyReadable":        func(t testing.TB, d Docs) { CheckSVIDKeyReadable(t, d) },
	"CheckFilesMountedAndWritten": func(t testing.TB, d Docs) { CheckFilesMountedAndWritten(t, d) },
	"CheckReferencedObjects":      func(t testing.TB, d Docs) { CheckReferencedObjects(t, d, nil) },
	"CheckNoPlaintextXDS":         func(t testing.TB, d Docs) { CheckNoPlaintextXDS(t, d) },
	"CheckBootstrapInThePod":      func(t testing.TB, d Docs) { CheckBootstrapInThePod(t, d) },
	"CheckNoClusterWideRead":      func(t testing.TB, d Docs) { CheckNoClusterWideRead(t, d, "ns") },
}

// header is the value of "# key: value" in a file's first lines.
func header(data []byte, key string) string {
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "# "+key+": "); ok {
			return v
		}
	}
	return ""
}

// TestChecksCatch: each file in testdata/bad breaks one rule, and the check
// its header names reports it with the message its header wants; every
// other check finds nothing wrong in it, so each check is specific (but
// CheckReferencedObjects, since the cases name Secrets and ConfigMaps they
// do not create).
func TestChecksCatch(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "bad", "*.yaml"))
	if err != nil || len(files) < 8 {
		t.Fatalf("%d cases, %v", len(files), err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			check, want := header(data, "check"), header(data, "want")
			objs, decodeErr := Decode(file, data)
			if check == "Decode" {
				if decodeErr == nil || !strings.Contains(decodeErr.Error(), want) {
					t.Errorf("Decode: %v, want %q", decodeErr, want)
				}
				return
			}
			if decodeErr != nil {
				t.Fatal(decodeErr)
			}
			if checks[check] == nil {
				t.Fatalf("no check %q", check)
			}
			docs := Docs{file: objs}
			for name, run := range checks {
				r := &recorder{TB: t}
				run(r, docs)
				switch {
				case name == check && !strings.Contains(strings.Join(r.errs, "\n"), want):
					t.Errorf("%s reports %q, want %q", name, r.errs, want)
				case name != check && name != "CheckReferencedObjects" && len(r.errs) > 0:
					t.Errorf("%s, not the check under test, reports %q", name, r.errs)
				}
			}
		})
	}
}
