// Package dnstest runs a real CoreDNS for tests: CoreDNS v1.15.0 built from its
// Go module by `make coredns-tools` (the separate module in ./tools, only the
// errors, log and kubernetes plugins), pointed at one member cluster's real
// kube-apiserver through a kubeconfig. Its Corefile serves cluster.local and
// clusterset.local, the latter with the kubernetes plugin's multicluster
// option, so clusterset.local answers from the member's ServiceImports and MCS
// EndpointSlices exactly as a member's cluster DNS would:
//
//	Service / EndpointSlices ─┐
//	ServiceImport ────────────┼─▶ kube-apiserver ─▶ CoreDNS ─▶ Server.Query
//	MCS EndpointSlices ───────┘
package dnstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/miekg/dns"
	"k8s.io/client-go/rest"

	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
	"github.com/horizonmesh/horizon/internal/testkit"
)

// EnvBinary names the environment variable that, when set, is the path of the
// coredns binary; otherwise it is bin/coredns at the repository root.
const EnvBinary = "HORIZON_COREDNS"

// Binary returns the path of the coredns binary, or an error that says how to
// build it.
func Binary() (string, error) {
	bin := os.Getenv(EnvBinary)
	if bin == "" {
		_, self, _, _ := runtime.Caller(0)
		bin = filepath.Join(filepath.Dir(self), "..", "..", "..", "bin", "coredns")
	}
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("coredns not found at %s: run `make coredns-tools` (make test does it), or set %s", bin, EnvBinary)
	}
	return bin, nil
}

// corefile is the configuration every test CoreDNS runs: loopback only, on
// the test's port, and the kubernetes block users deploy (Stanza), with a
// kubeconfig line added in place of the in-cluster ServiceAccount.
var corefile = template.Must(template.New("Corefile").Parse(`.:{{.Port}} {
    bind 127.0.0.1
    errors
{{- if .Log}}
    log
{{- end}}
{{.Kubernetes}}
}
`))

// Options change how CoreDNS runs; the zero value is the default.
type Options struct {
	// Log adds the log plugin: one line per query in the test's log.
	Log bool
}

// Server is one running CoreDNS.
type Server struct {
	// Addr is the host:port CoreDNS answers on, over UDP and TCP.
	Addr string

	cmd  *exec.Cmd
	out  *testkit.Buffer
	done chan struct{}
}

// Start runs CoreDNS against the API server cfg names (with cfg's
// credentials, impersonation included: a test can run it as CoreDNS's own
// ServiceAccount to check its RBAC) and waits until it answers for the
// apiserver's own kubernetes.default Service. CoreDNS stops when the test
// ends. A missing binary fails the test: `make test` builds it.
func Start(t testing.TB, cfg *rest.Config, opts Options) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	stanza, err := Stanza()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := kubetest.WriteKubeconfig(kubeconfig, cfg); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	// The free port is found by binding and releasing it; another process
	// may take it before CoreDNS binds, so try a few.
	for range 3 {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		var conf bytes.Buffer
		if err := corefile.Execute(&conf, map[string]any{"Port": port, "Kubernetes": withKubeconfig(stanza, kubeconfig), "Log": opts.Log}); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "Corefile")
		if err := os.WriteFile(path, conf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), out: &testkit.Buffer{}, done: make(chan struct{})}
		s.cmd = exec.Command(bin, "-conf", path, "-quiet")
		s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
		if err := s.cmd.Start(); err != nil {
			t.Fatalf("start coredns: %v", err)
		}
		go func() { _ = s.cmd.Wait(); close(s.done) }()
		if lastErr = s.ready(30 * time.Second); lastErr == nil {
			t.Cleanup(func() {
				s.stop()
				if t.Failed() || opts.Log {
					t.Logf("coredns output:\n%s", s.out.String())
				}
			})
			return s
		}
		s.stop()
		t.Logf("coredns on port %d: %v\n%s", port, lastErr, s.out.String())
	}
	t.Fatalf("coredns did not start: %v", lastErr)
	return nil
}

// ready waits until CoreDNS answers for kubernetes.default, which every
// kube-apiserver creates: then its informers have synced.
func (s *Server) ready(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("coredns exited: %v", s.cmd.ProcessState)
		default:
		}
		r, err := s.Query(context.Background(), "kubernetes.default.svc.cluster.local", dns.TypeA)
		switch {
		case err != nil:
			last = err
		case r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0:
			last = fmt.Errorf("kubernetes.default: %s, %d answers", dns.RcodeToString[r.Rcode], len(r.Answer))
		default:
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %v: %w", timeout, last)
}

func (s *Server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// Query asks CoreDNS one question over UDP (TCP if the answer is truncated)
// and returns the whole response: the caller checks the Rcode.
func (s *Server) Query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Timeout: 2 * time.Second}
	r, _, err := c.ExchangeContext(ctx, m, s.Addr)
	if err == nil && r.Truncated {
		c.Net = "tcp"
		r, _, err = c.ExchangeContext(ctx, m, s.Addr)
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", dns.TypeToString[qtype], name, err)
	}
	return r, nil
}

// Output is what CoreDNS has logged so far.
func (s *Server) Output() string { return s.out.String() }

func freePort() (int, error) {
	// The port must be free for both protocols CoreDNS listens on.
	for range 10 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		return port, nil
	}
	return 0, errors.New("no free loopback port for both TCP and UDP")
}

// Answer is a response reduced to what tests compare: the Rcode's name and
// the answer records' values, sorted: addresses for A and AAAA,
// "priority weight port target" for SRV.
type Answer struct {
	Rcode  string
	Values []string
}

func (a Answer) String() string { return fmt.Sprintf("%s %v", a.Rcode, a.Values) }

// Resolve asks one question and reduces the response to an Answer.
func (s *Server) Resolve(ctx context.Context, name string, qtype uint16) (Answer, error) {
	r, err := s.Query(ctx, name, qtype)
	if err != nil {
		return Answer{}, err
	}
	a := Answer{Rcode: dns.RcodeToString[r.Rcode], Values: []string{}}
	for _, rr := range r.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			a.Values = append(a.Values, rr.A.String())
		case *dns.AAAA:
			a.Values = append(a.Values, rr.AAAA.String())
		case *dns.SRV:
			a.Values = append(a.Values, fmt.Sprintf("%d %d %d %s", rr.Priority, rr.Weight, rr.Port, rr.Target))
		default:
			a.Values = append(a.Values, rr.String())
		}
	}
	slices.Sort(a.Values)
	return a, nil
}

// Want is the Answer a test expects: an Rcode's name and record values in any
// order.
func Want(rcode string, values ...string) Answer {
	v := append([]string{}, values...)
	slices.Sort(v)
	return Answer{Rcode: rcode, Values: v}
}

// WaitFor waits up to timeout until name answers want, and fails the test
// with the last answer if it does not.
func (s *Server) WaitFor(t testing.TB, name string, qtype uint16, want Answer, timeout time.Duration) {
	t.Helper()
	testkit.Eventually(t, timeout, fmt.Sprintf("%s %s = %v", dns.TypeToString[qtype], name, want), func() error {
		got, err := s.Resolve(context.Background(), name, qtype)
		if err != nil {
			return err
		}
		if got.String() != want.String() {
			return fmt.Errorf("got %v", got)
		}
		return nil
	})
}
