// Package testkit is Horizon's shared test kit: the harnesses every
// package's tests would otherwise write again. It is imported by tests only.
//
// The kit follows the pipeline a test exercises:
//
//	testdata/*.yaml ──► fixture.ClusterSet                the model a test starts from
//	ADS stream      ──► xdstest.SotW, xdstest.Delta       send / expect / expect none / ACK / NACK
//	assignment      ──► xdstest.Endpoints, .Localities    address → weight@priority
//	output          ──► golden.Check, golden.Pairs        -update rewrites; a golden file with no case fails
//	identity        ──► certtest.Root, .SVID, .NewServer  a test CA built on package certs
//
// and, here, Eventually, for whatever a test waits on. This package imports
// only the standard library, so that any package's tests, even the lowest,
// can use it; the subpackages import what they need, so the tests of those
// packages cannot import them.
package testkit

import (
	"bytes"
	"errors"
	"os"
	"sync"
	"testing"
	"time"
)

// Condition is what Eventually waits for: a func() bool, or a func() error
// whose last error says why the wait failed.
type Condition interface {
	func() bool | func() error
}

// Eventually calls cond until it holds and returns how long that took. If
// it does not hold within timeout, the test fails with what and cond's last
// error. cond runs on the test's goroutine, so it may call t.Fatal itself.
//
// It polls every few milliseconds at first, then less often (every 50ms at
// the most): a condition met early is seen early, and a long wait does not
// spin. The timeout bounds a wait; it is an assertion only where a test
// documents it as one.
func Eventually[C Condition](t testing.TB, timeout time.Duration, what string, cond C) time.Duration {
	t.Helper()
	check := func() error {
		switch c := any(cond).(type) {
		case func() bool:
			if !c() {
				return errNotYet
			}
			return nil
		case func() error:
			return c()
		}
		panic("unreachable")
	}
	start := time.Now()
	pause := 5 * time.Millisecond
	for {
		err := check()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			if err == errNotYet {
				t.Fatalf("%s: not within %v", what, timeout)
			}
			t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(pause)
		pause = min(2*pause, 50*time.Millisecond)
	}
}

// errNotYet stands for a func() bool that returned false.
var errNotYet = errors.New("not yet")

// Copy writes the file src to dst, in place (as an editor that saves
// without renaming does): how the watcher tests change a watched file.
func Copy(t testing.TB, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// CopyPadded writes the YAML file src to dst followed by comment lines, to
// size bytes in all: a valid input file of any size, for the tests of size
// limits. The padding is written a chunk at a time, not held in memory.
func CopyPadded(t testing.TB, src, dst string, size int) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > size {
		t.Fatalf("%s is %d bytes, more than %d", src, len(data), size)
	}
	f, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	line := append([]byte("\n#"), bytes.Repeat([]byte{'x'}, 1021)...)
	chunk := bytes.Repeat(line, 1024) // 1 MiB
	for left := size - len(data); left > 0; left -= len(chunk) {
		if _, err := f.Write(chunk[:min(left, len(chunk))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// Buffer is a bytes.Buffer that goroutines may write while a test reads
// it: a log destination for a server, a proxy or a subprocess's output.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
