package chaos

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kwatch "k8s.io/apimachinery/pkg/watch"

	"github.com/horizonmesh/horizon/discovery/kube"
	"github.com/horizonmesh/horizon/internal/testkit"
)

// TestF2Forbidden: Horizon's identity in a member (the ServiceAccount
// `horizon cluster add-secret` made, bound to horizon-reader) loses its
// ClusterRoleBinding, and its connections are reset so that every list and
// watch is asked again and refused with 403. The member's endpoints stay in
// every view (I1); Horizon reports the member stale for reason forbidden in
// /debug/members, logs the refusal naming the member and the resource, and
// counts it; changes in another member keep flowing. When the binding is
// back, the member recovers: a change made in it while it was forbidden
// reaches every view within the bound (I3, 10 s).
func TestF2Forbidden(t *testing.T) {
	skipShort(t)
	e := New(t, bin, Options{Services: 3, Endpoints: 3, Proxies: size(50, 1000), Proxied: true}.WithSecrets())
	e.Connect(60 * time.Second)
	m := e.Members[0]
	restore := e.RevokeAccess(m)
	m.Cut()
	revoked := time.Now()
	testkit.Eventually(t, 30*time.Second, "Horizon reports "+m.Name+" stale, forbidden", func() error {
		ms, err := e.Horizon.Members(t.Context())
		if err != nil {
			return err
		}
		if st := ms[m.Name]; st.State != kube.Stale || st.Reason != kube.ReasonForbidden {
			return fmt.Errorf("/debug/members says %s is %q (reason %q)", m.Name, st.State, st.Reason)
		}
		return nil
	})
	t.Logf("F2/403: %s reported stale (forbidden) %v after its binding was deleted", m.Name, time.Since(revoked).Round(time.Millisecond))
	testkit.Eventually(t, 10*time.Second, "the refusal logged with the member and the resource", func() error {
		for line := range strings.Lines(e.Horizon.Out.String()) {
			if strings.Contains(line, "refuses Horizon") && strings.Contains(line, "cluster="+m.Name) &&
				strings.Contains(line, "endpointslices") && strings.Contains(line, "reason=forbidden") {
				return nil
			}
		}
		return fmt.Errorf("no log line says %s refuses Horizon endpointslices (forbidden)", m.Name)
	})
	n, err := e.Horizon.Metric(t.Context(), "horizon_kube_list_watch_errors_total", `cluster="`+m.Name+`"`, `reason="forbidden"`)
	if err != nil || n == 0 {
		t.Errorf("horizon_kube_list_watch_errors_total{cluster=%q,reason=\"forbidden\"} = %v, %v; want > 0", m.Name, n, err)
	}
	// Changes elsewhere keep flowing while the member is forbidden.
	outage := size(10*time.Second, 2*time.Minute)
	changes := 0
	for time.Since(revoked) < outage {
		churn(t, e, 1)
		changes++
		time.Sleep(size(500*time.Millisecond, 5*time.Second))
	}
	// A change in the forbidden member, then the binding is restored: the
	// checker's I3 clock starts at the change.
	e.Change(m, 1, 2)
	restore()
	restored := time.Now()
	took, err := e.Checker.Converged(t.Context(), e.Checker.Bound)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "Horizon reports "+m.Name+" synced", func() error {
		ms, err := e.Horizon.Members(t.Context())
		if err != nil {
			return err
		}
		if st := ms[m.Name]; st.State != kube.Synced || st.Reason != "" {
			return fmt.Errorf("/debug/members says %s is %q (reason %q)", m.Name, st.State, st.Reason)
		}
		return nil
	})
	t.Logf("F2/403: %s forbidden %v with %d changes elsewhere; the change made in it meanwhile in every view %v after its binding was restored (%v after the restore, member synced)",
		m.Name, restored.Sub(revoked).Round(time.Second), changes, took.Round(time.Millisecond), time.Since(restored).Round(time.Millisecond))
	at := e.Change(m, 2, 4)
	lat, err := e.Latencies(2, at, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("F2/403: first change in %s after the restore: p99 %v", m.Name, p99(lat))
	e.StopChecker()
	e.Report()
}

