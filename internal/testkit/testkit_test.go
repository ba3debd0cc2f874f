package testkit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// fakeT records a failure the way testing.T stops a test: Fatalf ends the
// goroutine.
type fakeT struct {
	testing.TB
	failure string
}

func (*fakeT) Helper() {}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.failure = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// run calls body as a test would, with a fakeT, and returns its failure.
func run(body func(t testing.TB)) string {
	f := &fakeT{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		body(f)
	}()
	<-done
	return f.failure
}

func TestEventually(t *testing.T) {
	calls := 0
	if failure := run(func(t testing.TB) {
		Eventually(t, time.Second, "the third call", func() bool { calls++; return calls == 3 })
	}); failure != "" || calls != 3 {
		t.Errorf("a bool condition that holds at the third call: failure %q after %d calls", failure, calls)
	}

	failure := run(func(t testing.TB) {
		Eventually(t, 50*time.Millisecond, "the impossible", func() error { return errors.New("still 41") })
	})
	if !strings.HasPrefix(failure, "the impossible: not within 50ms: still 41") {
		t.Errorf("an error condition that never holds failed with %q, want what and its last error", failure)
	}
	failure = run(func(t testing.TB) {
		Eventually(t, 50*time.Millisecond, "the impossible", func() bool { return false })
	})
	if failure != "the impossible: not within 50ms" {
		t.Errorf("a bool condition that never holds failed with %q", failure)
	}

	start := time.Now()
	took := Eventually(t, time.Second, "200ms", func() bool { return time.Since(start) > 200*time.Millisecond })
	if took < 200*time.Millisecond || took > 600*time.Millisecond {
		t.Errorf("Eventually returned %v for a condition met after 200ms", took)
	}
}

func TestCopyPadded(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.yaml")
	if err := os.WriteFile(src, []byte("a: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{5, 6, 7, 1 << 20, 3<<20 + 17} {
		dst := filepath.Join(dir, "dst.yaml")
		CopyPadded(t, src, dst, size)
		data, err := os.ReadFile(dst)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) != size || !strings.HasPrefix(string(data), "a: 1\n") {
			t.Errorf("size %d: got %d bytes starting %.10q", size, len(data), data)
		}
		for l := range strings.Lines(string(data[5:])) {
			if l != "\n" && !strings.HasPrefix(l, "#") {
				t.Fatalf("size %d: padding line %.20q is not a comment", size, l)
			}
		}
	}
}
