package nodetest_test

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
	"github.com/horizonmesh/horizon/internal/nodetest"
)

func skipUnlessAvailable(t *testing.T) {
	t.Helper()
	if err := nodetest.Available(); err != nil {
		t.Skip(err)
	}
}

const probeImage = "hznt-probe:test"

// pod is a pod bound to node (no scheduler) running image with args.
func pod(name, node, image string, args ...string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: new(int64),
			Containers: []corev1.Container{{
				Name: "main", Image: image, Args: args, ImagePullPolicy: corev1.PullNever,
			}},
		},
	}
}

func create(t *testing.T, kube kubernetes.Interface, objs ...any) {
	t.Helper()
	ctx := context.Background()
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *corev1.Pod:
			_, err = kube.CoreV1().Pods(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *corev1.ServiceAccount:
			_, err = kube.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *corev1.ConfigMap:
			_, err = kube.CoreV1().ConfigMaps(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		default:
			t.Fatalf("create %T", o)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestHorizonImageRunsOnANode: the Horizon image (built here through
// internal/image from a fresh static binary) runs in a real container on a
// real kubelet, and a pod's projected ServiceAccount token (audience
// "horizon") passes a TokenReview; a client in the pod reaches the
// kube-apiserver through Node.PodKubeconfig.
func TestHorizonImageRunsOnANode(t *testing.T) {
	skipUnlessAvailable(t)
	cluster := kubetest.StartWith(t, kubetest.Options{ReachableFromPods: true}, "west")[0]
	checkNoLeftovers(t)
	horizon := nodetest.BuildImage(t, nodetest.ImageSpec{
		Ref: "horizon:dev", Package: "github.com/horizonmesh/horizon/cmd/horizon",
		LDFlags: "-X main.version=v0.0.0-nodetest",
	})
	probe := nodetest.BuildImage(t, nodetest.ImageSpec{Ref: probeImage, Package: "github.com/horizonmesh/horizon/internal/nodetest/probe"})
	node := nodetest.StartNode(t, nodetest.Config{
		Name: "west", Kube: cluster.Config, PodCIDR: "10.210.1.0/24",
		Labels: map[string]string{"topology.kubernetes.io/region": "eu-west", "topology.kubernetes.io/zone": "eu-west-1a"},
	})
	for _, img := range []string{horizon, probe} {
		if err := node.ImportImage(img); err != nil {
			t.Fatal(err)
		}
	}
	kube := cluster.Kube
	ctx := context.Background()
	n, err := kube.CoreV1().Nodes().Get(ctx, "west", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Labels["topology.kubernetes.io/zone"] != "eu-west-1a" {
		t.Errorf("node labels = %v, want the zone label", n.Labels)
	}

	kubeconfig, err := node.PodKubeconfig(cluster.Config, "/var/run/secrets/horizon/kube-token")
	if err != nil {
		t.Fatal(err)
	}
	tokenPod := pod("token", "west", probeImage, "cat", "/var/run/secrets/horizon/token")
	tokenPod.Spec.ServiceAccountName = "horizon"
	tokenPod.Spec.Containers = append(tokenPod.Spec.Containers, corev1.Container{
		Name: "kubeget", Image: probeImage, ImagePullPolicy: corev1.PullNever,
		Args: []string{"kubeget", "/etc/kube/kubeconfig"},
	})
	mounts := []corev1.VolumeMount{{Name: "horizon-token", MountPath: "/var/run/secrets/horizon", ReadOnly: true}, {Name: "kube", MountPath: "/etc/kube", ReadOnly: true}}
	tokenPod.Spec.Containers[0].VolumeMounts, tokenPod.Spec.Containers[1].VolumeMounts = mounts, mounts
	hour := int64(3600)
	tokenPod.Spec.Volumes = []corev1.Volume{
		{Name: "horizon-token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: "horizon", ExpirationSeconds: &hour, Path: "token"}},
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{ExpirationSeconds: &hour, Path: "kube-token"}},
		}}}},
		{Name: "kube", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "kube"}}}},
	}
	create(t, kube,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "horizon", Namespace: "default"}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kube", Namespace: "default"}, Data: map[string]string{"kubeconfig": string(kubeconfig)}},
		pod("version", "west", "horizon:dev", "version"),
		tokenPod,
	)

	nodetest.WaitPod(t, kube, "default", "version", corev1.PodSucceeded, 90*time.Second)
	out, err := node.PodLog("default", "version", "main")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "v0.0.0-nodetest") {
		t.Errorf("horizon version in the container printed %q, want the version it was built with", out)
	}

	nodetest.WaitPod(t, kube, "default", "token", corev1.PodSucceeded, 90*time.Second)
	token, err := node.PodLog("default", "token", "main")
	if err != nil {
		t.Fatal(err)
	}
	review, err := kube.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{
		Token: strings.TrimSpace(token), Audiences: []string{"horizon"},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !review.Status.Authenticated || review.Status.User.Username != "system:serviceaccount:default:horizon" {
		t.Errorf("TokenReview of the pod's token: authenticated %v as %q (%s)", review.Status.Authenticated, review.Status.User.Username, review.Status.Error)
	}
	if got := review.Status.User.Extra["authentication.kubernetes.io/pod-name"]; len(got) != 1 || got[0] != "token" {
		t.Errorf("token bound to pod %v, want token", got)
	}
	kubeget, err := node.PodLog("default", "token", "kubeget")
	if err != nil {
		t.Fatal(err)
	}
	v, err := kube.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if kubeget != "apiserver "+v.GitVersion+"\n" {
		t.Errorf("client in the pod through PodKubeconfig: %q, want the apiserver's version", kubeget)
	}
}

