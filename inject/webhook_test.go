package inject

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/certs/certsvc"
	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/file"
	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
	"github.com/horizonmesh/horizon/internal/testkit"
)

// TestWebhookWithAPIServer registers the injector with a real
// kube-apiserver (testdata/webhook.yaml, the chart's two webhooks) and
// creates pods: the API server calls the webhook, and the stored pods carry
// what it added, or not, as the labels say.
func TestWebhookWithAPIServer(t *testing.T) {
	west := kubetest.Start(t, "west")[0]
	ctx := t.Context()
	kc := west.Kube

	// Horizon's CA issues the serving certificate, for 127.0.0.1.
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	root, err := certs.NewRoot(td)
	if err != nil {
		t.Fatal(err)
	}
	self := certsvc.NewSelf(spiffeid.RequireFromPath(td, "/ns/horizon-system/sa/horizon"), time.Hour,
		func() (*certs.CA, error) { return root, nil }, nil, certs.WithServingNames(nil, []net.IP{net.ParseIP("127.0.0.1")}))
	bundle := certs.EncodeCertificates(root.Root())

	cfg, err := LoadConfig("testdata/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cs, err := file.Load("testdata/clusterset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	wh := NewWebhook(cfg, Resolver{
		ClusterSet: func() *discovery.ClusterSet { return cs },
		Node: func(ctx context.Context, cluster, name string) (*corev1.Node, error) {
			return kc.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		},
		Bundle: func() ([]byte, error) { return bundle, nil },
	}, NewMetrics(reg), log)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srvCtx, stopServer := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() {
		served <- Serve(srvCtx, lis, wh.Handler(), &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: tlsconfig.GetCertificate(self)})
	}()
	defer func() { stopServer(); <-served }()

	// The webhook configuration, with no caBundle yet: CABundle sets it.
	data, err := os.ReadFile("testdata/webhook.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := yaml.UnmarshalStrict(data, &mwc); err != nil {
		t.Fatal(err)
	}
	url := "https://" + lis.Addr().String() + "/inject/west"
	for i := range mwc.Webhooks {
		mwc.Webhooks[i].ClientConfig.URL = &url
	}
	if _, err := kc.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, &mwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	keeper := &CABundle{Client: kc, Name: mwc.Name, Bundle: func() ([]byte, error) { return bundle, nil }, Log: log}
	if err := keeper.Sync(ctx); err != nil {
		t.Fatal(err)
	}

	if _, err := kc.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-b", Labels: map[string]string{
		corev1.LabelTopologyRegion: "us-west", corev1.LabelTopologyZone: "us-west-1b",
	}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for ns, label := range map[string]string{"meshed": "enabled", "plain": "", "disabled": "disabled"} {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
		if label != "" {
			n.Labels = map[string]string{LabelNamespaceInjection: label}
		}
		if _, err := kc.CoreV1().Namespaces().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
		if _, err := kc.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	newPod := func(ns, name string, labels, annotations map[string]string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels, Annotations: annotations},
			Spec:       corev1.PodSpec{NodeName: "node-b", Containers: []corev1.Container{{Name: "app", Image: "demo:dev"}}},
		}
	}
	create := func(p *corev1.Pod) (*corev1.Pod, error) {
		return kc.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{})
	}
	names := func(cs []corev1.Container) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.Name)
		}
		return out
	}
	sidecar := []string{ContainerBootstrap, ContainerCapture, ContainerAgent, ContainerProxy}

	for _, c := range []struct {
		name  string
		pod   *corev1.Pod
		inits []string // nil: not injected
	}{
		{"labelled namespace", newPod("meshed", "echo", map[string]string{"app": "echo"}, nil), sidecar},
		{"labelled namespace, pod opts out", newPod("meshed", "out", map[string]string{LabelInject: "false"}, nil), nil},
		{"labelled namespace, proxyless", newPod("meshed", "grpc", nil, map[string]string{AnnotationMode: ModeProxyless}), []string{ContainerBootstrap, ContainerAgent}},
		{"plain namespace", newPod("plain", "p", nil, nil), nil},
		{"plain namespace, pod opts in", newPod("plain", "q", map[string]string{LabelInject: "true"}, nil), sidecar},
		{"disabled namespace, pod opts in", newPod("disabled", "r", map[string]string{LabelInject: "true"}, nil), nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := create(c.pod)
			if err != nil {
				t.Fatal(err)
			}
			if n := names(got.Spec.InitContainers); !slices.Equal(n, c.inits) {
				t.Fatalf("stored pod's init containers %v, want %v", n, c.inits)
			}
			if c.inits == nil {
				if _, ok := got.Annotations[AnnotationStatus]; ok {
					t.Error("not injected, but has the status annotation")
				}
				return
			}
			if _, ok := got.Annotations[AnnotationStatus]; !ok {
				t.Error("no status annotation")
			}
			args := strings.Join(got.Spec.InitContainers[0].Args, " ")
			for _, want := range []string{"--cluster=west", "--network=net-west", "--region=us-west", "--zone=us-west-1b"} {
				if !strings.Contains(args, want) {
					t.Errorf("bootstrap args %q lack %s (from the node's labels)", args, want)
				}
			}
		})
	}

	// A bad annotation is refused with a message naming it.
	_, err = create(newPod("meshed", "bad", nil, map[string]string{AnnotationExcludeInboundPorts: "http"}))
	if err == nil || !strings.Contains(err.Error(), AnnotationExcludeInboundPorts) || !strings.Contains(err.Error(), "pod meshed/bad") {
		t.Errorf("bad annotation: %v", err)
	}
	if got := testutil.ToFloat64(wh.metrics.requests.WithLabelValues(ResultInjected)); got != 3 {
		t.Errorf("horizon_injector_requests_total{result=injected} = %v, want 3", got)
	}
	if got := testutil.ToFloat64(wh.metrics.requests.WithLabelValues(ResultRefused)); got != 1 {
		t.Errorf("horizon_injector_requests_total{result=refused} = %v, want 1", got)
	}

	// With the injector down, failurePolicy Fail: no pod of a labelled
	// namespace is created unmeshed; other namespaces do not notice.
	stopServer()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	served <- nil
	_, err = create(newPod("meshed", "while-down", nil, nil))
	if err == nil || !strings.Contains(err.Error(), "failed calling webhook") {
		t.Errorf("injector down, labelled namespace: %v, want the API server's refusal", err)
	}
	if _, err := create(newPod("plain", "while-down", nil, nil)); err != nil {
		t.Errorf("injector down, plain namespace: %v", err)
	}
	testkit.Eventually(t, time.Second, "no pod while-down in meshed", func() bool {
		_, err := kc.CoreV1().Pods("meshed").Get(ctx, "while-down", metav1.GetOptions{})
		return err != nil
	})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
