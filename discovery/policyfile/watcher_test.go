package policyfile

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/horizonmesh/horizon/internal/testkit"
)

const wait = 5 * time.Second

// install writes testdata/watch/<name> to path, in place.
func install(t *testing.T, name, path string) {
	t.Helper()
	testkit.Copy(t, filepath.Join("testdata/watch", name), path)
}

func nextUpdate(t *testing.T, updates <-chan *File) *File {
	t.Helper()
	select {
	case p := <-updates:
		return p
	case <-time.After(wait):
		t.Fatalf("after %v: no update", wait)
	}
	return nil
}

func TestWatcher(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	path := filepath.Join(t.TempDir(), "policy.yaml")
	install(t, "v1.yaml", path)
	metrics := NewMetrics(prometheus.NewPedanticRegistry())
	updates := make(chan *File, 16)
	w := &Watcher{
		Path:         path,
		Logger:       slog.New(slog.NewTextHandler(t.Output(), nil)),
		OnUpdate:     func(p *File) { updates <- p },
		Metrics:      metrics,
		PollInterval: 50 * time.Millisecond,
	}
	reloads := func(result string) float64 { return testutil.ToFloat64(metrics.Count(result)) }
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	topo := exampleTopology(t)
	w.SetTopology(topo)
	p := nextUpdate(t, updates)
	if got := p.LookupHost("echo.demo.svc.clusterset.local").ConnectTimeout; got != time.Second {
		t.Fatalf("v1 connectTimeout = %v", got)
	}
	if testutil.ToFloat64(metrics.LastSuccess()) <= 0 || reloads("ok") != 1 {
		t.Errorf("after the first load: ok=%v lastSuccess=%v", reloads("ok"), testutil.ToFloat64(metrics.LastSuccess()))
	}

	t.Log("a bad edit: rejected, the last good policy stays")
	install(t, "bad.yaml", path)
	want := path + `:4:22: services[demo/echo].clusters.pin[0]: unknown cluster "west-2" (known: east-1, east-2, west-1)`
	testkit.Eventually(t, wait, "the rejection", func() bool { err := w.LastError(); return err != nil && err.Error() == want })
	if reloads("rejected") != 1 {
		t.Errorf("rejected = %v, want 1", reloads("rejected"))
	}
	if st := w.Status(); st.CheckOK || st.Version != p.Version || st.LastError != want || st.TopologyMismatch {
		t.Errorf("status after a bad edit: %+v", st)
	}
	if w.File() != p {
		t.Errorf("the serving policy changed")
	}

	t.Log("the fix")
	install(t, "v2.yaml", path)
	p2 := nextUpdate(t, updates)
	if p2.Version == p.Version || w.LastError() != nil {
		t.Errorf("after the fix: version %s, error %v", p2.Version, w.LastError())
	}

	t.Log("the same topology again: no check")
	ok := reloads("ok")
	w.SetTopology(topo)

	t.Log("west-1 leaves the ClusterSet: the policy stays, flagged")
	shrunk := Topology{Clusters: topo.Clusters[:2]}
	w.SetTopology(shrunk)
	testkit.Eventually(t, wait, "the mismatch", func() bool { return w.Status().TopologyMismatch })
	if testutil.ToFloat64(metrics.mismatches) != 1 || w.File() != p2 || reloads("ok") != ok {
		t.Errorf("mismatch gauge %v, policy kept %v, ok %v (was %v)", testutil.ToFloat64(metrics.mismatches), w.File() == p2, reloads("ok"), ok)
	}

	t.Log("west-1 is back")
	w.SetTopology(topo)
	testkit.Eventually(t, wait, "the mismatch to clear", func() bool { st := w.Status(); return !st.TopologyMismatch && st.CheckOK })
	if testutil.ToFloat64(metrics.mismatches) != 0 {
		t.Errorf("mismatch gauge still set")
	}
	select {
	case p := <-updates:
		t.Errorf("unexpected update to %s: the policy did not change", p.Version)
	default:
	}
}

func TestWatcherInitialError(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	path := filepath.Join(t.TempDir(), "policy.yaml")
	install(t, "bad.yaml", path)
	w := &Watcher{Path: path}
	w.SetTopology(exampleTopology(t))
	if err := w.Run(t.Context()); err == nil {
		t.Fatal("Run accepted a bad policy")
	}
}
