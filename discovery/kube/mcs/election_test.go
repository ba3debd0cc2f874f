package mcs_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
	"github.com/horizonmesh/horizon/discovery/kube/mcs"
	"github.com/horizonmesh/horizon/internal/testkit"
)

// TestElectionFailuresAreReported: a replica that cannot take its Lease
// never writes, and says so: a warning with the reason (rate-limited),
// horizon_mcs_leader_election_failures_total{reason} and ElectionStatus.
// Two real causes against a real API server: the Lease's namespace does not
// exist, and the user has no rights on Leases (impersonated). Once the
// namespace exists, the replica leads and the failure clears.
func TestElectionFailuresAreReported(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an API server")
	}
	cp := kubetest.Start(t, "central")[0]
	impersonated := rest.CopyConfig(cp.Config)
	impersonated.Impersonate = rest.ImpersonationConfig{UserName: "no-lease-rights"}
	noRights, err := kubernetes.NewForConfig(impersonated)
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, errOf(cp.Kube.CoreV1().Namespaces().Create(t.Context(), namespace("horizon-system"), metav1.CreateOptions{})))

	for _, tc := range []struct {
		name, namespace, reason string
		client                  kubernetes.Interface
	}{
		{"missing namespace", "no-such-namespace", mcs.ElectionNamespaceMissing, cp.Kube},
		{"no lease rights", "horizon-system", mcs.ElectionForbidden, noRights},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := &testkit.Buffer{}
			reg := prometheus.NewRegistry()
			ctrl, err := mcs.New(mcs.Config{
				Members:    func() []mcs.Member { return nil },
				ClusterSet: func() *discovery.ClusterSet { return nil },
				Election: mcs.Election{
					Client: tc.client.CoordinationV1(), Namespace: tc.namespace, Name: "lease-" + strings.ReplaceAll(tc.name, " ", "-"),
					LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 250 * time.Millisecond,
				},
				Logger:  slog.New(slog.NewJSONHandler(logs, nil)),
				Metrics: mcs.NewMetrics(reg),
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- ctrl.Run(ctx) }()
			defer func() { cancel(); <-done }()

			failures := func() float64 {
				return metric(t, reg, "horizon_mcs_leader_election_failures_total", map[string]string{"reason": tc.reason})
			}
			testkit.Eventually(t, 10*time.Second, "failures counted", func() error {
				if n := failures(); n < 3 {
					return fmt.Errorf("%v failures counted", n)
				}
				return nil
			})
			st := ctrl.ElectionStatus()
			if !st.Enabled || st.Leader || st.Reason != tc.reason || st.LastError == "" || st.Since.IsZero() || st.Failures < 3 {
				t.Errorf("ElectionStatus: %+v", st)
			}
			// At least three failures, one warning: rate-limited.
			warnings := strings.Count(logs.String(), `"msg":"leader election cannot take the Lease`)
			if warnings != 1 || !strings.Contains(logs.String(), `"level":"WARN"`) || !strings.Contains(logs.String(), `"reason":"`+tc.reason+`"`) {
				t.Errorf("want one warning with reason %s, got %d:\n%s", tc.reason, warnings, logs)
			}
			if ctrl.IsLeader() {
				t.Error("leads without its Lease")
			}
		})
	}

	t.Run("recovers", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		ctrl, err := mcs.New(mcs.Config{
			Members:    func() []mcs.Member { return nil },
			ClusterSet: func() *discovery.ClusterSet { return nil },
			Election: mcs.Election{
				Client: cp.Kube.CoordinationV1(), Namespace: "late", Name: "lease-late",
				LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 250 * time.Millisecond,
			},
			Metrics: mcs.NewMetrics(reg),
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- ctrl.Run(ctx) }()
		defer func() { cancel(); <-done }()
		testkit.Eventually(t, 10*time.Second, "failure reported", func() error {
			if st := ctrl.ElectionStatus(); st.Reason != mcs.ElectionNamespaceMissing {
				return fmt.Errorf("%+v", st)
			}
			return nil
		})
		mustCreate(t, errOf(cp.Kube.CoreV1().Namespaces().Create(t.Context(), namespace("late"), metav1.CreateOptions{})))
		testkit.Eventually(t, 10*time.Second, "leading, failure cleared", func() error {
			if st := ctrl.ElectionStatus(); !st.Leader || st.Reason != "" || st.LastError != "" || st.Failures == 0 {
				return fmt.Errorf("%+v", st)
			}
			return nil
		})
	})
}
