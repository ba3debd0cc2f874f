package policyfile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/horizonmesh/horizon/internal/testkit"
	"github.com/horizonmesh/horizon/internal/testkit/golden"
)

// TestTooLarge loads files of more than MaxFileSize bytes (a valid policy
// padded with comments) written to a temporary directory, and compares the
// error with testdata/generated/<case>.err (-update rewrites it), the
// directory left out. TestFileSizeBound checks the bound itself.
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
			_, err := Load(path, exampleTopology(t))
			if err == nil {
				t.Fatalf("Load of %d bytes succeeded", tc.size)
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
	src, path := filepath.Join(dir, "src.yaml"), filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(src, []byte("a: b: c\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		size int
		want string
	}{
		{MaxFileSize, path + ":1:1: malformed YAML: mapping values are not allowed in this context"},
		{MaxFileSize + 1, fmt.Sprintf("%s:1:1: size > %d bytes: a policy file holds at most 4 MiB", path, MaxFileSize)},
	} {
		testkit.CopyPadded(t, src, path, tc.size)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		_, loadErr := Load(path, exampleTopology(t))
		_, parseErr := Parse(path, data, exampleTopology(t))
		for what, err := range map[string]error{"Load": loadErr, "Parse": parseErr} {
			if err == nil || err.Error() != tc.want {
				t.Errorf("%d bytes: %s = %v, want %s", tc.size, what, err, tc.want)
			}
		}
	}
}

// TestWatcherTooLarge checks that a file grown past MaxFileSize is rejected
// like an invalid one: counted, shown by Status, and the last good policy
// keeps serving.
func TestWatcherTooLarge(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	path := filepath.Join(t.TempDir(), "policy.yaml")
	install(t, "v1.yaml", path)
	metrics := NewMetrics(prometheus.NewPedanticRegistry())
	updates := make(chan *File, 16)
	w := &Watcher{Path: path, OnUpdate: func(p *File) { updates <- p }, Metrics: metrics, PollInterval: 50 * time.Millisecond}
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(t.Context())
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	w.SetTopology(exampleTopology(t))
	p := nextUpdate(t, updates)

	// v2, which would be an update, made too large; written aside and
	// renamed, so that no read sees it half-written.
	testkit.CopyPadded(t, "testdata/watch/v2.yaml", path+".tmp", MaxFileSize+1)
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%s:1:1: size > %d bytes: a policy file holds at most 4 MiB", path, MaxFileSize)
	testkit.Eventually(t, wait, "the rejection", func() bool { err := w.LastError(); return err != nil && err.Error() == want })
	if got := testutil.ToFloat64(metrics.Count("rejected")); got != 1 {
		t.Errorf("rejected = %v, want 1", got)
	}
	if st := w.Status(); st.CheckOK || st.Version != p.Version || st.LastError != want || st.TopologyMismatch || w.File() != p {
		t.Errorf("status after a file too large: %+v", st)
	}
	select {
	case p := <-updates:
		t.Errorf("unexpected update to %s", p.Version)
	default:
	}
}

// TestFailoverPriorityBound: a failoverPriority of 20,000 label keys, each
// a valid label name, is rejected at the list.
func TestFailoverPriorityBound(t *testing.T) {
	keys := []string{"region"}
	for i := range 20_000 - 1 {
		keys = append(keys, fmt.Sprintf("example.com/k%d", i))
	}
	doc := "services:\n  - match: {service: demo/echo}\n    locality:\n      failoverPriority: [" + strings.Join(keys, ", ") + "]\n"
	_, err := Parse("policy.yaml", []byte(doc), exampleTopology(t))
	if want := "policy.yaml:4:25: services[demo/echo].locality.failoverPriority: 20000 keys, at most 16"; err == nil || err.Error() != want {
		t.Errorf("Parse = %v, want only %s", err, want)
	}
}

// TestBounds checks every list and mapping bound of the format: one item
// more than the bound is reported at the list, and nothing of the list is
// read; at the bound, the list is read (its items may be wrong: the bound
// is what is checked).
func TestBounds(t *testing.T) {
	const locality = "{defaults: {locality: {%s}}, services: []}"
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
		{"services", "rules", MaxRules, "{%s}", "services", func(i int) string { return "0" }, false, true},
		{"defaults.locality.failoverPriority", "keys", MaxFailoverPriority, locality, "failoverPriority",
			func(i int) string { return fmt.Sprint("k", i) }, false, false},
		{"defaults.locality.failover", "failover entries", MaxFailover, locality, "failover",
			func(i int) string { return fmt.Sprintf("{from: r%d, to: [x]}", i) }, false, true},
		{"defaults.locality.failover[us-east].to", "regions", MaxFailoverTo, "{defaults: {locality: {failover: [{from: us-east, %s}]}}}", "to",
			func(i int) string { return fmt.Sprint("r", i) }, false, true},
		{"defaults.locality.distribute", "distribute entries", MaxDistribute, locality, "distribute",
			func(i int) string { return fmt.Sprintf("{from: r%d, to: {x: 100}}", i) }, false, true},
		{"defaults.locality.distribute[us-east].to", "shares", MaxDistributeTo, "{defaults: {locality: {distribute: [{from: us-east, %s}]}}}", "to",
			func(i int) string { return fmt.Sprintf("r%d: 1", i) }, true, true},
		{"defaults.retries.retryOn", "retry conditions", MaxRetryOn, "{defaults: {retries: {attempts: 1, %s}}}", "retryOn",
			func(i int) string { return fmt.Sprint("c", i) }, false, true},
		{"defaults.clusters.weights", "clusters", MaxClusters, "{defaults: {clusters: {%s}}}", "weights",
			func(i int) string { return fmt.Sprintf("c%d: 1", i) }, true, true},
		{"defaults.clusters.pin", "clusters", MaxClusters, "{defaults: {clusters: {%s}}}", "pin",
			func(i int) string { return fmt.Sprint("c", i) }, false, true},
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
				_, err := Parse("f.yaml", []byte(doc), exampleTopology(t))
				want := fmt.Sprintf("%s: %d %s, at most %d", tc.path, n, tc.what, tc.max)
				col := strings.LastIndex(doc, tc.field+": ") + len(tc.field) + 3
				if n > tc.max {
					if err == nil || err.Error() != fmt.Sprintf("f.yaml:1:%d: %s", col, want) {
						t.Errorf("%d items: error %v, want only f.yaml:1:%d: %s", n, err, col, want)
					}
					continue
				}
				if err != nil && (!tc.atMaxErr || strings.Contains(err.Error(), "at most")) {
					t.Errorf("%d items: %v", n, err)
				}
			}
		})
	}
}
