package mcs_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/kube"
	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
	"github.com/horizonmesh/horizon/discovery/kube/mcs"
	"github.com/horizonmesh/horizon/internal/testkit"
)

// replica is one Horizon replica's MCS controller.
type replica struct {
	ctrl   *mcs.Controller
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

func (r *replica) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("controller: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Error("controller did not stop")
	}
}

// TestIntegration runs the Kubernetes source and two controller replicas
// against three real member clusters (east, west, central), the Lease in
// central: conflicts, imports everywhere, invalid exports, a v1alpha1 export,
// and the hand-over between replicas.
func TestIntegration(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three API servers")
	}
	// Registered first, so it runs last: after the clusters have stopped and
	// their connections closed.
	leaks := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leaks) })

	begin := time.Now()
	clusters := kubetest.Start(t, "east", "west", "central")
	t.Logf("clusters started in %v", time.Since(begin).Round(time.Millisecond))
	east, west, central := clusters[0], clusters[1], clusters[2]
	ctx := context.Background()

	for _, c := range clusters {
		mustCreate(t, errOf(c.Kube.CoreV1().Namespaces().Create(ctx, namespace("demo"), metav1.CreateOptions{})))
	}
	mustCreate(t, errOf(central.Kube.CoreV1().Namespaces().Create(ctx, namespace("horizon-system"), metav1.CreateOptions{})))

	var log *slog.Logger
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	var latest atomic.Pointer[discovery.ClusterSet]
	var replicas []*replica
	src := kube.NewSource(kube.SourceOptions{Logger: log, OnUpdate: func(cs *discovery.ClusterSet) {
		latest.Store(cs)
		for _, r := range replicas {
			r.ctrl.Notify()
		}
	}})
	for _, c := range clusters {
		if err := src.Set(kube.MemberConfig{Name: c.Name, Network: "net-" + c.Name, Rest: c.Config}); err != nil {
			t.Fatal(err)
		}
	}
	members := func() []mcs.Member {
		var out []mcs.Member
		for _, m := range src.SyncedMembers() {
			out = append(out, m)
		}
		return out
	}
	for _, id := range []string{"replica-a", "replica-b"} {
		r := &replica{reg: prometheus.NewRegistry(), done: make(chan error, 1)}
		var err error
		r.ctrl, err = mcs.New(mcs.Config{
			Members:    members,
			ClusterSet: latest.Load,
			Election: mcs.Election{
				Client: central.Kube.CoordinationV1(), Namespace: "horizon-system", Identity: id,
				LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 250 * time.Millisecond,
			},
			// Namespaces, Services and exports of missing Services do not
			// change the ClusterSet, so only the resync notices them.
			Resync:  time.Second,
			Logger:  log,
			Metrics: mcs.NewMetrics(r.reg),
		})
		if err != nil {
			t.Fatal(err)
		}
		replicas = append(replicas, r)
	}

	srcCtx, stopSource := context.WithCancel(ctx)
	srcDone := make(chan error, 1)
	go func() { srcDone <- src.Run(srcCtx) }()
	for _, r := range replicas {
		rctx, cancel := context.WithCancel(ctx)
		r.cancel = cancel
		go func() { r.done <- r.ctrl.Run(rctx) }()
	}
	t.Cleanup(func() { // runs before the clusters stop
		for _, r := range replicas {
			r.stop(t)
		}
		stopSource()
		<-srcDone
	})

	var leader, follower *replica
	step(t, "one leader", func(t *testing.T) {
		testkit.Eventually(t, 20*time.Second, "a leader", func() error {
			leader, follower = nil, nil
			for _, r := range replicas {
				if r.ctrl.IsLeader() {
					if leader != nil {
						return errors.New("two leaders")
					}
					leader = r
				} else {
					follower = r
				}
			}
			if leader == nil {
				return errors.New("no leader")
			}
			return nil
		})
		for range 8 {
			if follower.ctrl.IsLeader() || !leader.ctrl.IsLeader() {
				t.Fatal("leadership moved while both replicas run")
			}
			time.Sleep(125 * time.Millisecond)
		}
		if metric(t, leader.reg, "horizon_mcs_leader", nil) != 1 || metric(t, follower.reg, "horizon_mcs_leader", nil) != 0 {
			t.Error("horizon_mcs_leader does not say who leads")
		}
		t.Logf("leader: %s", leader.ctrl.Identity())
	})

	step(t, "port conflict", func(t *testing.T) {
		mustCreate(t, errOf(east.Kube.CoreV1().Services("demo").Create(ctx, svc("echo", corev1.ServicePort{Name: "http", Port: 80, AppProtocol: ptr("http")}), metav1.CreateOptions{})))
		first, err := east.MCS.MulticlusterV1beta1().ServiceExports("demo").Create(ctx, svcExport("echo"), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// Creation timestamps have second resolution: make west's younger.
		time.Sleep(time.Until(first.CreationTimestamp.Add(1100 * time.Millisecond)))
		mustCreate(t, errOf(west.Kube.CoreV1().Services("demo").Create(ctx, svc("echo", corev1.ServicePort{Name: "grpc", Port: 80, AppProtocol: ptr("grpc")}), metav1.CreateOptions{})))
		mustCreate(t, errOf(west.MCS.MulticlusterV1beta1().ServiceExports("demo").Create(ctx, svcExport("echo"), metav1.CreateOptions{})))

		testkit.Eventually(t, 20*time.Second, "conflict on both exports", func() error {
			for _, c := range []*kubetest.Cluster{east, west} {
				if err := wantConditions(ctx, c, "demo", "echo", "Valid=True/Valid", "Ready=True/Exported", "Conflict=True/PortConflict"); err != nil {
					return err
				}
			}
			return nil
		})
		for _, c := range []*kubetest.Cluster{east, west} {
			ex, _ := c.MCS.MulticlusterV1beta1().ServiceExports("demo").Get(ctx, "echo", metav1.GetOptions{})
			for _, cond := range ex.Status.Conditions {
				if cond.Type == "Conflict" && !(strings.Contains(cond.Message, "east") && strings.Contains(cond.Message, "west")) {
					t.Errorf("%s: Conflict message %q does not name both clusters", c.Name, cond.Message)
				}
			}
		}
		var ip string
		testkit.Eventually(t, 20*time.Second, "imports in every cluster", func() error {
			ip = ""
			for _, c := range clusters {
				im, err := c.MCS.MulticlusterV1beta1().ServiceImports("demo").Get(ctx, "echo", metav1.GetOptions{})
				if err != nil {
					return fmt.Errorf("%s: %w", c.Name, err)
				}
				if err := checkImport(im, mcsv1beta1.ClusterSetIP, "http/80/TCP/http", "east", "west"); err != nil {
					return fmt.Errorf("%s: %w", c.Name, err)
				}
				if ip == "" {
					ip = im.Spec.IPs[0]
				} else if im.Spec.IPs[0] != ip {
					return fmt.Errorf("%s: IP %s, elsewhere %s", c.Name, im.Spec.IPs[0], ip)
				}
			}
			return nil
		})
		if a, err := netip.ParseAddr(ip); err != nil || !netip.MustParsePrefix(mcs.DefaultCIDR).Contains(a) {
			t.Errorf("ClusterSet IP %q is not in %s", ip, mcs.DefaultCIDR)
		}
		t.Logf("ClusterSet IP of demo/echo: %s", ip)
	})

	step(t, "conflict clears", func(t *testing.T) {
		if err := west.MCS.MulticlusterV1beta1().ServiceExports("demo").Delete(ctx, "echo", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, 20*time.Second, "east alone, without conflict", func() error {
			if err := wantConditions(ctx, east, "demo", "echo", "Valid=True/Valid", "Ready=True/Exported", "Conflict=False/NoConflicts"); err != nil {
				return err
			}
			for _, c := range clusters {
				im, err := c.MCS.MulticlusterV1beta1().ServiceImports("demo").Get(ctx, "echo", metav1.GetOptions{})
				if err != nil {
					return fmt.Errorf("%s: %w", c.Name, err)
				}
				if err := checkImport(im, mcsv1beta1.ClusterSetIP, "http/80/TCP/http", "east"); err != nil {
					return fmt.Errorf("%s: %w", c.Name, err)
				}
			}
			return nil
		})
	})

	step(t, "invalid exports", func(t *testing.T) {
		ext := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "ext"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com"}}
		mustCreate(t, errOf(west.Kube.CoreV1().Services("demo").Create(ctx, ext, metav1.CreateOptions{})))
		mustCreate(t, errOf(west.MCS.MulticlusterV1beta1().ServiceExports("demo").Create(ctx, svcExport("ext"), metav1.CreateOptions{})))
		mustCreate(t, errOf(central.MCS.MulticlusterV1beta1().ServiceExports("demo").Create(ctx, svcExport("ghost"), metav1.CreateOptions{})))
		testkit.Eventually(t, 20*time.Second, "Valid=False", func() error {
			return errors.Join(
				wantConditions(ctx, west, "demo", "ext", "Valid=False/InvalidServiceType", "Ready=False/Failed"),
				wantConditions(ctx, central, "demo", "ghost", "Valid=False/NoService", "Ready=False/Failed"),
			)
		})
		for _, c := range clusters {
			for _, name := range []string{"ext", "ghost"} {
				if _, err := c.MCS.MulticlusterV1beta1().ServiceImports("demo").Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
					t.Errorf("%s: import of invalid export %s: %v", c.Name, name, err)
				}
			}
		}
	})

	step(t, "v1alpha1 export", func(t *testing.T) {
		mustCreate(t, errOf(central.Kube.CoreV1().Services("demo").Create(ctx, svc("legacy", corev1.ServicePort{Name: "tcp", Port: 9000}), metav1.CreateOptions{})))
		mustCreate(t, errOf(central.MCS.MulticlusterV1alpha1().ServiceExports("demo").Create(ctx, &mcsv1alpha1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Name: "legacy"}}, metav1.CreateOptions{})))
		testkit.Eventually(t, 20*time.Second, "imports of a v1alpha1 export", func() error {
			for _, c := range clusters {
				im, err := c.MCS.MulticlusterV1beta1().ServiceImports("demo").Get(ctx, "legacy", metav1.GetOptions{})
				if err != nil {
					return fmt.Errorf("%s: %w", c.Name, err)
				}
				if err := checkImport(im, mcsv1beta1.ClusterSetIP, "tcp/9000/TCP", "central"); err != nil {
					return fmt.Errorf("%s: %w", c.Name, err)
				}
			}
			ex, err := central.MCS.MulticlusterV1alpha1().ServiceExports("demo").Get(ctx, "legacy", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if got := conditionString(ex.Status.Conditions); !strings.Contains(got, "Valid=True/Valid") {
				return fmt.Errorf("v1alpha1 view: %s", got)
			}
			return nil
		})
	})

	step(t, "namespace created later", func(t *testing.T) {
		mustCreate(t, errOf(east.Kube.CoreV1().Namespaces().Create(ctx, namespace("late"), metav1.CreateOptions{})))
		late := svc("db", corev1.ServicePort{Name: "tcp-pg", Port: 5432})
		late.Namespace, late.Spec.ClusterIP = "late", corev1.ClusterIPNone
		mustCreate(t, errOf(east.Kube.CoreV1().Services("late").Create(ctx, late, metav1.CreateOptions{})))
		mustCreate(t, errOf(east.MCS.MulticlusterV1beta1().ServiceExports("late").Create(ctx, svcExport("db"), metav1.CreateOptions{})))
		testkit.Eventually(t, 20*time.Second, "headless import in east", func() error {
			im, err := east.MCS.MulticlusterV1beta1().ServiceImports("late").Get(ctx, "db", metav1.GetOptions{})
			if err != nil {
				return err
			}
			return checkImport(im, mcsv1beta1.Headless, "tcp-pg/5432/TCP", "east")
		})
		mustCreate(t, errOf(central.Kube.CoreV1().Namespaces().Create(ctx, namespace("late"), metav1.CreateOptions{})))
		testkit.Eventually(t, 20*time.Second, "import in central's new namespace", func() error {
			_, err := central.MCS.MulticlusterV1beta1().ServiceImports("late").Get(ctx, "db", metav1.GetOptions{})
			return err
		})
		if _, err := west.MCS.MulticlusterV1beta1().ServiceImports("late").Get(ctx, "db", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("west has no namespace late, yet: %v", err)
		}
	})

	step(t, "no writes when nothing changes", func(t *testing.T) {
		// The steps before may still be settling (a condition written a
		// round after an import): start counting once two rounds in a row
		// wrote nothing. A controller that writes every round never gets
		// there.
		var writes, rounds float64
		testkit.Eventually(t, 20*time.Second, "two quiet rounds", func() error {
			w := metric(t, leader.reg, "horizon_mcs_writes_total", nil)
			r := metric(t, leader.reg, "horizon_mcs_rounds_total", nil)
			if r >= rounds+2 && w == writes {
				return nil
			}
			if w != writes {
				writes, rounds = w, r
			}
			return errors.New("waiting")
		})
		writes = metric(t, leader.reg, "horizon_mcs_writes_total", nil)
		rounds = metric(t, leader.reg, "horizon_mcs_rounds_total", nil)
		testkit.Eventually(t, 20*time.Second, "three more rounds", func() error {
			if metric(t, leader.reg, "horizon_mcs_rounds_total", nil) < rounds+3 {
				return errors.New("waiting")
			}
			return nil
		})
		if got := metric(t, leader.reg, "horizon_mcs_writes_total", nil); got != writes {
			t.Errorf("%v writes in rounds with nothing to do", got-writes)
		}
		if n := metric(t, follower.reg, "horizon_mcs_writes_total", nil); n != 0 {
			t.Errorf("the follower wrote %v times", n)
		}
		if n := metric(t, leader.reg, "horizon_mcs_writes_total", map[string]string{"result": "error"}); n != 0 {
			t.Errorf("%v failed writes", n)
		}
	})

	step(t, "takeover", func(t *testing.T) {
		begin := time.Now()
		leader.stop(t)
		if leader.ctrl.IsLeader() || metric(t, leader.reg, "horizon_mcs_leader", nil) != 0 {
			t.Fatal("the stopped replica still leads")
		}
		testkit.Eventually(t, 20*time.Second, "the other replica leads", func() error {
			if !follower.ctrl.IsLeader() {
				return errors.New("not yet")
			}
			return nil
		})
		t.Logf("took over in %v", time.Since(begin).Round(time.Millisecond))
		// Writes continue: the last export of demo/echo goes, and so do its
		// imports, everywhere.
		if err := east.MCS.MulticlusterV1beta1().ServiceExports("demo").Delete(ctx, "echo", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		begin = time.Now()
		testkit.Eventually(t, 20*time.Second, "imports deleted", func() error {
			for _, c := range clusters {
				if _, err := c.MCS.MulticlusterV1beta1().ServiceImports("demo").Get(ctx, "echo", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
					return fmt.Errorf("%s: %v", c.Name, err)
				}
			}
			return nil
		})
		t.Logf("imports gone %v after the last export", time.Since(begin).Round(time.Millisecond))
		// The controller counts a delete after the API server answered it,
		// so the last import can be gone a moment before it is counted.
		deleted := map[string]string{"kind": "ServiceImport", "result": "deleted"}
		testkit.Eventually(t, 5*time.Second, "the new leader's three deletes counted", func() error {
			if n := metric(t, follower.reg, "horizon_mcs_writes_total", deleted); n < 3 {
				return fmt.Errorf("%v counted", n)
			}
			return nil
		})
		if n := metric(t, follower.reg, "horizon_mcs_writes_total", deleted); n != 3 {
			t.Errorf("new leader deleted %v imports, want 3", n)
		}
		// Imports of other services are untouched.
		if _, err := west.MCS.MulticlusterV1beta1().ServiceImports("demo").Get(ctx, "legacy", metav1.GetOptions{}); err != nil {
			t.Errorf("legacy import: %v", err)
		}
	})
}

