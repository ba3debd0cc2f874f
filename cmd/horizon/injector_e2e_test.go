package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
	"github.com/horizonmesh/horizon/internal/testkit"
)

// TestE2EInjectorKubernetes runs `horizon serve` with a Kubernetes member
// and the injector: Horizon fills the caBundle of the webhook
// configuration itself, the member's API server calls the injector, and
// the stored pod's bootstrap carries the cluster's network (from the
// ClusterSet Horizon built) and its node's region and zone (read through
// Horizon's member connection).
func TestE2EInjectorKubernetes(t *testing.T) {
	west := kubetest.Start(t, "west")[0]
	ctx := t.Context()
	kc := west.Kube
	kubeconfig := adminKubeconfigFile(t, west.Config)

	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	var out, errb testkit.Buffer
	if err := run(ctx, []string{"ca", "init", "--trust-domain", "cluster.local", "--out", caDir}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	root, err := os.ReadFile(filepath.Join(caDir, "root.crt"))
	if err != nil {
		t.Fatal(err)
	}

	// The chart's webhook configuration, without a caBundle.
	injectorAddr := freeLoopbackAddr(t)
	data, err := os.ReadFile("../../inject/testdata/webhook.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := yaml.UnmarshalStrict(data, &mwc); err != nil {
		t.Fatal(err)
	}
	url := "https://" + injectorAddr + "/inject/west"
	for i := range mwc.Webhooks {
		mwc.Webhooks[i].ClientConfig.URL = &url
	}
	if _, err := kc.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, &mwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-b", Labels: map[string]string{
		corev1.LabelTopologyRegion: "us-west", corev1.LabelTopologyZone: "us-west-1b",
	}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "meshed", Labels: map[string]string{"horizon-injection": "enabled"}}}
	if _, err := kc.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- run(sctx, []string{"serve", "--ca-dir", caDir, "--mtls-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0",
			"--member", fmt.Sprintf("name=west,network=net-west,kubeconfig=%s", kubeconfig), "--kubeconfig", kubeconfig,
			"--mcs-controller=false", "--injector-address", injectorAddr, "--injector-ip-sans", "127.0.0.1",
			"--injector-config", "../../inject/testdata/config.yaml", "--injector-webhook-config", mwc.Name}, &out, &errb)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v\n%s", err, errb.String())
		}
	}()

	// serve routes klog, which the test's client logs through, first: the
	// client waits for it (no data race on klog's logger).
	testkit.Eventually(t, 20*time.Second, "serve started", func() bool { return strings.Contains(out.String(), "Horizon is serving") })
	testkit.Eventually(t, 20*time.Second, "Horizon sets the caBundle", func() bool {
		got, err := kc.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, mwc.Name, metav1.GetOptions{})
		return err == nil && bytes.Equal(got.Webhooks[0].ClientConfig.CABundle, root) && bytes.Equal(got.Webhooks[1].ClientConfig.CABundle, root)
	})
	// Until the member has synced, the injector refuses pods (and the API
	// server with it: failurePolicy Fail).
	var pod *corev1.Pod
	testkit.Eventually(t, 20*time.Second, "an injected pod", func() error {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "echo-", Namespace: "meshed", Labels: map[string]string{"app": "echo"}},
			Spec:       corev1.PodSpec{NodeName: "node-b", Containers: []corev1.Container{{Name: "app", Image: "demo:dev"}}},
		}
		var err error
		pod, err = kc.CoreV1().Pods("meshed").Create(ctx, p, metav1.CreateOptions{})
		return err
	})
	if len(pod.Spec.InitContainers) != 4 {
		t.Fatalf("stored pod's init containers: %d, want Horizon's 4", len(pod.Spec.InitContainers))
	}
	args := strings.Join(pod.Spec.InitContainers[0].Args, " ")
	for _, want := range []string{"--cluster=west", "--network=net-west", "--region=us-west", "--zone=us-west-1b", "--label=app=echo"} {
		if !strings.Contains(args, want) {
			t.Errorf("bootstrap args %q lack %s", args, want)
		}
	}
	var env string
	for _, e := range pod.Spec.InitContainers[0].Env {
		if e.Name == "HORIZON_CA_BUNDLE" {
			env = e.Value
		}
	}
	if env != string(root) {
		t.Errorf("HORIZON_CA_BUNDLE = %q, want root.crt", env)
	}
}
