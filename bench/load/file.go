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
// old, as editors and config management do). Convergence runs from the
// rename to the last affected proxy's ACK, so it includes the file watch
// (fsnotify), the parse, the debounce and the render. CPU and memory are
// the horizon process's, from /proc. Endpoint and gateway scenarios only:
// hot-service, churn and gateway.
func RunFile(ctx context.Context, sc Scenario, startFleet StartFleet, horizon string, log *slog.Logger) (*Result, error) {
	sc = sc.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if !slices.Contains([]string{HotService, Churn, Gateway}, sc.Name) {
		return nil, fmt.Errorf("scenario %q: the file run takes hot-service, churn or gateway", sc.Name)
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
	res.Idle0 = procMem(pid)

	fleet, err := startFleet(ctx, FleetConfig{
		Address: xdsAddr, Proxies: sc.Proxies, Conns: sc.Conns, Delta: sc.Delta,
		Networks: sc.Networks, ClustersPerNetwork: sc.ClustersPerNetwork,
	})
	if err != nil {
		return nil, err
	}
	defer fleet.Close()
	cpu := procCPU(pid)
	start := time.Now()
	if err := fleet.Start(); err != nil {
		return nil, err
	}
	last, err := fleet.Sync(1, sc.Timeout)
	if err != nil {
		return nil, err
	}
	res.SyncTime = time.Duration(last - start.UnixNano())
	res.SyncCPU = procCPU(pid) - cpu
	log.Info("fleet synced", "proxies", sc.Proxies, "duration", res.SyncTime)
	time.Sleep(time.Second)
	res.Idle1 = procMem(pid)
	before, _, err := fleet.Report()
	if err != nil {
		return nil, err
	}

	res.Applied = make([]int64, len(changes))
	cpu = procCPU(pid)
	t0 := time.Now()
	var errs []error
	for i, ch := range changes {
		if sc.Name == Churn {
			if d := time.Until(t0.Add(time.Duration(float64(i) / sc.Rate * float64(time.Second)))); d > 0 {
				time.Sleep(d)
			}
		}
		// Written beside, then renamed over: the rename is the change.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, files[i+1], 0o644); err != nil {
			return nil, err
		}
		res.Applied[i] = time.Now().UnixNano()
		if err := os.Rename(tmp, path); err != nil {
			return nil, err
		}
		if sc.Name == Churn {
			continue
		}
		if _, err := fleet.Await(i, ch.Affected, sc.Timeout); err != nil {
			errs = append(errs, err)
		}
	}
	if sc.Name == Churn {
		for _, ch := range changes {
			if _, err := fleet.Await(ch.Index, ch.Affected, sc.Timeout); err != nil {
				errs = append(errs, err)
			}
		}
	}
	res.ChangeCPU = procCPU(pid) - cpu
	res.ChangeWall = time.Since(t0)
	time.Sleep(200 * time.Millisecond)
	after, fleetHeap, err := fleet.Report()
	if err != nil {
		return nil, err
	}
	res.FleetHeap = fleetHeap
	res.compute(before, after)
	log.Info("changes done", "changes", len(changes), "p50", res.P50, "max", res.Max)
	res.Errors = errs
	return res, errors.Join(errs...)
}

func ptrs(cs []Change) []*Change {
	out := make([]*Change, len(cs))
	for i := range cs {
		out[i] = &cs[i]
	}
	return out
}

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
