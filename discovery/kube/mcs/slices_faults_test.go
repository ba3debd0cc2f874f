package mcs_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/horizonmesh/horizon/discovery/kube"
	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
	"github.com/horizonmesh/horizon/internal/testkit"
)

// restrictedUser is the user Horizon acts as in west: it may read
// everything and write MCS objects, but not EndpointSlices, until the test
// grants it.
const restrictedUser = "horizon-restricted"

// TestSlicesBadInputAndFaults runs the Kubernetes source and one controller
// against three real member clusters on one network. east exports two
// services; central and west import them.
//
//   - Bad input: demo/odd's source slices hold a duplicate endpoint across
//     two slices (not ready in one, ready in the other), an FQDN slice and a
//     slice without the kubernetes.io/service-name label (a bad IP is
//     refused by the API server itself). Every importer's
//     MCS slice holds exactly the valid endpoints, each once.
//   - demo/big has 1,000 endpoints in one source slice: 10 MCS slices of 100
//     in every importer, every endpoint once.
//   - west's API server refuses Horizon's EndpointSlice writes (RBAC 403:
//     Horizon's credentials there impersonate a user without the
//     permission): each failure is logged with cluster, namespace and name
//     and counted in horizon_mcs_endpointslice_writes_total{result="failed"},
//     retried on later rounds, and central and east converge regardless.
//     Once the permission is granted, west converges too.
//   - east's API server stops: the slices of east's endpoints stay in
//     central and west (stale, not gone) while east is stale.
func TestSlicesBadInputAndFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three API servers")
	}
	clusters := kubetest.Start(t, "east", "central", "west")
	east, central, west := clusters[0], clusters[1], clusters[2]
	ctx := context.Background()
	for _, c := range clusters {
		mustCreate(t, errOf(c.Kube.CoreV1().Namespaces().Create(ctx, namespace("demo"), metav1.CreateOptions{})))
	}
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: restrictedUser},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"multicluster.x-k8s.io"}, Resources: []string{"*"}, Verbs: []string{"*"}},
		},
	}
	mustCreate(t, errOf(west.Kube.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{})))
	mustCreate(t, errOf(west.Kube.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: restrictedUser},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: restrictedUser},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: restrictedUser}},
	}, metav1.CreateOptions{})))

	// Source objects in east, before Horizon starts.
	port := []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080)), Protocol: ptr(corev1.ProtocolTCP)}}
	owned := map[string]string{discoveryv1.LabelServiceName: "odd"}
	big := make([]discoveryv1.Endpoint, 1000)
	for i := range big {
		big[i] = discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.3.%d.%d", i/250, i%250+1)}}
	}
	for _, es := range []*discoveryv1.EndpointSlice{
		{
			ObjectMeta: metav1.ObjectMeta{Name: "odd-a", Labels: owned}, AddressType: discoveryv1.AddressTypeIPv4, Ports: port,
			Endpoints: []discoveryv1.Endpoint{
				{Addresses: []string{"10.1.0.1"}},
				{Addresses: []string{"10.1.0.2"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(false)}},
			},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Name: "odd-b", Labels: owned}, AddressType: discoveryv1.AddressTypeIPv4, Ports: port,
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.1.0.2"}}, {Addresses: []string{"10.1.0.3"}}},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Name: "odd-fqdn", Labels: owned}, AddressType: discoveryv1.AddressTypeFQDN, Ports: port,
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"odd.example.com"}}},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Name: "odd-unlabelled"}, AddressType: discoveryv1.AddressTypeIPv4, Ports: port,
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.1.0.9"}}},
		},
		{
			ObjectMeta:  metav1.ObjectMeta{Name: "big-abcde", Labels: map[string]string{discoveryv1.LabelServiceName: "big"}},
			AddressType: discoveryv1.AddressTypeIPv4, Ports: port, Endpoints: big,
		},
	} {
		mustCreate(t, errOf(east.Kube.DiscoveryV1().EndpointSlices("demo").Create(ctx, es, metav1.CreateOptions{})))
	}
	// A bad IP never gets this far: the API server refuses it (the source
	// and DesiredSlices still skip one; TestDesiredSlicesSkipsBadAddresses).
	for _, addr := range []string{"10.1.0.010", "127.0.0.1", "169.254.0.1", "0.0.0.0"} {
		bad := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Name: "odd-bad", Labels: owned}, AddressType: discoveryv1.AddressTypeIPv4, Ports: port,
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{addr}}},
		}
		if _, err := east.Kube.DiscoveryV1().EndpointSlices("demo").Create(ctx, bad, metav1.CreateOptions{}); !apierrors.IsInvalid(err) {
			t.Fatalf("a slice with address %s: %v, want Invalid", addr, err)
		}
	}
	for _, addr := range []string{"fe80::1", "::1", "::ffff:10.1.0.1"} {
		bad := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Name: "odd-bad", Labels: owned}, AddressType: discoveryv1.AddressTypeIPv6, Ports: port,
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{addr}}},
		}
		if _, err := east.Kube.DiscoveryV1().EndpointSlices("demo").Create(ctx, bad, metav1.CreateOptions{}); !apierrors.IsInvalid(err) {
			t.Fatalf("a slice with address %s: %v, want Invalid", addr, err)
		}
	}
	for _, name := range []string{"odd", "big"} {
		mustCreate(t, errOf(east.Kube.CoreV1().Services("demo").Create(ctx, svc(name, corev1.ServicePort{Name: "http", Port: 80}), metav1.CreateOptions{})))
		mustCreate(t, errOf(east.MCS.MulticlusterV1beta1().ServiceExports("demo").Create(ctx, svcExport(name), metav1.CreateOptions{})))
	}

	logs := &testkit.Buffer{}
	h := runHorizon(t, clusters, map[string]string{"east": "net-a", "central": "net-a", "west": "net-a"}, horizonOptions{
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Rest: func(c *kubetest.Cluster) *rest.Config {
			if c != west {
				return c.Config
			}
			cfg := rest.CopyConfig(c.Config)
			cfg.Impersonate = rest.ImpersonationConfig{UserName: restrictedUser}
			return cfg
		},
	})

	wantOdd := []string{"odd-east-ipv4-0: 10.1.0.1(ready),10.1.0.2(ready),10.1.0.3(ready)"}
	converged := func(c *kubetest.Cluster) error {
		got, err := horizonSlices(ctx, c, "odd")
		if err != nil {
			return err
		}
		if !slices.Equal(got, wantOdd) {
			return fmt.Errorf("%s: odd: %q, want %q", c.Name, got, wantOdd)
		}
		return checkBig(ctx, c)
	}

	step(t, "valid endpoints only, 1000 in 10 slices; west refuses", func(t *testing.T) {
		testkit.Eventually(t, 20*time.Second, "east and central converged", func() error {
			for _, c := range []*kubetest.Cluster{east, central} {
				if err := converged(c); err != nil {
					return err
				}
			}
			return nil
		})
		failed := func() float64 {
			return metric(t, h.reg, "horizon_mcs_endpointslice_writes_total", map[string]string{"cluster": "west", "result": "failed"})
		}
		testkit.Eventually(t, 10*time.Second, "west's failures counted", func() error {
			if n := failed(); n == 0 {
				return fmt.Errorf("no failed write counted for west")
			}
			return nil
		})
		first := failed()
		testkit.Eventually(t, 10*time.Second, "west's writes retried", func() error {
			if n := failed(); n <= first {
				return fmt.Errorf("%v failed writes for west, no more than %v: not retried", n, first)
			}
			return nil
		})
		got, err := horizonSlices(ctx, west, "odd")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 0 {
			t.Errorf("west holds slices it refused: %q", got)
		}
		if n := metric(t, h.reg, "horizon_mcs_endpointslice_writes_total", map[string]string{"cluster": "central", "result": "failed"}); n != 0 {
			t.Errorf("%v failed writes counted for central", n)
		}
		var line string
		for l := range strings.SplitSeq(logs.String(), "\n") {
			if strings.Contains(l, "cluster=west") && strings.Contains(l, "name=odd-east-ipv4-0") {
				line = l
				break
			}
		}
		for _, want := range []string{"level=WARN", "namespace=demo", "kind=EndpointSlice", "forbidden", restrictedUser} {
			if !strings.Contains(line, want) {
				t.Errorf("west's failure logged as %q: no %q", line, want)
			}
		}
	})

	step(t, "west converges once allowed", func(t *testing.T) {
		r, err := west.Kube.RbacV1().ClusterRoles().Get(ctx, restrictedUser, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		r.Rules = append(r.Rules, rbacv1.PolicyRule{APIGroups: []string{discoveryv1.GroupName}, Resources: []string{"endpointslices"}, Verbs: []string{"*"}})
		if _, err := west.Kube.RbacV1().ClusterRoles().Update(ctx, r, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, 20*time.Second, "west converged", func() error { return converged(west) })
	})

	step(t, "a stale source keeps its slices everywhere", func(t *testing.T) {
		before := map[string][]string{}
		for _, c := range []*kubetest.Cluster{central, west} {
			got, err := horizonSlices(ctx, c, "odd")
			if err != nil {
				t.Fatal(err)
			}
			before[c.Name] = got
		}
		if err := east.StopAPIServer(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := east.StartAPIServer(); err != nil {
				t.Error(err)
			}
		})
		testkit.Eventually(t, 20*time.Second, "east stale", func() error {
			for _, m := range h.src.SyncedMembers() {
				if m.ID() == "east" && m.State() == kube.Stale {
					return nil
				}
			}
			return fmt.Errorf("east is not stale")
		})
		// Rounds run every second: give them a few.
		time.Sleep(3 * time.Second)
		for _, c := range []*kubetest.Cluster{central, west} {
			got, err := horizonSlices(ctx, c, "odd")
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, before[c.Name]) {
				t.Errorf("%s: odd's slices %q while east is stale, before %q", c.Name, got, before[c.Name])
			}
			if err := checkBig(ctx, c); err != nil {
				t.Errorf("while east is stale: %v", err)
			}
		}
	})
}

// checkBig checks that a member holds demo/big's 1,000 endpoints once each,
// in 10 MCS slices of 100.
func checkBig(ctx context.Context, c *kubetest.Cluster) error {
	list, err := c.Kube.DiscoveryV1().EndpointSlices("demo").List(ctx, metav1.ListOptions{
		LabelSelector: "multicluster.kubernetes.io/service-name=big," + discoveryv1.LabelManagedBy + "=mcs-controller.horizon.io",
	})
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, es := range list.Items {
		if n := len(es.Endpoints); n != 100 {
			return fmt.Errorf("%s: big: slice %s holds %d endpoints, want 100", c.Name, es.Name, n)
		}
		for _, e := range es.Endpoints {
			if seen[e.Addresses[0]] {
				return fmt.Errorf("%s: big: %s listed twice", c.Name, e.Addresses[0])
			}
			seen[e.Addresses[0]] = true
		}
	}
	if len(list.Items) != 10 || len(seen) != 1000 {
		return fmt.Errorf("%s: big: %d slices with %d endpoints, want 10 with 1000", c.Name, len(list.Items), len(seen))
	}
	return nil
}