// TestIsolatedNetworks: two nodes on two kube-apiservers, their pod networks
// isolated except for east's gateway (a pod IP:port and a hostPort): a pod on
// west reaches a pod on its own node, east's gateway both ways, and both
// kube-apiservers, but not another pod on east.
func TestIsolatedNetworks(t *testing.T) {
	skipUnlessAvailable(t)
	clusters := kubetest.StartWith(t, kubetest.Options{ReachableFromPods: true}, "west", "east")
	checkNoLeftovers(t) // when the nodes and the isolation are gone
	probe := nodetest.BuildImage(t, nodetest.ImageSpec{Ref: probeImage, Package: "github.com/horizonmesh/horizon/internal/nodetest/probe"})
	west := nodetest.StartNode(t, nodetest.Config{Name: "west", Kube: clusters[0].Config, PodCIDR: "10.210.1.0/24", ClusterDNS: netip.MustParseAddr("10.210.1.1")})
	east := nodetest.StartNode(t, nodetest.Config{Name: "east", Kube: clusters[1].Config, PodCIDR: "10.210.2.0/24"})
	for _, n := range []*nodetest.Node{west, east} {
		if err := n.ImportImage(probe); err != nil {
			t.Fatal(err)
		}
	}
	gw := pod("gateway", "east", probeImage, "serve", ":8080")
	gw.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8080, HostPort: 15443}}
	create(t, clusters[0].Kube, pod("client", "west", probeImage, "serve", ":8080"), pod("peer", "west", probeImage, "serve", ":8080"))
	create(t, clusters[1].Kube, gw, pod("other", "east", probeImage, "serve", ":8080"))
	ip := map[string]string{}
	for _, p := range []struct {
		kube kubernetes.Interface
		name string
	}{{clusters[0].Kube, "client"}, {clusters[0].Kube, "peer"}, {clusters[1].Kube, "gateway"}, {clusters[1].Kube, "other"}} {
		ip[p.name] = nodetest.WaitPod(t, p.kube, "default", p.name, corev1.PodRunning, 90*time.Second).Status.PodIP
	}

	dial := func(addr string) (string, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		stdout, stderr, code, err := west.Exec(ctx, "default", "client", "main", "/probe", "dial", addr)
		if err != nil {
			t.Fatal(err)
		}
		return string(stdout) + string(stderr), code == 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	resolv, _, _, err := west.Exec(ctx, "default", "client", "main", "/probe", "cat", "/etc/resolv.conf")
	cancel()
	if err != nil || !strings.Contains(string(resolv), "nameserver 10.210.1.1") || !strings.Contains(string(resolv), "default.svc.cluster.local") {
		t.Errorf("west's pods resolve with %q (%v), want ClusterDNS 10.210.1.1 and cluster.local", resolv, err)
	}

	other := ip["other"] + ":8080"
	if out, ok := dial(other); !ok || !strings.Contains(out, "probe other") {
		t.Fatalf("before isolation, west's client cannot reach east's other pod: %s", out)
	}

	gateway := netip.MustParseAddrPort(ip["gateway"] + ":8080")
	hostPort := netip.AddrPortFrom(east.Gateway, 15443)
	nodetest.Isolate(t, west, east, gateway, hostPort)

	westAPI, eastAPI := apiPort(t, clusters[0].Config.Host), apiPort(t, clusters[1].Config.Host)
	for _, c := range []struct {
		what, addr, greeting string
		reachable            bool
	}{
		{"a pod on its own node", ip["peer"] + ":8080", "probe peer", true},
		{"east's gateway pod", gateway.String(), "probe gateway", true},
		{"east's gateway through its hostPort (DNAT)", hostPort.String(), "probe gateway", true},
		{"another pod on east", other, "", false},
	} {
		out, ok := dial(c.addr)
		if ok != c.reachable || !strings.Contains(out, c.greeting) {
			t.Errorf("west's client to %s (%s): reachable %v, want %v: %s", c.what, c.addr, ok, c.reachable, out)
		}
	}
	// Both kube-apiservers (on the host) stay reachable on west's gateway.
	for _, port := range []string{westAPI, eastAPI} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, stderr, code, err := west.Exec(ctx, "default", "client", "main", "/probe", "dial", west.Gateway.String()+":"+port)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		// A TLS server sends no greeting: connected, then the read times out.
		if code != 0 && !strings.Contains(string(stderr), "read greeting") {
			t.Errorf("west's client cannot connect to a kube-apiserver on %s:%s: %s", west.Gateway, port, stderr)
		}
	}
}

func apiPort(t *testing.T, host string) string {
	t.Helper()
	i := strings.LastIndex(host, ":")
	return host[i+1:]
}

// checkNoLeftovers checks, when the test's later cleanups (the nodes', the
// isolation's) have run, that the host holds nothing more than now.
func checkNoLeftovers(t *testing.T) {
	t.Helper()
	before, err := nodetest.Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		after, err := nodetest.Leftovers()
		if err != nil {
			t.Fatal(err)
		}
		if extra := slices.DeleteFunc(after, func(s string) bool { return slices.Contains(before, s) }); len(extra) > 0 {
			t.Errorf("left behind after the nodes stopped: %v", extra)
		}
	})
}
