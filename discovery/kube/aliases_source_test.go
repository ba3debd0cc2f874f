package kube

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
	"github.com/horizonmesh/horizon/internal/testkit"
)

// annotateAliases sets a Service's AnnotationAliases.
func annotateAliases(t *testing.T, c *kubetest.Cluster, ns, name, aliases string) {
	t.Helper()
	svc, err := c.Kube.CoreV1().Services(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Annotations == nil {
		svc.Annotations = map[string]string{}
	}
	svc.Annotations[AnnotationAliases] = aliases
	if _, err := c.Kube.CoreV1().Services(ns).Update(t.Context(), svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestSourceAliasesOnRealClusters: aliases come from the Services'
// annotation on real API servers; when Services of two members claim one
// alias, the service whose key sorts first keeps it, the other's claim is
// dropped and counted, and the ClusterSet (both services, their other
// aliases, their endpoints) is still published.
func TestSourceAliasesOnRealClusters(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two kube-apiservers")
	}
	cl := kubetest.Start(t, "east", "west")
	east, west := cl[0], cl[1]
	seed(t, east, "prod", "users", true, "10.0.1.1")
	seed(t, west, "prod", "accounts", true, "10.1.1.1")
	annotateAliases(t, east, "prod", "users", "users.api.example.com, users.global")
	annotateAliases(t, west, "prod", "accounts", "users.api.example.com, accounts.global")

	rec := &recorder{}
	reg := prometheus.NewRegistry()
	metrics := NewMetrics(reg)
	src := NewSource(SourceOptions{OnUpdate: rec.update, Metrics: metrics})
	for _, m := range []MemberConfig{memberConfig(east, "net-east"), memberConfig(west, "net-west")} {
		if err := src.Set(m); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- src.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})

	accounts := discovery.ServiceKey{Namespace: "prod", Name: "accounts"}
	users := discovery.ServiceKey{Namespace: "prod", Name: "users"}
	testkit.Eventually(t, wait, "both services' aliases published", func() bool {
		cs := rec.latest()
		if cs == nil {
			return false
		}
		_, a := cs.AliasOf("accounts.global")
		_, u := cs.AliasOf("users.global")
		return a && u
	})
	cs := rec.latest()
	if k, _ := cs.AliasOf("users.api.example.com"); k != accounts {
		t.Errorf("users.api.example.com names %v, want %v (its key sorts first)", k, accounts)
	}
	if k, _ := cs.AliasOf("users.global"); k != users {
		t.Errorf("users.global names %v", k)
	}
	if endpointsOf(cs, "east", users) != 1 || endpointsOf(cs, "west", accounts) != 1 {
		t.Errorf("endpoints east %d west %d", endpointsOf(cs, "east", users), endpointsOf(cs, "west", accounts))
	}
	if n := testutil.ToFloat64(metrics.invalid.WithLabelValues("east", "Service", "alias_conflict")); n < 1 {
		t.Errorf("alias conflict counted %v times for east", n)
	}
}
