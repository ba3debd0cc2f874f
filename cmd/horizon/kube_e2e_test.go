package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
	"sigs.k8s.io/yaml"

	"github.com/horizonmesh/horizon/discovery/kube"
	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
	"github.com/horizonmesh/horizon/internal/testkit"
	"github.com/horizonmesh/horizon/internal/testkit/xdstest"
)

// kubeSeed creates a namespace, a Service with ready endpoints backed by
// mutual-TLS pods, and optionally its ServiceExport.
func kubeSeed(t *testing.T, c *kubetest.Cluster, name string, export bool, addrs ...string) {
	t.Helper()
	ctx := t.Context()
	_, _ = c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}, metav1.CreateOptions{})
	if _, err := c.Kube.CoreV1().Services("demo").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "grpc", Port: 7070, AppProtocol: ptr.To("grpc")}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name + "-x", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("grpc"), Port: ptr.To[int32](7070)}},
	}
	for i, a := range addrs {
		pod := fmt.Sprintf("%s-%d", name, i)
		if _, err := c.Kube.CoreV1().Pods("demo").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: pod, Labels: map[string]string{kube.LabelTLSMode: kube.TLSModeMTLS}},
			Spec:       corev1.PodSpec{ServiceAccountName: name, Containers: []corev1.Container{{Name: "app", Image: "app"}}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
			Addresses: []string{a}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "demo", Name: pod},
		})
	}
	if _, err := c.Kube.DiscoveryV1().EndpointSlices("demo").Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if export {
		if _, err := c.MCS.MulticlusterV1beta1().ServiceExports("demo").Create(ctx, &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// kubeGateway creates the network's east-west gateway Service with a load
// balancer address.
func kubeGateway(t *testing.T, c *kubetest.Cluster, network, ip string) {
	t.Helper()
	ctx := t.Context()
	_, _ = c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "horizon-system"}}, metav1.CreateOptions{})
	svc, err := c.Kube.CoreV1().Services("horizon-system").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "eastwest", Labels: map[string]string{kube.LabelGatewayNetwork: network}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer,
			Ports: []corev1.ServicePort{{Name: "tls", Port: 15443}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip}}
	if _, err := c.Kube.CoreV1().Services("horizon-system").UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// edsView asks Horizon, as a sidecar of the given cluster, for one
// assignment and returns address -> weight@priority.
func edsView(t *testing.T, addr, cluster, name string) (map[string]string, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	resp, err := xdstest.Fetch(t, conn, &discoverypb.DiscoveryRequest{
		Node: xdstest.Node("probe-"+cluster, "CLUSTER_ID", cluster, "ROLE", "sidecar"), TypeUrl: resourcev3.EndpointType, ResourceNames: []string{name},
	})
	if err != nil {
		return nil, err
	}
	if len(resp.GetResources()) == 0 {
		return nil, nil // not (yet) a known cluster
	}
	var cla endpoint.ClusterLoadAssignment
	if err := resp.GetResources()[0].UnmarshalTo(&cla); err != nil {
		return nil, err
	}
	return xdstest.Endpoints(&cla), nil
}

// waitEDS waits until a sidecar of the cluster is given exactly want for the
// assignment (address -> weight@priority).
func waitEDS(t *testing.T, h *horizonProcess, cluster, name string, want map[string]string) {
	t.Helper()
	testkit.Eventually(t, 30*time.Second, "view of "+name+" from "+cluster, func() error {
		got, err := edsView(t, h.xdsAddr, cluster, name)
		if err == nil && !maps.Equal(got, want) {
			err = fmt.Errorf("got %v, want %v", got, want)
		}
		return err
	})
}

// TestE2EKubernetesMembers runs `horizon serve` against three real member
// clusters and reads the result as proxies of each network would.
func TestE2EKubernetesMembers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three kube-apiservers")
	}
	cl := kubetest.Start(t, "east", "west", "central")
	east, west, central := cl[0], cl[1], cl[2]
	kubeSeed(t, east, "echo", true, "10.0.1.1", "10.0.1.2")
	kubeSeed(t, west, "echo", true, "10.1.1.1")
	kubeSeed(t, central, "local-only", false, "10.2.1.1")
	kubeGateway(t, east, "net-east", "198.51.100.1")
	kubeGateway(t, west, "net-west", "198.51.100.2")

	var args []string
	for _, c := range cl {
		args = append(args, "--member", fmt.Sprintf("name=%s,network=net-%s,kubeconfig=%s", c.Name, c.Name, adminKubeconfigFile(t, c.Config)))
	}
	bin := buildHorizon(t)
	h := startHorizon(t, bin, args...)

	echoSet := "outbound_.7070_._.echo.demo.svc.clusterset.local"
	localSet := "outbound_.7070_._.local-only.demo.svc.clusterset.local"
	waitView := func(cluster, name string, want map[string]string) { waitEDS(t, h, cluster, name, want) }
	// Each network sees its own pods and the other's gateway, weighted by
	// the ready endpoints behind it.
	waitView("east", echoSet, map[string]string{"10.0.1.1:7070": "1@0", "10.0.1.2:7070": "1@0", "198.51.100.2:15443": "1@0"})
	waitView("west", echoSet, map[string]string{"10.1.1.1:7070": "1@0", "198.51.100.1:15443": "2@0"})
	waitView("central", echoSet, map[string]string{"198.51.100.1:15443": "2@0", "198.51.100.2:15443": "1@0"})
	// An unexported service never leaves its cluster.
	for _, c := range []string{"east", "west", "central"} {
		if got, err := edsView(t, h.xdsAddr, c, localSet); err != nil || got != nil {
			t.Fatalf("%s sees central's unexported service: %v %v", c, got, err)
		}
	}
	// Unexporting removes a cluster from everyone's view.
	if err := west.MCS.MulticlusterV1beta1().ServiceExports("demo").Delete(t.Context(), "echo", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitView("east", echoSet, map[string]string{"10.0.1.1:7070": "1@0", "10.0.1.2:7070": "1@0"})
	resp, err := h.http.Get("http://" + h.httpAddr + "/debug/members")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var members []kube.MemberStatus
	if err := json.NewDecoder(resp.Body).Decode(&members); err != nil {
		t.Fatal(err)
	}
	if len(members) != 3 || slices.ContainsFunc(members, func(m kube.MemberStatus) bool { return m.State != kube.Synced }) {
		t.Fatalf("/debug/members: %+v", members)
	}
}