// step runs a subtest and stops the test when it fails: later steps build on
// earlier ones.
func step(t *testing.T, name string, f func(t *testing.T)) {
	t.Helper()
	begin := time.Now()
	if !t.Run(name, f) {
		t.FailNow()
	}
	t.Logf("%s: %v", name, time.Since(begin).Round(time.Millisecond))
}

func mustCreate(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// errOf drops an API call's object and keeps its error.
func errOf[T any](_ T, err error) error { return err }

func namespace(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

func svc(name string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.ServiceSpec{Ports: ports}}
}

func svcExport(name string) *mcsv1beta1.ServiceExport {
	return &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

func ptr[T any](v T) *T { return &v }

func conditionString(conds []metav1.Condition) string {
	var parts []string
	for _, c := range conds {
		parts = append(parts, c.Type+"="+string(c.Status)+"/"+c.Reason)
	}
	return strings.Join(parts, " ")
}

func wantConditions(ctx context.Context, c *kubetest.Cluster, ns, name string, want ...string) error {
	ex, err := c.MCS.MulticlusterV1beta1().ServiceExports(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("%s: %w", c.Name, err)
	}
	got := conditionString(ex.Status.Conditions)
	for _, w := range want {
		if !slices.Contains(strings.Fields(got), w) {
			return fmt.Errorf("%s %s/%s: conditions %q lack %s", c.Name, ns, name, got, w)
		}
	}
	return nil
}

// checkImport checks an import's type, ports (name/port/protocol[/app]),
// exporting clusters, IPs and label.
func checkImport(im *mcsv1beta1.ServiceImport, typ mcsv1beta1.ServiceImportType, ports string, clusters ...string) error {
	if im.Labels[mcs.LabelManagedBy] != mcs.ManagedByHorizon {
		return errors.New("not labelled as Horizon's")
	}
	if im.Spec.Type != typ {
		return fmt.Errorf("type %s", im.Spec.Type)
	}
	var ps []string
	for _, p := range im.Spec.Ports {
		s := fmt.Sprintf("%s/%d/%s", p.Name, p.Port, p.Protocol)
		if p.AppProtocol != nil {
			s += "/" + *p.AppProtocol
		}
		ps = append(ps, s)
	}
	if got := strings.Join(ps, ","); got != ports {
		return fmt.Errorf("ports %s, want %s", got, ports)
	}
	var cs []string
	for _, c := range im.Status.Clusters {
		cs = append(cs, c.Cluster)
	}
	if !slices.Equal(cs, clusters) {
		return fmt.Errorf("status.clusters %v, want %v", cs, clusters)
	}
	switch {
	case typ == mcsv1beta1.ClusterSetIP && len(im.Spec.IPs) != 1:
		return fmt.Errorf("IPs %v, want one", im.Spec.IPs)
	case typ == mcsv1beta1.Headless && len(im.Spec.IPs) != 0:
		return fmt.Errorf("headless import with IPs %v", im.Spec.IPs)
	}
	return nil
}
