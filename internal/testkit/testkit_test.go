package testkit

import (
	"errors"
	"fmt"
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
