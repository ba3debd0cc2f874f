package main

import (
	"bufio"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/horizonmesh/horizon/internal/testkit"
)

// crossnetProc is a process of the cross-network test (a server, a client, a
// gateway, an agent), possibly in a network namespace. Its standard output is
// read line by line; all its output goes to the test log if the test fails.
type crossnetProc struct {
	name  string
	cmd   *exec.Cmd
	out   *testkit.Buffer
	lines chan string // standard output, line by line; closed at its end
	stdin io.WriteCloser
	done  chan struct{} // closed when the process has exited
	err   error         // Wait's result, once done is closed
}

// startProc starts cmd; the process is stopped (SIGTERM) when the test ends.
func startProc(t *testing.T, name string, cmd *exec.Cmd) *crossnetProc {
	t.Helper()
	p := &crossnetProc{name: name, cmd: cmd, out: &testkit.Buffer{}, lines: make(chan string, 256), done: make(chan struct{})}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	read := make(chan struct{})
	go func() {
		defer close(read)
		defer close(p.lines)
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			fmt.Fprintf(p.out, "%s\n", s.Text())
			select {
			case p.lines <- s.Text():
			default: // nobody is reading lines now; the log has it
			}
		}
	}()
	go func() {
		<-read // Wait closes stdout; read it all first
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("%s: %s (exit: %v):\n%s", name, strings.Join(cmd.Args, " "), p.err, p.out)
		}
	})
	return p
}

// stop sends SIGTERM and waits for the process to exit (killing it after
// e2eWait). It may be called more than once.
func (p *crossnetProc) stop(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
		return
	default:
	}
	p.stdin.Close()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(e2eWait):
		t.Errorf("%s did not stop within %v of SIGTERM; killing it", p.name, e2eWait)
		p.cmd.Process.Kill()
		<-p.done
	}
}

// waitLine waits for a line of standard output that starts with prefix,
// skipping others, and returns it.
func (p *crossnetProc) waitLine(t *testing.T, prefix string) string {
	t.Helper()
	timeout := time.After(e2eWait)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				<-p.done
				t.Fatalf("%s exited (%v) before printing %q:\n%s", p.name, p.err, prefix, p.out)
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-timeout:
			t.Fatalf("%s printed no line starting with %q within %v:\n%s", p.name, prefix, e2eWait, p.out)
		}
	}
}

// ask sends a command line (the client's --stdin protocol) and returns the
// answer: the next line starting with "ok" or "err".
func (p *crossnetProc) ask(t *testing.T, command string) (ok bool, fields []string) {
	t.Helper()
	if _, err := fmt.Fprintln(p.stdin, command); err != nil {
		t.Fatalf("%s: %s: %v", p.name, command, err)
	}
	timeout := time.After(e2eWait)
	for {
		select {
		case l, open := <-p.lines:
			if !open {
				<-p.done
				t.Fatalf("%s exited (%v) while answering %q", p.name, p.err, command)
			}
			f := strings.Fields(l)
			if len(f) > 0 && (f[0] == "ok" || f[0] == "err") {
				return f[0] == "ok", f[1:]
			}
		case <-timeout:
			t.Fatalf("%s did not answer %q within %v", p.name, command, e2eWait)
		}
	}
}
