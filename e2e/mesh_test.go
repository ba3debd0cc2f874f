package e2e

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
	"github.com/horizonmesh/horizon/internal/nodetest"
	"github.com/horizonmesh/horizon/internal/testkit"
)

// The two member clusters: their networks, localities and pod networks.
var members = []member{
	{name: "west", network: "net-west", region: "us-west", zone: "us-west-1a", podCIDR: "10.210.1.0/24"},
	{name: "east", network: "net-east", region: "us-east", zone: "us-east-1a", podCIDR: "10.210.2.0/24"},
}

// Names of what the test deploys.
const (
	system      = "horizon-system"
	demo        = "demo"
	horizonRef  = "horizon:e2e"
	demoRef     = "horizon-demo:e2e"
	clientID    = "spiffe://cluster.local/ns/demo/sa/client"
	echoID      = "spiffe://cluster.local/ns/demo/sa/echo"
	gatewayPort = 15443
	xdsPort     = 15012
	injectPort  = 15017
	podWait     = 2 * time.Minute
)

// member is one member cluster of the test and what runs it.
type member struct {
	name, network, region, zone, podCIDR string

	kube *kubetest.Cluster
	node *nodetest.Node
}

// TestMeshOnNodes: Horizon in a pod of west, from its image and chart,
// watching west and east through Secrets `horizon cluster add-secret`
// printed; a `horizon gateway` per network; echo exported from both
// clusters; a proxyless client the webhook injected. The client calls west's
// echo directly, fails over to east's through east's gateway with mutual TLS
// when west's echo pods are deleted, and comes back when they return; a
// capture witness sees the application's original destinations and not the
// proxy's; Horizon's pod deleted and recreated leaves connected clients
// working, and they resync.
func TestMeshOnNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two kube-apiservers, two kubelet nodes and the mesh in pods; skipped with -short")
	}
	if err := nodetest.Available(); err != nil {
		t.Skipf("real nodes cannot run here: %v", err)
	}
	figures := &report{}
	begin := time.Now()

	// Images, built in Go like `make image`, while nothing else runs yet.
	horizonImage := nodetest.BuildImage(t, nodetest.ImageSpec{Ref: horizonRef, Package: "github.com/horizonmesh/horizon/cmd/horizon", Path: "/horizon"})
	demoImage := nodetest.BuildImage(t, nodetest.ImageSpec{Ref: demoRef, Package: "github.com/horizonmesh/horizon/examples/demo/app", Path: "/app"})
	bin := buildHorizon(t)

	// Two member clusters, each with a real node.
	clusters := kubetest.StartWith(t, kubetest.Options{ReachableFromPods: true}, members[0].name, members[1].name)
	nodesFrom := time.Now()
	for i := range members {
		m := &members[i]
		m.kube = clusters[i]
		m.kube.StartControllers(t)
		m.node = nodetest.StartNode(t, nodetest.Config{
			Name: m.name, Kube: m.kube.Config, PodCIDR: m.podCIDR,
			Labels: map[string]string{corev1.LabelTopologyRegion: m.region, corev1.LabelTopologyZone: m.zone},
		})
		for _, img := range []string{horizonImage, demoImage} {
			if err := m.node.ImportImage(img); err != nil {
				t.Fatalf("import %s into node %s: %v", img, m.name, err)
			}
		}
	}
	west, east := &members[0], &members[1]
	figures.add("nodes up (two apiservers' controllers, two kubelets, images imported)", time.Since(nodesFrom))
	// Horizon's host ports on west's node, as every pod reaches them.
	horizonHost := west.node.Gateway
	xdsAddress := netip.AddrPortFrom(horizonHost, xdsPort)

	// The trust root, and the objects the chart leaves to the user.
	pki := t.TempDir()
	horizonCmd(t, bin, "ca", "init", "--trust-domain", "cluster.local", "--out", pki)
	root, err := os.ReadFile(filepath.Join(pki, "root.crt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		createNamespace(t, m, system, nil)
		createNamespace(t, m, demo, map[string]string{"horizon-injection": "enabled"})
		create(t, m, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "horizon-root", Namespace: system}, Data: map[string]string{"root.crt": string(root)}})
	}
	caFiles := map[string][]byte{}
	for _, f := range []string{"root.crt", "root.key"} {
		if caFiles[f], err = os.ReadFile(filepath.Join(pki, f)); err != nil {
			t.Fatal(err)
		}
	}
	create(t, *west, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "horizon-ca", Namespace: system}, Data: caFiles})

	// The chart: the control plane, west's gateway and webhook in west; the
	// gateway and webhook in east, whose control plane is west's.
	rendered := map[string]chartObjects{}
	for _, m := range members {
		values := map[string]any{
			"cluster":    map[string]any{"name": m.name, "network": m.network},
			"image":      map[string]any{"repository": "horizon", "tag": "e2e", "pullPolicy": "Never"},
			"xdsAddress": xdsAddress.String(),
			"ca":         map[string]any{"mode": "horizon", "secretName": "horizon-ca"},
			"controlPlane": map[string]any{
				"enabled":   m.name == west.name,
				"replicas":  1,
				"logFormat": "text",
				"extraArgs": []any{"--kubeconfig=/etc/horizon/kubeconfig/kubeconfig"},
			},
			"gateway": map[string]any{"kind": "horizon", "replicas": 1},
			// The apiservers call the webhook through Horizon's host port.
			"injector": map[string]any{
				"enabled":  true,
				"url":      "https://" + netip.AddrPortFrom(horizonHost, injectPort).String(),
				"caBundle": string(root),
				"ipSANs":   []any{horizonHost.String()},
			},
		}
		rendered[m.name] = renderChart(t, values, system)
		applyObjects(t, m, rendered[m.name].others)
	}

	// Each member's Secret, as `horizon cluster add-secret` prints it, in
	// the control plane's namespace of west.
	for _, m := range members {
		kubeconfig, err := m.node.PodKubeconfig(m.kube.Config, "")
		if err != nil {
			t.Fatal(err)
		}
		adminFile := filepath.Join(t.TempDir(), m.name+".kubeconfig")
		if err := os.WriteFile(adminFile, kubeconfig, 0o600); err != nil {
			t.Fatal(err)
		}
		// The apiserver as Horizon's pod on west reaches it: a host address.
		server := "https://" + netip.AddrPortFrom(horizonHost, apiPort(t, m)).String()
		out := horizonOut(t, bin, "cluster", "add-secret", "--kubeconfig", adminFile, "--cluster", m.name, "--network", m.network,
			"--region", m.region, "--zone", m.zone, "--server", server)
		applyYAML(t, *west, out)
	}

	// Horizon's own cluster, through a kubeconfig with its projected token
	// (there is no kube-proxy for the in-cluster Service address).
	ownKubeconfig, err := west.node.PodKubeconfig(west.kube.Config, "/var/run/secrets/horizon-kube/token")
	if err != nil {
		t.Fatal(err)
	}
	create(t, *west, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "horizon-kubeconfig", Namespace: system}, Data: map[string][]byte{"kubeconfig": ownKubeconfig}})
	horizonPod := podFrom(t, rendered[west.name].deployment("horizon"), "horizon-0", west.name)
	withOwnKubeconfig(horizonPod)
	withHostPorts(horizonPod, "horizon", xdsPort, injectPort)
	horizonPod = runPod(t, *west, horizonPod)
	t.Logf("horizon runs in pod %s (%s)", horizonPod.Name, horizonPod.Status.PodIP)

	// A gateway per network, its load balancer stood in for by the test.
	gateways := map[string]netip.AddrPort{}
	for _, m := range members {
		gw := runPod(t, m, podFrom(t, rendered[m.name].deployment("horizon-eastwest"), "horizon-eastwest-0", m.name))
		addr := netip.MustParseAddr(gw.Status.PodIP)
		gateways[m.name] = netip.AddrPortFrom(addr, gatewayPort)
		setLoadBalancer(t, m, "horizon-eastwest", addr)
	}
	nodetest.Isolate(t, west.node, east.node, gateways[west.name], gateways[east.name], xdsAddress)

	// echo in both clusters, exported; its pods and the client are injected
	// by the webhook the apiserver calls.
	for _, m := range members {
		applyYAML(t, m, echoManifests(m))
		runPod(t, m, echoPod(m, "echo-1"))
	}
	clientCreated := time.Now()
	client := runPod(t, *west, clientPod())
	checkInjected(t, client, "proxyless")

	// SVIDs through token review of projected ServiceAccount tokens.
	svidAt := waitLog(t, *west, client.Name, "horizon-agent", "obtained X509-SVID", clientID)
	waitLog(t, *west, horizonPod.Name, "horizon", "issued X509-SVID", clientID, "method=token", "cluster=west")
	waitLog(t, *west, horizonPod.Name, "horizon", "issued X509-SVID", echoID, "method=token", "cluster=east")
	waitLog(t, *east, "echo-1", "horizon-agent", "obtained X509-SVID", echoID)

	// The client calls west's echo directly.
	first := waitAnswers(t, *west, client.Name, west.name, time.Time{})
	figures.add("client pod created → SVID obtained", svidAt.Sub(clientCreated))
	figures.add("client pod created → first call answered (its xDS resources ACKed)", first.Sub(clientCreated))
	figures.add("node bring-up → first call answered through the mesh", first.Sub(nodesFrom))

	// Failover: west's echo deleted → east's, through east's gateway with
	// mutual TLS (the answer names the caller's SVID as east's echo saw it).
	routedBefore := gatewayRouted(t, gateways[east.name].Addr())
	deleted := time.Now()
	deletePod(t, *west, "echo-1")
	failedOver := waitAnswers(t, *west, client.Name, east.name, time.Now())
	if routed := gatewayRouted(t, gateways[east.name].Addr()); routed <= routedBefore {
		t.Errorf("east's gateway routed %v connections before the failover and %v after: the calls did not pass it", routedBefore, routed)
	}
	t.Logf("failed over to east %v after west's echo pod was deleted", failedOver.Sub(deleted).Round(10*time.Millisecond))
	runPod(t, *west, echoPod(*west, "echo-2"))
	waitAnswers(t, *west, client.Name, west.name, time.Now())

	// The capture witness, injected by `horizon inject` with the injector
	// configuration the chart renders.
	echo2, err := west.kube.Kube.CoreV1().Pods(demo).Get(t.Context(), "echo-2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkCapture(t, *west, bin, rendered[west.name].injectorConfig(t), filepath.Join(pki, "root.crt"), echo2.Status.PodIP, client.Name)

	// Horizon's pod deleted: connected clients keep calling.
	deletePod(t, *west, horizonPod.Name)
	waitAnswers(t, *west, client.Name, west.name, time.Now())
	recreated := podFrom(t, rendered[west.name].deployment("horizon"), "horizon-1", west.name)
	withOwnKubeconfig(recreated)
	withHostPorts(recreated, "horizon", xdsPort, injectPort)
	runPod(t, *west, recreated)
	// Resync: a change after the restart reaches the client.
	deletePod(t, *west, "echo-2")
	waitAnswers(t, *west, client.Name, east.name, time.Now())
	runPod(t, *west, echoPod(*west, "echo-3"))
	waitAnswers(t, *west, client.Name, west.name, time.Now())

	figures.memory = horizonRSS(t)
	figures.add("whole test until here", time.Since(begin))
	figures.log(t)
}

