package filewatch

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestRun: a change is reported by events and, without them, by polling; a
// file replaced right after the first read is not missed; Extra calls
// OnExtra; Run ends with ctx.
func TestRun(t *testing.T) {
	for _, pollOnly := range []bool{false, true} {
		t.Run(map[bool]string{false: "events", true: "poll"}[pollOnly], func(t *testing.T) {
			defer goleak.VerifyNone(t)
			path := filepath.Join(t.TempDir(), "f.yaml")
			write := func(s string) {
				t.Helper()
				tmp := path + ".tmp"
				if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(tmp, path); err != nil {
					t.Fatal(err)
				}
			}
			write("a")
			changed := make(chan string, 10)
			extra := make(chan struct{}, 1)
			extras := make(chan struct{}, 10)
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			read := func() {
				b, _ := os.ReadFile(path)
				changed <- string(b)
			}
			go func() {
				done <- Run(ctx, path, Options{
					PollOnly: pollOnly, PollInterval: 20 * time.Millisecond,
					Ready: func() error { read(); write("b"); return nil }, // a change right after the first read
					Extra: extra, OnExtra: func() { extras <- struct{}{} },
				}, read)
			}()
			want := func(s string) {
				t.Helper()
				deadline := time.After(10 * time.Second)
				for {
					select {
					case got := <-changed:
						if got == s {
							return
						}
					case <-deadline:
						t.Fatalf("no call that read %q", s)
					}
				}
			}
			want("a")
			want("b")
			write("cc")
			want("cc")
			extra <- struct{}{}
			select {
			case <-extras:
			case <-time.After(10 * time.Second):
				t.Fatal("OnExtra not called")
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}
