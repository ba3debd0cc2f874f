package load

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// RunFile is Run against the production binary: `horizon serve` (the
// executable at horizon) in a process of its own, serving a ClusterSet file
// that the harness rewrites for every change (a new file renamed over the
// old, as editors and config management do). Convergence runs from
// writing the new file to the last affected proxy's ACK, so it includes the file watch
// (fsnotify), the parse, the debounce and the render. CPU and memory are
// the horizon process's, from /proc. Endpoint and gateway scenarios only:
// hot-service, churn and gateway, without a storm.
func RunFile(ctx context.Context, sc Scenario, startFleet StartFleet, horizon string, log *slog.Logger) (*Result, error) {
	sc = sc.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if !slices.Contains([]string{HotService, Churn, Gateway}, sc.Name) {
		return nil, fmt.Errorf("scenario %q: the file run takes hot-service, churn or gateway", sc.Name)
	}
	if sc.Storm {
		return nil, errors.New("the file run measures no reconnect storm (its peak memory is another process's): use -storm=false")
	}
	if len(sc.Rates) > 0 {
		return nil, errors.New("the file run takes no -rates search: use -rate")
	}
	res := &Result{Scenario: sc}
	base, changes, err := sc.Build()
	if err != nil {
		return nil, err
	}
	res.Changes = changes
	// Every file is encoded before serving starts: encoding costs the server nothing.
	files := make([][]byte, len(changes)+1)
	for i, cs := range append([]*Change{{Set: base}}, ptrs(changes)...) {
		if files[i], err = EncodeClusterSet(cs.Set); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("", "horizon-load-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "clusterset.yaml")
	if err := replaceFile(path, files[0]); err != nil {
		return nil, err
	}
	xdsAddr, err := freeAddress()
	if err != nil {
		return nil, err
	}
	httpAddr, err := freeAddress()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, horizon, "serve", "--clusterset", path, "--xds-address", xdsAddr,
		"--http-address", httpAddr, "--debounce", sc.Debounce.String(), "--gateway-probe-interval", "0", "--log-level", "warn")
	cmd.Stderr = os.Stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", horizon, err)
	}
	defer func() {
		cancel()
		_ = cmd.Wait()
	}()
	pid := cmd.Process.Pid
	if err := awaitReady(ctx, "http://"+httpAddr+"/readyz", sc.Timeout); err != nil {
		return nil, fmt.Errorf("horizon serve: %w", err)
	}
	return drive(ctx, sc, res, startFleet, target{
		address: xdsAddr,
		apply:   func(ch *Change) error { return replaceFile(path, files[ch.Index+1]) },
		cpu:     func() float64 { return procCPU(pid) },
		mem:     func() Mem { return procMem(pid) },
	}, log)
}

func ptrs(cs []Change) []*Change {
	out := make([]*Change, len(cs))
	for i := range cs {
		out[i] = &cs[i]
	}
	return out
}

// replaceFile writes data beside path and renames it over path: readers
// see the old file or the new one, whole.
func replaceFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// freeAddress returns a loopback address nothing listens on (just now).
func freeAddress() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func awaitReady(ctx context.Context, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s (%s): %v", timeout, url, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// procCPU is a process's user+system CPU seconds, from /proc/PID/stat.
func procCPU(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command may hold spaces: the fields start after its closing ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / clockTicks
}

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

// procMem is a process's RSS; its heap is not visible from outside (0).
func procMem(pid int) Mem {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return Mem{}
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return Mem{RSS: kb * 1024}
		}
	}
	return Mem{}
}