// TestF2Compacted: a member's watches fall behind an etcd compaction. Its
// apiservers run without their watch cache, so every watch is an etcd
// watch. The path to one member hangs (its watches open, no byte moving)
// while endpoints of it are removed and added; its etcd is compacted past
// them; then its connections are reset and the path heals. Horizon's
// watches resume from their last resource version and are answered 410
// Gone, and its informers relist (horizon_kube_relists_total). I1 holds
// across the relist: no endpoint that still exists leaves any view (client-go
// applies a relist object by object, never as delete-all then add-all), the
// removals made during the gap are applied after it, and every view equals
// the oracle within the bound (I3, 10 s).
func TestF2Compacted(t *testing.T) {
	skipShort(t)
	e := New(t, bin, Options{Services: 3, Endpoints: 3, Proxies: size(50, 1000), Proxied: true, NoWatchCache: true})
	e.Connect(60 * time.Second)
	m := e.Members[0]
	ctx := t.Context()
	relists := func() float64 {
		n, err := e.Horizon.Metric(ctx, "horizon_kube_relists_total", `cluster="`+m.Name+`"`)
		if err != nil && !strings.Contains(err.Error(), "no horizon_kube_relists_total") {
			t.Fatal(err)
		}
		return n
	}
	// Control: a reset alone is no relist; each watch resumes where it was
	// (client-go relists after a watch shorter than a second that saw
	// nothing, so the watches get time to be older than that).
	time.Sleep(2 * time.Second)
	before := relists()
	m.Cut()
	at := e.Change(m, 2, 4)
	if _, err := e.Latencies(2, at, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := relists(); n != before {
		t.Fatalf("horizon_kube_relists_total{cluster=%q} went from %v to %v on a connection reset alone: the test cannot tell a 410 relist", m.Name, before, n)
	}
	// The resource version Horizon's slice watch holds is at most the
	// latest one now (it holds the change above).
	list, err := m.Cluster.Kube.DiscoveryV1().EndpointSlices(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	held := list.ResourceVersion

	m.Hang()
	hung := time.Now()
	e.Change(m, 0, 1) // two endpoints removed (in the ledger)
	e.Change(m, 1, 5) // two added
	rev, err := m.Cluster.CompactEtcd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The apiserver answers a watch from there with 410 Gone.
	w, err := m.Cluster.Kube.DiscoveryV1().EndpointSlices(metav1.NamespaceAll).Watch(ctx, metav1.ListOptions{ResourceVersion: held})
	switch {
	case err != nil && !apierrors.IsGone(err) && !apierrors.IsResourceExpired(err):
		t.Fatalf("watch from %s after compacting at %d: %v; want 410 Gone", held, rev, err)
	case err == nil:
		ev, ok := <-w.ResultChan()
		w.Stop()
		st, isStatus := ev.Object.(*metav1.Status)
		if !ok || ev.Type != kwatch.Error || !isStatus || st.Code != http.StatusGone {
			t.Fatalf("watch from %s after compacting at %d: first event %v %+v; want a 410 Gone error", held, rev, ev.Type, ev.Object)
		}
		t.Logf("F2/410: a watch from resource version %s after compacting at %d: %s", held, rev, st.Message)
	}
	m.Cut()
	m.Unhang()
	healed := time.Now()
	took, err := e.Checker.Converged(ctx, e.Checker.Bound)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "Horizon relisting "+m.Name, func() error {
		if n := relists(); n <= before {
			return fmt.Errorf("horizon_kube_relists_total{cluster=%q} still %v", m.Name, n)
		}
		return nil
	})
	t.Logf("F2/410: %s hung %v while 2 endpoints were removed and 2 added, etcd compacted at %d; %v relists after the heal; every view equals the oracle %v after it",
		m.Name, healed.Sub(hung).Round(time.Millisecond), rev, relists()-before, took.Round(time.Millisecond))
	e.StopChecker()
	e.Report()
}
