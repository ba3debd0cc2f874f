package file

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/horizonmesh/horizon/internal/testkit"
	"github.com/horizonmesh/horizon/internal/testkit/golden"
)

// TestTooLarge loads files of more than MaxFileSize bytes (a valid
// ClusterSet padded with comments) written to a temporary directory, and
// compares the error with testdata/generated/<case>.err (-update rewrites
// it), the directory left out. TestFileSizeBound checks the bound itself.
func TestTooLarge(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	for _, tc := range []struct {
		name string
		size int
	}{
		{"too-large", 100 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name+".yaml")
			testkit.CopyPadded(t, "testdata/watch/v1.yaml", path, tc.size)
			errPath := filepath.Join("testdata/generated", tc.name+".err")
			paths = append(paths, errPath)
			cs, err := Load(path)
			if err == nil {
				t.Fatalf("Load of %d bytes succeeded with version %s", tc.size, cs.Version())
			}
			var first *Error
			if !errors.As(err, &first) || first.File != path {
				t.Errorf("errors.As(*Error) = %+v, want an error in %s", first, path)
			}
			golden.Check(t, errPath, []byte(strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), "")+"\n"))
		})
	}
	golden.Claimed(t, "testdata/generated/*.err", paths)
}

// TestFileSizeBound checks both sides of MaxFileSize, through Load and
// Parse. The file starts with a syntax error, where yaml stops: a file of
// MaxFileSize bytes is parsed (and fails there), one byte more is not.
func TestFileSizeBound(t *testing.T) {
	dir := t.TempDir()
	src, path := filepath.Join(dir, "src.yaml"), filepath.Join(dir, "clusterset.yaml")
	if err := os.WriteFile(src, []byte("a: b: c\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		size int
		want string
	}{
		{MaxFileSize, path + ":1:1: malformed YAML: mapping values are not allowed in this context"},
		{MaxFileSize + 1, fmt.Sprintf("%s:1:1: size > %d bytes: a ClusterSet file holds at most 8 MiB", path, MaxFileSize)},
	} {
		testkit.CopyPadded(t, src, path, tc.size)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		_, loadErr := Load(path)
		_, parseErr := Parse(path, data)
		for what, err := range map[string]error{"Load": loadErr, "Parse": parseErr} {
			if err == nil || err.Error() != tc.want {
				t.Errorf("%d bytes: %s = %v, want %s", tc.size, what, err, tc.want)
			}
		}
	}
}

// TestWatcherTooLarge checks that a file grown past MaxFileSize is rejected
// like an invalid one: counted, LastError says why, and the last good
// ClusterSet stays.
func TestWatcherTooLarge(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	path := filepath.Join(t.TempDir(), "clusterset.yaml")
	install(t, "v1.yaml", path)
	h := start(t, path, eventsOnly)
	nextUpdate(t, h.updates, version(t, "v1.yaml"))

	rejected := h.reloads("rejected")
	// v2, which would be an update, made too large; written aside and
	// renamed, so that no read sees it half-written.
	testkit.CopyPadded(t, "testdata/watch/v2.yaml", path+".tmp", MaxFileSize+1)
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
	wantErr := fmt.Sprintf("%s:1:1: size > %d bytes: a ClusterSet file holds at most 8 MiB", path, MaxFileSize)
	testkit.Eventually(t, wait, "LastError to report the size", func() bool {
		err := h.w.LastError()
		return err != nil && err.Error() == wantErr
	})
	if got := h.reloads("rejected"); got != rejected+1 {
		t.Errorf("rejected reloads = %v, want %v", got, rejected+1)
	}
	noUpdate(t, h.updates)

	replace(t, "v2.yaml", path)
	nextUpdate(t, h.updates, version(t, "v2.yaml"))
	h.stop(t)
}

// TestBounds checks every list and mapping bound of the format: one item
// more than the bound is reported at the list, and nothing of the list is
// read; at the bound, the list is read (its items may be wrong: the bound
// is what is checked).
func TestBounds(t *testing.T) {
	const (
		cluster  = "{name: c, network: n, %s}"
		service  = "{name: s, namespace: ns, ports: [{name: http, port: 80}], %s}"
		endpoint = "{address: 10.0.0.1, %s}"
	)
	in := func(outer, inner string) string { return fmt.Sprintf(outer, inner) }
	for _, tc := range []struct {
		path     string // of the list
		what     string
		max      int
		doc      string // with %s for the list's field
		field    string
		item     func(i int) string
		mapping  bool
		atMaxErr bool // items at the bound are errors still (not valid on their own)
	}{
		{"networks", "networks", MaxNetworks, "{%s, clusters: []}", "networks", func(i int) string { return fmt.Sprint("n", i) }, false, false},
		{"clusters", "clusters", MaxClusters, "{%s}", "clusters", func(i int) string { return fmt.Sprintf("{name: c%d, network: n}", i) }, false, false},
		{"clusters[c].gateways", "gateways", MaxGateways, "{clusters: [" + cluster + "]}", "gateways",
			func(i int) string { return fmt.Sprintf("{address: 192.0.2.1, port: %d}", i+1) }, false, false},
		{"clusters[c].services", "services", MaxServices, "{clusters: [" + cluster + "]}", "services",
			func(i int) string { return "0" }, false, true},
		{"clusters[c].services[ns/s].ports", "ports", MaxPorts, "{clusters: [" + in(cluster, "services: [{name: s, namespace: ns, %s}]") + "]}", "ports",
			func(i int) string { return fmt.Sprintf("{name: p%d, port: %d}", i, i+1) }, false, false},
		{"clusters[c].services[ns/s].endpoints", "endpoints", MaxEndpoints, "{clusters: [" + in(cluster, "services: ["+service+"]") + "]}", "endpoints",
			func(i int) string { return "0" }, false, true},
		{"clusters[c].services[ns/s].endpoints[10.0.0.1].ports", "ports", MaxPorts,
			"{clusters: [" + in(cluster, "services: ["+in(service, "endpoints: ["+endpoint+"]")+"]") + "]}", "ports",
			func(i int) string { return fmt.Sprintf("p%d: 80", i) }, true, true},
		{"clusters[c].services[ns/s].endpoints[10.0.0.1].labels", "labels", MaxLabels,
			"{clusters: [" + in(cluster, "services: ["+in(service, "endpoints: ["+endpoint+"]")+"]") + "]}", "labels",
			func(i int) string { return fmt.Sprintf("k%d: v", i) }, true, false},
	} {
		t.Run(tc.path, func(t *testing.T) {
			for _, n := range []int{tc.max, tc.max + 1} {
				items := make([]string, n)
				for i := range items {
					items[i] = tc.item(i)
				}
				list := "[" + strings.Join(items, ", ") + "]"
				if tc.mapping {
					list = "{" + strings.Join(items, ", ") + "}"
				}
				doc := fmt.Sprintf(tc.doc, tc.field+": "+list)
				_, err := Parse("f.yaml", []byte(doc))
				want := fmt.Sprintf("%s: %d %s, at most %d", tc.path, n, tc.what, tc.max)
				col := strings.LastIndex(doc, tc.field+": ") + len(tc.field) + 3
				if n > tc.max {
					if err == nil || err.Error() != fmt.Sprintf("f.yaml:1:%d: %s", col, want) {
						t.Errorf("%d items: error %v, want only f.yaml:1:%d: %s", n, err, col, want)
					}
					continue
				}
				if err != nil && (!tc.atMaxErr || strings.Contains(err.Error(), "at most")) {
					t.Errorf("%d items: %v", n, firstLine(err))
				}
			}
		})
	}
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
