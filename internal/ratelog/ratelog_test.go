package ratelog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestOneLinePerKeyPerInterval(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(0, 0)
	l := NewWithClock(slog.New(slog.NewTextHandler(&buf, nil)), time.Second, func() time.Time { return now })
	for range 1000 {
		l.Warn("a", "nack")
	}
	l.Warn("b", "nack")
	if got := strings.Count(buf.String(), "\n"); got != 2 {
		t.Fatalf("1000 lines of key a and one of b wrote %d lines, want 2:\n%s", got, buf.String())
	}
	now = now.Add(time.Second)
	buf.Reset()
	if !l.Warn("a", "nack") {
		t.Fatal("a line an interval later was dropped")
	}
	if !strings.Contains(buf.String(), "suppressed=999") {
		t.Fatalf("the next line does not report the 999 dropped: %s", buf.String())
	}
}

func TestKeysAreBounded(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(0, 0)
	l := NewWithClock(slog.New(slog.NewTextHandler(&buf, nil)), time.Minute, func() time.Time { return now })
	for i := range 3 * MaxKeys {
		l.Warn(strings.Repeat("k", i%50)+string(rune('a'+i%26))+time.Duration(i).String(), "x")
	}
	if len(l.keys) > MaxKeys+1 {
		t.Fatalf("%d keys remembered, bound %d", len(l.keys), MaxKeys)
	}
	if got := strings.Count(buf.String(), "\n"); got > MaxKeys+1 {
		t.Fatalf("%d lines for %d distinct keys in one interval, want at most %d", got, 3*MaxKeys, MaxKeys+1)
	}
}

func TestTruncate(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"abcdef", 3, "abc…"},
		{"ééé", 3, "é…"}, // 'é' is 2 bytes: the cut moves back to a rune start
	} {
		if got := Truncate(c.in, c.n); got != c.want {
			t.Errorf("Truncate(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}
