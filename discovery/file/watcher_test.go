package file

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/internal/testkit"
)

// wait is how long a test waits for the watcher to see a change: generous,
// as a loaded machine may be slow; a passing test never waits it out.
const wait = 5 * time.Second

// install writes testdata/watch/<name> to path, in place.
func install(t *testing.T, name, path string) {
	t.Helper()
	testkit.Copy(t, filepath.Join("testdata/watch", name), path)
}

// replace writes testdata/watch/<name> to path atomically: a new file
// renamed over the old one, as editors and config tools do.
func replace(t *testing.T, name, path string) {
	t.Helper()
	tmp := path + ".tmp"
	install(t, name, tmp)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func version(t *testing.T, name string) string {
	t.Helper()
	return mustParse(t, filepath.Join("testdata/watch", name)).Version()
}

// nextUpdate waits for OnUpdate to be called with the given version. It skips
// versions in between, which a reader may see half-way through an in-place
// write.
func nextUpdate(t *testing.T, updates <-chan *discovery.ClusterSet, want string) {
	t.Helper()
	timeout := time.After(wait)
	for {
		select {
		case cs := <-updates:
			if cs.Version() == want {
				return
			}
			t.Logf("skipping update to version %s", cs.Version())
		case <-timeout:
			t.Fatalf("after %v: no update to version %s", wait, want)
		}
	}
}

func noUpdate(t *testing.T, updates <-chan *discovery.ClusterSet) {
	t.Helper()
	select {
	case cs := <-updates:
		t.Fatalf("unexpected update to version %s", cs.Version())
	default:
	}
}

// eventsOnly leaves the poll out of a test of file system events.
func eventsOnly(w *Watcher) { w.PollInterval = time.Hour }

type harness struct {
	w       *Watcher
	metrics *Metrics
	updates chan *discovery.ClusterSet
	cancel  context.CancelFunc
	done    chan error
	stopped sync.Once
}

// start runs a Watcher on path until stop, or until the test ends.
func start(t *testing.T, path string, configure func(*Watcher)) *harness {
	t.Helper()
	h := &harness{
		metrics: NewMetrics(prometheus.NewPedanticRegistry()),
		updates: make(chan *discovery.ClusterSet, 64),
		done:    make(chan error, 1),
	}
	h.w = &Watcher{
		Path:     path,
		Logger:   slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnUpdate: func(cs *discovery.ClusterSet) { h.updates <- cs },
		Metrics:  h.metrics,
	}
	if configure != nil {
		configure(h.w)
	}
	ctx, cancel := context.WithCancel(t.Context())
	h.cancel = cancel
	go func() { h.done <- h.w.Run(ctx) }()
	t.Cleanup(func() { h.stop(t) })
	return h
}

// stop cancels Run and checks that it returns nil.
func (h *harness) stop(t *testing.T) {
	t.Helper()
	h.stopped.Do(func() {
		h.cancel()
		select {
		case err := <-h.done:
			if err != nil {
				t.Errorf("Run returned %v after cancel, want nil", err)
			}
		case <-time.After(wait):
			t.Errorf("Run still running %v after cancel", wait)
		}
	})
}

func (h *harness) reloads(result string) float64 {
	return testutil.ToFloat64(h.metrics.Count(result))
}

func TestWatcher(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	path := filepath.Join(t.TempDir(), "clusterset.yaml")
	install(t, "v1.yaml", path)
	h := start(t, path, eventsOnly)

	// The initial load.
	nextUpdate(t, h.updates, version(t, "v1.yaml"))
	if err := h.w.LastError(); err != nil {
		t.Errorf("LastError after the first load = %v", err)
	}
	if got := testutil.ToFloat64(h.metrics.LastSuccess()); got <= 0 {
		t.Errorf("last success timestamp = %v, want > 0", got)
	}

	t.Log("a valid edit, in place")
	install(t, "v2.yaml", path)
	nextUpdate(t, h.updates, version(t, "v2.yaml"))

	t.Log("an invalid edit")
	rejected := h.reloads("rejected")
	install(t, "bad.yaml", path)
	wantErr := path + `:10:22: clusters[east-1].services[demo/echo].endpoints[127.0.0.300].address: "127.0.0.300" is not an IP address`
	testkit.Eventually(t, wait, "LastError to report the bad address", func() bool {
		err := h.w.LastError()
		return err != nil && err.Error() == wantErr
	})
	if got := h.reloads("rejected"); got <= rejected {
		t.Errorf("rejected reloads = %v, want more than %v", got, rejected)
	}
	noUpdate(t, h.updates)

	t.Log("the fix")
	install(t, "v3.yaml", path)
	nextUpdate(t, h.updates, version(t, "v3.yaml"))
	if err := h.w.LastError(); err != nil {
		t.Errorf("LastError after the fix = %v", err)
	}

	t.Log("an edit of comments only: a reload, no update")
	ok := h.reloads("ok")
	install(t, "v3-comments.yaml", path)
	testkit.Eventually(t, wait, "a successful reload", func() bool { return h.reloads("ok") > ok })
	noUpdate(t, h.updates)

	t.Log("an atomic replace")
	replace(t, "v4.yaml", path)
	nextUpdate(t, h.updates, version(t, "v4.yaml"))

	t.Log("the file removed: the last good state stays")
	rejected = h.reloads("rejected")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, wait, "LastError to report the missing file", func() bool {
		return errors.Is(h.w.LastError(), fs.ErrNotExist)
	})
	if got := h.reloads("rejected"); got <= rejected {
		t.Errorf("rejected reloads = %v, want more than %v", got, rejected)
	}
	noUpdate(t, h.updates)

	t.Log("the file back")
	install(t, "v1.yaml", path)
	nextUpdate(t, h.updates, version(t, "v1.yaml"))

	h.stop(t)
}

