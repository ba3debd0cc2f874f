package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/horizonmesh/horizon/discovery/kube"
	"github.com/horizonmesh/horizon/internal/testkit"
)

// Build builds `horizon` from this tree into dir and returns its path.
func Build(dir string) (string, error) {
	bin := dir + "/horizon"
	cmd := exec.Command("go", "build", "-o", bin, "github.com/horizonmesh/horizon/cmd/horizon")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build horizon: %w\n%s", err, out)
	}
	return bin, nil
}

// Horizon is a `horizon serve` process on fixed loopback addresses, so that
// it can be killed and started again where its proxies reconnect.
type Horizon struct {
	Bin       string
	Flags     []string
	XDS, HTTP string
	Out       *testkit.Buffer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// NewHorizon picks its addresses; Start starts it.
func NewHorizon(bin string, flags ...string) (*Horizon, error) {
	x, err := freeAddr()
	if err != nil {
		return nil, err
	}
	h, err := freeAddr()
	if err != nil {
		return nil, err
	}
	return &Horizon{Bin: bin, Flags: flags, XDS: x, HTTP: h, Out: &testkit.Buffer{}}, nil
}

// Start starts the process; it does not wait for readiness (see Ready).
func (h *Horizon) Start() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	cmd := exec.Command(h.Bin, append([]string{"serve", "--xds-address", h.XDS, "--http-address", h.HTTP}, h.Flags...)...)
	cmd.Stdout, cmd.Stderr = h.Out, h.Out
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	h.cmd, h.done = cmd, done
	return nil
}

// Signal sends sig and waits up to wait for the process to exit.
func (h *Horizon) Signal(sig syscall.Signal, wait time.Duration) error {
	h.mu.Lock()
	cmd, done := h.cmd, h.done
	h.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
		return nil
	case <-time.After(wait):
	}
	// Stuck: SIGQUIT makes the Go runtime write every goroutine's stack to
	// the process's output (h.Out) and exit, so the failure says where it
	// hangs; kill -9 if even that does not end it.
	_ = cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
	return fmt.Errorf("horizon serve did not exit within %v of %v; its goroutines at that moment are in its output (SIGQUIT):\n%s", wait, sig, tail(h.Out.String(), 64<<10))
}

// Kill is kill -9.
func (h *Horizon) Kill() error { return h.Signal(syscall.SIGKILL, 10*time.Second) }

// Ready waits until /readyz answers 200.
func (h *Horizon) Ready(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		code, _, err := h.get(ctx, "/readyz")
		if err == nil && code == http.StatusOK {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("horizon serve not ready within %v (last: %d %v)", timeout, code, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (h *Horizon) get(ctx context.Context, path string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+h.HTTP+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// Metric sums the samples of a metric in /metrics whose labels contain
// every one of labels (e.g. `reason="send_timeout"`).
func (h *Horizon) Metric(ctx context.Context, name string, labels ...string) (float64, error) {
	code, body, err := h.get(ctx, "/metrics")
	if err != nil {
		return 0, err
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("/metrics: %d", code)
	}
	var sum float64
	found := false
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(rest, l)
		}
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("/metrics: %q: %w", line, err)
		}
		sum += v
		found = true
	}
	if !found {
		return 0, errors.New("/metrics: no " + name)
	}
	return sum, nil
}

// Resources are the figures I5 compares with a baseline.
type Resources struct {
	Goroutines, FDs, Proxies float64
}

// Resources reads goroutines, open fds and connected proxies from /metrics.
func (h *Horizon) Resources(ctx context.Context) (Resources, error) {
	var r Resources
	var err error
	if r.Goroutines, err = h.Metric(ctx, "go_goroutines"); err != nil {
		return r, err
	}
	if r.FDs, err = h.Metric(ctx, "process_open_fds"); err != nil {
		return r, err
	}
	// The gauge has a series per role once a proxy of it connected.
	if r.Proxies, err = h.Metric(ctx, "horizon_xds_connected_proxies"); err != nil && strings.Contains(err.Error(), "no horizon_xds_connected_proxies") {
		err = nil
	}
	return r, err
}

// Members reads /debug/members: each member's state as Horizon reports it.
func (h *Horizon) Members(ctx context.Context) (map[string]kube.MemberStatus, error) {
	code, body, err := h.get(ctx, "/debug/members")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("/debug/members: %d: %s", code, body)
	}
	var list []kube.MemberStatus
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, fmt.Errorf("/debug/members: %w", err)
	}
	out := map[string]kube.MemberStatus{}
	for _, m := range list {
		out[m.Name] = m
	}
	return out, nil
}