// horizonCmd runs the horizon binary and fails the test when it fails.
func horizonCmd(t *testing.T, bin string, args ...string) {
	t.Helper()
	horizonOut(t, bin, args...)
}

// horizonOut runs the horizon binary and returns its standard output.
func horizonOut(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("horizon %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// createNamespace creates a namespace with labels.
func createNamespace(t *testing.T, m member, name string, labels map[string]string) {
	t.Helper()
	create(t, m, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}})
}

// deletePod deletes a pod at once and waits until it is gone.
func deletePod(t *testing.T, m member, name string) {
	t.Helper()
	ctx := t.Context()
	pods := m.kube.Kube.CoreV1().Pods(podNamespace(name))
	if err := pods.Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64(1))}); err != nil {
		t.Fatalf("delete pod %s in %s: %v", name, m.name, err)
	}
	testkit.Eventually(t, podWait, "pod "+name+" of "+m.name+" gone", func() error {
		_, err := pods.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return errors.New("still there")
	})
}

// podNamespace is where the test's pod of that name lives.
func podNamespace(name string) string {
	if strings.HasPrefix(name, "horizon") {
		return system
	}
	return demo
}

// ctxTimeout is a context for one step.
func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// apiPort is the port m's kube-apiserver listens on (on every address).
func apiPort(t *testing.T, m member) uint16 {
	t.Helper()
	u, err := url.Parse(m.kube.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.ParseUint(u.Port(), 10, 16)
	if err != nil {
		t.Fatalf("apiserver %s: %v", m.kube.Config.Host, err)
	}
	return uint16(p)
}

// gatewayRouted is horizon_gateway_connections_total{result="routed"} of
// the `horizon gateway` at addr (its HTTP port, 15021).
func gatewayRouted(t *testing.T, addr netip.Addr) float64 {
	t.Helper()
	url := "http://" + netip.AddrPortFrom(addr, 15021).String() + "/metrics"
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("gateway metrics: %v", err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("gateway metrics %s: %v", url, err)
	}
	for _, m := range families["horizon_gateway_connections_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "result" && l.GetValue() == "routed" {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