// TestWatcherSymlinkSwap replaces the file the way Kubernetes updates a
// mounted ConfigMap: the file is a symlink through ..data, a symlink to a
// timestamped directory, which is swapped for a new one by a rename.
func TestWatcherSymlinkSwap(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	dir := t.TempDir()
	for _, v := range []string{"v1", "v2"} {
		if err := os.Mkdir(filepath.Join(dir, "..ts-"+v), 0o755); err != nil {
			t.Fatal(err)
		}
		install(t, v+".yaml", filepath.Join(dir, "..ts-"+v, "clusterset.yaml"))
	}
	symlink := func(target, name string) {
		t.Helper()
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	symlink("..ts-v1", "..data")
	symlink("..data/clusterset.yaml", "clusterset.yaml")
	h := start(t, filepath.Join(dir, "clusterset.yaml"), func(w *Watcher) {
		eventsOnly(w)
		w.Metrics = nil
	})
	nextUpdate(t, h.updates, version(t, "v1.yaml"))

	symlink("..ts-v2", "..data_tmp")
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	nextUpdate(t, h.updates, version(t, "v2.yaml"))
	h.stop(t)
}

// TestWatcherPoll checks the fallback that works without file system events.
func TestWatcherPoll(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	path := filepath.Join(t.TempDir(), "clusterset.yaml")
	install(t, "v1.yaml", path)
	h := start(t, path, func(w *Watcher) {
		w.pollOnly = true
		w.PollInterval = 20 * time.Millisecond
	})
	nextUpdate(t, h.updates, version(t, "v1.yaml"))

	replace(t, "v2.yaml", path)
	nextUpdate(t, h.updates, version(t, "v2.yaml"))

	install(t, "v3-comments.yaml", path) // another size than v2
	nextUpdate(t, h.updates, version(t, "v3-comments.yaml"))

	install(t, "bad.yaml", path)
	testkit.Eventually(t, wait, "a rejection", func() bool { return h.w.LastError() != nil })
	noUpdate(t, h.updates)
	h.stop(t)
}

func TestWatcherInitialError(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	install(t, "bad.yaml", bad)
	large := filepath.Join(dir, "large.yaml")
	testkit.CopyPadded(t, "testdata/watch/v1.yaml", large, MaxFileSize+1)
	for _, tc := range []struct {
		path string
		want func(error) bool
	}{
		{bad, func(err error) bool { return strings.HasPrefix(err.Error(), bad+":10:22: ") }},
		{large, func(err error) bool { return strings.HasPrefix(err.Error(), large+":1:1: size > ") }},
		{filepath.Join(dir, "missing.yaml"), func(err error) bool { return errors.Is(err, fs.ErrNotExist) }},
	} {
		m := NewMetrics(nil)
		w := &Watcher{
			Path:     tc.path,
			Metrics:  m,
			OnUpdate: func(*discovery.ClusterSet) { t.Error("OnUpdate called") },
		}
		err := w.Run(t.Context())
		if err == nil || !tc.want(err) {
			t.Errorf("Run(%s) = %v", tc.path, err)
		}
		if w.LastError() == nil {
			t.Errorf("%s: LastError = nil", tc.path)
		}
		if got := testutil.ToFloat64(m.Count("rejected")); got != 1 {
			t.Errorf("%s: rejected reloads = %v, want 1", tc.path, got)
		}
		if _, err := w.Load(); err == nil {
			t.Errorf("Load(%s) succeeded", tc.path)
		}
	}
}

func TestWatcherLoad(t *testing.T) {
	w := &Watcher{Path: "testdata/watch/v1.yaml"}
	cs, err := w.Load()
	if err != nil {
		t.Fatal(err)
	}
	if want := version(t, "v1.yaml"); cs.Version() != want {
		t.Errorf("version = %s, want %s", cs.Version(), want)
	}
	if w.LastError() != nil {
		t.Errorf("Load changed LastError to %v", w.LastError())
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	m.OK(time.Unix(1700000000, 0))
	m.Rejected()
	m.Rejected()
	if n, err := testutil.GatherAndCount(reg, "horizon_file_reloads_total", "horizon_file_last_reload_success_timestamp_seconds"); err != nil || n != 3 {
		t.Errorf("GatherAndCount = %d, %v; want 3 series", n, err)
	}
	for result, want := range map[string]float64{"ok": 1, "rejected": 2} {
		if got := testutil.ToFloat64(m.Count(result)); got != want {
			t.Errorf("reloads{result=%q} = %v, want %v", result, got, want)
		}
	}
	if got := testutil.ToFloat64(m.LastSuccess()); got != 1700000000 {
		t.Errorf("last success = %v", got)
	}

	var none *Metrics // nil records nothing, without panicking
	none.reloads().OK(time.Now())
	none.reloads().Rejected()
}
