package chaos

import (
	"fmt"
	"strings"
	"testing"
	"time"

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
