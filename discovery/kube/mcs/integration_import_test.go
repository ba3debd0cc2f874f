package mcs_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/kube"
	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
	"github.com/horizonmesh/horizon/discovery/kube/mcs"
	"github.com/horizonmesh/horizon/internal/testkit"
)

// TestIntegrationImportSpec runs the Kubernetes source and one controller
// against two real member clusters (east, west): exports whose port sets
// merely differ give the union of the ports and Conflict=True/PortConflict
// on every export; the winning export's exportedLabels and
// exportedAnnotations, internalTrafficPolicy and trafficDistribution reach
// the imports; differing labels are a conflict; and labels Horizon no longer
// exports leave the imports while others' stay.
func TestIntegrationImportSpec(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two API servers")
	}
	leaks := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leaks) })

	clusters := kubetest.Start(t, "east", "west")
	east, west := clusters[0], clusters[1]
	ctx := context.Background()
	for _, c := range clusters {
		mustCreate(t, errOf(c.Kube.CoreV1().Namespaces().Create(ctx, namespace("demo"), metav1.CreateOptions{})))
	}
	mustCreate(t, errOf(east.Kube.CoreV1().Namespaces().Create(ctx, namespace("horizon-system"), metav1.CreateOptions{})))

	var log *slog.Logger
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	var (
		latest atomic.Pointer[discovery.ClusterSet]
		src    *kube.Source
		reg    = prometheus.NewRegistry()
	)
	ctrl, err := mcs.New(mcs.Config{
		Members: func() []mcs.Member {
			var out []mcs.Member
			for _, m := range src.SyncedMembers() {
				out = append(out, m)
			}
			return out
		},
		ClusterSet: latest.Load,
		Election: mcs.Election{
			Client: east.Kube.CoordinationV1(), Namespace: "horizon-system", Identity: "replica-a",
			LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 250 * time.Millisecond,
		},
		// Longer than the test: every change must start a round itself.
		Resync:  time.Hour,
		Logger:  log,
		Metrics: mcs.NewMetrics(reg),
	})
	if err != nil {
		t.Fatal(err)
	}
	// As horizon serve wires it: every change a member reports, in the
	// ClusterSet or not, starts a round.
	src = kube.NewSource(kube.SourceOptions{Logger: log,
		OnUpdate: func(cs *discovery.ClusterSet) { latest.Store(cs) },
		OnChange: ctrl.Notify,
	})
	for _, c := range clusters {
		if err := src.Set(kube.MemberConfig{Name: c.Name, Network: "net-" + c.Name, Rest: c.Config}); err != nil {
			t.Fatal(err)
		}
	}
	srcCtx, stopSource := context.WithCancel(ctx)
	srcDone := make(chan error, 1)
	go func() { srcDone <- src.Run(srcCtx) }()
	ctrlCtx, stopCtrl := context.WithCancel(ctx)
	ctrlDone := make(chan error, 1)
	go func() { ctrlDone <- ctrl.Run(ctrlCtx) }()
	t.Cleanup(func() {
		stopCtrl()
		if err := <-ctrlDone; err != nil {
			t.Errorf("controller: %v", err)
		}
		stopSource()
		<-srcDone
	})

	shop := func(ports ...corev1.ServicePort) *corev1.Service {
		s := svc("shop", ports...)
		s.Labels = map[string]string{"app": "shop"} // never exported
		s.Spec.InternalTrafficPolicy = ptr(corev1.ServiceInternalTrafficPolicyLocal)
		s.Spec.TrafficDistribution = ptr(corev1.ServiceTrafficDistributionPreferClose)
		return s
	}
	shopExport := func(labels map[string]string) *mcsv1beta1.ServiceExport {
		ex := svcExport("shop")
		ex.Spec.ExportedLabels = labels
		ex.Spec.ExportedAnnotations = map[string]string{"example.com/owner": "team-a"}
		return ex
	}
	http := corev1.ServicePort{Name: "http", Port: 80, AppProtocol: ptr("http")}
	metrics := corev1.ServicePort{Name: "metrics", Port: 9090}
	both := []*kubetest.Cluster{east, west}
	// The bound is 20 s with a target of 2 s; leave room for a busy
	// machine.
	const converge = 10 * time.Second

	step(t, "port sets differ", func(t *testing.T) {
		mustCreate(t, errOf(east.Kube.CoreV1().Services("demo").Create(ctx, shop(http), metav1.CreateOptions{})))
		first, err := east.MCS.MulticlusterV1beta1().ServiceExports("demo").Create(ctx, shopExport(map[string]string{"tier": "web"}), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// Creation timestamps have second resolution: make west's younger.
		time.Sleep(time.Until(first.CreationTimestamp.Add(1100 * time.Millisecond)))
		mustCreate(t, errOf(west.Kube.CoreV1().Services("demo").Create(ctx, shop(http, metrics), metav1.CreateOptions{})))
		mustCreate(t, errOf(west.MCS.MulticlusterV1beta1().ServiceExports("demo").Create(ctx, shopExport(map[string]string{"tier": "web"}), metav1.CreateOptions{})))

		testkit.Eventually(t, converge, "the union of the ports, and PortConflict on both exports", func() error {
			for _, c := range both {
				if err := wantConditions(ctx, c, "demo", "shop", "Valid=True/Valid", "Ready=True/Exported", "Conflict=True/PortConflict"); err != nil {
					return err
				}
				if err := checkShop(ctx, c, "http/80/TCP/http,metrics/9090/TCP", map[string]string{"tier": "web"}); err != nil {
					return err
				}
			}
			return nil
		})
	})

	step(t, "labels conflict", func(t *testing.T) {
		// Someone else annotates east's import: Horizon leaves it be.
		update(t, func() error {
			im, err := east.MCS.MulticlusterV1beta1().ServiceImports("demo").Get(ctx, "shop", metav1.GetOptions{})
			if err != nil {
				return err
			}
			im.Annotations["example.com/note"] = "kept"
			_, err = east.MCS.MulticlusterV1beta1().ServiceImports("demo").Update(ctx, im, metav1.UpdateOptions{})
			return err
		})
		updateExport(t, ctx, west, func(ex *mcsv1beta1.ServiceExport) { ex.Spec.ExportedLabels = map[string]string{"tier": "api"} })
		testkit.Eventually(t, converge, "LabelsConflict on both exports; east's labels win", func() error {
			for _, c := range both {
				if err := wantConditions(ctx, c, "demo", "shop", "Conflict=True/PortConflict,LabelsConflict"); err != nil {
					return err
				}
				if err := checkShop(ctx, c, "http/80/TCP/http,metrics/9090/TCP", map[string]string{"tier": "web"}); err != nil {
					return err
				}
			}
			return nil
		})
	})

	step(t, "agreement", func(t *testing.T) {
		update(t, func() error {
			s, err := west.Kube.CoreV1().Services("demo").Get(ctx, "shop", metav1.GetOptions{})
			if err != nil {
				return err
			}
			s.Spec.Ports = s.Spec.Ports[:1] // http only, as east
			_, err = west.Kube.CoreV1().Services("demo").Update(ctx, s, metav1.UpdateOptions{})
			return err
		})
		for _, c := range both {
			updateExport(t, ctx, c, func(ex *mcsv1beta1.ServiceExport) { ex.Spec.ExportedLabels = nil })
		}
		testkit.Eventually(t, converge, "no conflict, no exported labels", func() error {
			for _, c := range both {
				if err := wantConditions(ctx, c, "demo", "shop", "Conflict=False/NoConflicts"); err != nil {
					return err
				}
				if err := checkShop(ctx, c, "http/80/TCP/http", nil); err != nil {
					return err
				}
			}
			return nil
		})
		im, err := east.MCS.MulticlusterV1beta1().ServiceImports("demo").Get(ctx, "shop", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if im.Annotations["example.com/note"] != "kept" {
			t.Errorf("someone else's annotation is gone: %v", im.Annotations)
		}
	})

	step(t, "no writes when nothing changes", func(t *testing.T) {
		// Once settled (two rounds in a row without a write: a status may
		// trail its import), rounds write nothing: the metadata Horizon
		// wants compares equal to what the API server returned. A
		// controller that writes every round never settles.
		var writes, rounds float64
		testkit.Eventually(t, converge, "two quiet rounds", func() error {
			ctrl.Notify()
			w := metric(t, reg, "horizon_mcs_writes_total", nil)
			r := metric(t, reg, "horizon_mcs_rounds_total", nil)
			if r >= rounds+2 && w == writes {
				return nil
			}
			if w != writes {
				writes, rounds = w, r
			}
			time.Sleep(50 * time.Millisecond)
			return errors.New("waiting")
		})
		writes = metric(t, reg, "horizon_mcs_writes_total", nil)
		rounds = metric(t, reg, "horizon_mcs_rounds_total", nil)
		testkit.Eventually(t, converge, "three more rounds", func() error {
			ctrl.Notify()
			if metric(t, reg, "horizon_mcs_rounds_total", nil) < rounds+3 {
				time.Sleep(50 * time.Millisecond)
				return errors.New("waiting")
			}
			return nil
		})
		if got := metric(t, reg, "horizon_mcs_writes_total", nil); got != writes {
			t.Errorf("%v writes in rounds with nothing to do", got-writes)
		}
	})
}

// checkShop checks demo/shop's import in one cluster: its ports, exactly
// the exported labels (and Horizon's), the exported annotation, and the
// Service fields the import carries.
func checkShop(ctx context.Context, c *kubetest.Cluster, ports string, labels map[string]string) error {
	im, err := c.MCS.MulticlusterV1beta1().ServiceImports("demo").Get(ctx, "shop", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("%s: %w", c.Name, err)
	}
	if err := checkImport(im, mcsv1beta1.ClusterSetIP, ports, "east", "west"); err != nil {
		return fmt.Errorf("%s: %w", c.Name, err)
	}
	want := map[string]string{mcs.LabelManagedBy: mcs.ManagedByHorizon}
	maps.Copy(want, labels)
	if !maps.Equal(im.Labels, want) {
		return fmt.Errorf("%s: labels %v, want %v", c.Name, im.Labels, want)
	}
	if im.Annotations["example.com/owner"] != "team-a" {
		return fmt.Errorf("%s: annotations %v lack the exported one", c.Name, im.Annotations)
	}
	s := im.Spec
	switch {
	case s.InternalTrafficPolicy == nil || *s.InternalTrafficPolicy != corev1.ServiceInternalTrafficPolicyLocal:
		return fmt.Errorf("%s: internalTrafficPolicy %v", c.Name, s.InternalTrafficPolicy)
	case s.TrafficDistribution == nil || *s.TrafficDistribution != corev1.ServiceTrafficDistributionPreferClose:
		return fmt.Errorf("%s: trafficDistribution %v", c.Name, s.TrafficDistribution)
	case !slices.Equal(s.IPFamilies, []corev1.IPFamily{corev1.IPv4Protocol}):
		return fmt.Errorf("%s: ipFamilies %v", c.Name, s.IPFamilies)
	}
	return nil
}

func update(t *testing.T, f func() error) {
	t.Helper()
	if err := retry.RetryOnConflict(retry.DefaultRetry, f); err != nil {
		t.Fatal(err)
	}
}

func updateExport(t *testing.T, ctx context.Context, c *kubetest.Cluster, f func(*mcsv1beta1.ServiceExport)) {
	t.Helper()
	update(t, func() error {
		ex, err := c.MCS.MulticlusterV1beta1().ServiceExports("demo").Get(ctx, "shop", metav1.GetOptions{})
		if err != nil {
			return err
		}
		f(ex)
		_, err = c.MCS.MulticlusterV1beta1().ServiceExports("demo").Update(ctx, ex, metav1.UpdateOptions{})
		return err
	})
}