// addSecret runs `horizon cluster add-secret` for a member, as an operator
// would, and applies the Secret it prints in the control plane's cluster.
func addSecret(t *testing.T, bin, kubeconfig, name string, cp *kubetest.Cluster) {
	t.Helper()
	cmd := exec.Command(bin, "cluster", "add-secret", "--kubeconfig", kubeconfig, "--name", name, "--network", "net-"+name)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("add-secret %s: %v\n%s", name, err, stderr.String())
	}
	var sec corev1.Secret
	if err := yaml.UnmarshalStrict(out, &sec); err != nil {
		t.Fatalf("add-secret %s printed no Secret: %v\n%s", name, err, out)
	}
	secrets := cp.Kube.CoreV1().Secrets(sec.Namespace)
	old, err := secrets.Get(t.Context(), sec.Name, metav1.GetOptions{})
	if err == nil {
		sec.ResourceVersion = old.ResourceVersion
		_, err = secrets.Update(t.Context(), &sec, metav1.UpdateOptions{})
	} else {
		_, err = secrets.Create(t.Context(), &sec, metav1.CreateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestE2EKubernetesMemberSecrets: the whole operator flow. Members come from
// the Secrets `horizon cluster add-secret` prints (least-privilege tokens),
// held in the control plane's cluster; rotating one leaves no gap in any
// view, deleting one removes the cluster.
func TestE2EKubernetesMemberSecrets(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three kube-apiservers")
	}
	cl := kubetest.Start(t, "east", "west", "central")
	east, west, central := cl[0], cl[1], cl[2]
	kubeSeed(t, east, "echo", true, "10.0.1.1", "10.0.1.2")
	kubeSeed(t, west, "echo", true, "10.1.1.1")
	kubeGateway(t, east, "net-east", "198.51.100.1")
	kubeGateway(t, west, "net-west", "198.51.100.2")
	_, _ = central.Kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "horizon-system"}}, metav1.CreateOptions{})

	bin := buildHorizon(t)
	paths := map[string]string{}
	for _, c := range cl {
		paths[c.Name] = adminKubeconfigFile(t, c.Config)
		addSecret(t, bin, paths[c.Name], c.Name, central)
	}
	h := startHorizon(t, bin, "--member-secrets-namespace", "horizon-system", "--kubeconfig", paths["central"],
		"--leader-election-namespace", "horizon-system")

	echoSet := "outbound_.7070_._.echo.demo.svc.clusterset.local"
	withWest := map[string]string{"10.0.1.1:7070": "1@0", "10.0.1.2:7070": "1@0", "198.51.100.2:15443": "1@0"}
	waitEDS(t, h, "east", echoSet, withWest)

	// Rotate west's credentials: east's view never loses west meanwhile.
	addSecret(t, bin, paths["west"], "west", central)
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); {
		got, err := edsView(t, h.xdsAddr, "east", echoSet)
		if err != nil || !maps.Equal(got, withWest) {
			t.Fatalf("during west's rotation east's view is %v (err %v): a gap", got, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The MCS controller (leader on central's Lease) imports echo wherever
	// its namespace exists: east and west, not central, until central
	// gets the namespace.
	waitImport := func(c *kubetest.Cluster) {
		testkit.Eventually(t, 30*time.Second, "ServiceImport demo/echo in "+c.Name, func() error {
			im, err := c.MCS.MulticlusterV1beta1().ServiceImports("demo").Get(t.Context(), "echo", metav1.GetOptions{})
			if err == nil && (len(im.Spec.IPs) != 1 || len(im.Status.Clusters) != 2) {
				err = fmt.Errorf("%+v", im)
			}
			return err
		})
	}
	waitImport(east)
	waitImport(west)
	if _, err := central.MCS.MulticlusterV1beta1().ServiceImports("demo").Get(t.Context(), "echo", metav1.GetOptions{}); err == nil {
		t.Fatal("an import in central, which has no namespace demo")
	}
	if _, err := central.Kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitImport(central)

	// Deleting west's Secret removes west.
	if err := central.Kube.CoreV1().Secrets("horizon-system").Delete(t.Context(), "member-west", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEDS(t, h, "east", echoSet, map[string]string{"10.0.1.1:7070": "1@0", "10.0.1.2:7070": "1@0"})
}
