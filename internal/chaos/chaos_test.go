package chaos

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/horizonmesh/horizon/internal/testkit"
)

var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "chaos-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin, err = Build(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// size picks the short or the long (CHAOS_LONG=1) figure.
func size[T any](short, long T) T {
	if Long() {
		return long
	}
	return short
}

func skipShort(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kube-apiservers and horizon serve")
	}
}

// p99 of ds (sorted in place).
func p99(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	if len(ds) == 0 {
		return 0
	}
	return ds[(len(ds)*99+99)/100-1]
}

// churn makes n changes to service 0 of member 1 (one endpoint more, then
// back) and returns every checked proxy's latency for each.
func churn(t *testing.T, e *Env, n int) []time.Duration {
	t.Helper()
	m := e.Members[1]
	var all []time.Duration
	for i := range n {
		e.changes++
		at := e.Change(m, 0, e.Options.Endpoints+e.changes%2)
		lat, err := e.Latencies(0, at, 30*time.Second)
		if err != nil {
			t.Fatalf("change %d: %v", i, err)
		}
		all = append(all, lat...)
	}
	return all
}

// baseline reads Horizon's goroutines and fds before proxies connect; leak
// checks I5 against it after they leave.
func leak(t *testing.T, e *Env, base Resources) {
	t.Helper()
	e.StopChecker()
	for _, r := range e.Recorders {
		r.Release()
	}
	e.Fleet.Stop()
	var last Resources
	testkit.Eventually(t, 20*time.Second, "I5: goroutines, fds and proxies back to baseline", func() error {
		var err error
		if last, err = e.Horizon.Resources(t.Context()); err != nil {
			return err
		}
		if last.Proxies != 0 || last.Goroutines > base.Goroutines+10 || last.FDs > base.FDs+3 {
			return fmt.Errorf("now %+v, baseline %+v (slack: 10 goroutines, 3 fds)", last, base)
		}
		return nil
	})
	t.Logf("I5: baseline %+v, after the clients left %+v", base, last)
}

func resources(t *testing.T, e *Env) Resources {
	t.Helper()
	r, err := e.Horizon.Resources(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestF1MemberDown: a member's apiserver is down while proxies are
// connected and another member changes; nothing of the down member leaves
// any view (I1), every view keeps matching the last known state (I3), and
// after it returns every view equals the oracle.
func TestF1MemberDown(t *testing.T) {
	skipShort(t)
	e := New(t, bin, Options{Services: 3, Endpoints: 3, Proxies: size(50, 1000)})
	base := resources(t, e)
	t.Logf("initial sync of %d proxies: %v", len(e.Recorders), e.Connect(60*time.Second))
	outage := size(5*time.Second, 3*time.Minute)
	down := e.Members[0]
	if err := down.Cluster.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	changes := 0
	for time.Since(stopped) < outage {
		churn(t, e, 1)
		changes++
		time.Sleep(size(500*time.Millisecond, 5*time.Second))
	}
	if err := down.Cluster.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	took, err := e.Checker.Converged(t.Context(), e.Checker.Bound)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("F1: %s down %v with %d changes elsewhere; every view equals the oracle %v after it returned", down.Name, outage.Round(time.Second), changes, took)
	// A change in the returned member reaches everyone.
	at := e.Change(down, 1, 4)
	lat, err := e.Latencies(1, at, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("F1: first change in %s after its return: p99 %v", down.Name, p99(lat))
	e.StopChecker()
	e.Report()
	leak(t, e, base)
}
