// Package ratelog bounds what a client can make Horizon log: a Logger writes
// at most one line per key per interval, and reports how many lines of that
// key it dropped with the next line it writes. Metrics still count every
// event; the log only says that they happen, and to whom.
package ratelog

import (
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"
)

// MaxKeys bounds the keys a Logger remembers (and one more, ""). When it is
// full, keys not seen for an interval are forgotten (at most once an
// interval); while none can be, new keys share the key "", so a flood of
// distinct keys costs bounded memory and writes one line an interval.
const MaxKeys = 4096

// Logger writes at most one line per key per interval to an slog.Logger.
type Logger struct {
	log   *slog.Logger
	every time.Duration
	now   func() time.Time

	mu    sync.Mutex
	keys  map[string]*key
	swept time.Time // when forget last ran
}

type key struct {
	last    time.Time // when a line of the key was last written
	dropped int       // lines dropped since
}

// New returns a Logger writing to log at most one line per key per every.
func New(log *slog.Logger, every time.Duration) *Logger {
	return NewWithClock(log, every, time.Now)
}

// NewWithClock is New with an injected clock.
func NewWithClock(log *slog.Logger, every time.Duration, now func() time.Time) *Logger {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Logger{log: log, every: every, now: now, keys: map[string]*key{}}
}

// Warn logs msg at warning level with args, unless a line of the same key
// was written less than an interval ago. It reports whether it wrote.
func (l *Logger) Warn(k, msg string, args ...any) bool { return l.emit(slog.LevelWarn, k, msg, args) }

// Info is Warn at info level.
func (l *Logger) Info(k, msg string, args ...any) bool { return l.emit(slog.LevelInfo, k, msg, args) }

func (l *Logger) emit(level slog.Level, k, msg string, args []any) bool {
	if l == nil {
		return false
	}
	now := l.now()
	l.mu.Lock()
	e := l.keys[k]
	if e == nil {
		if len(l.keys) >= MaxKeys && now.Sub(l.swept) >= l.every {
			l.forget(now)
		}
		if len(l.keys) >= MaxKeys {
			k = ""
			if e = l.keys[k]; e == nil {
				e = &key{}
				l.keys[k] = e
			}
		} else {
			e = &key{}
			l.keys[k] = e
		}
	}
	if !e.last.IsZero() && now.Sub(e.last) < l.every {
		e.dropped++
		l.mu.Unlock()
		return false
	}
	dropped := e.dropped
	e.last, e.dropped = now, 0
	l.mu.Unlock()
	if dropped > 0 {
		args = append(args, "suppressed", dropped)
	}
	l.log.Log(nil, level, msg, args...) //nolint:staticcheck // no context to pass
	return true
}

// forget drops keys whose last line is an interval old and that dropped
// nothing since (their next line would be written anyway). Called with mu.
func (l *Logger) forget(now time.Time) {
	l.swept = now
	for k, e := range l.keys {
		if now.Sub(e.last) >= l.every && e.dropped == 0 {
			delete(l.keys, k)
		}
	}
}

// Truncate shortens s to at most n bytes (on a rune boundary), marking a cut
// with "…": for client-supplied text that goes into a log line.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
