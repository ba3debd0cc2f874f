package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/horizonmesh/horizon/inject"
)

// checkCapture runs the capture witness on west: `horizon inject` (sidecar
// mode) adds the capture init container, whose nftables rules are then
// tested with real connections. No Envoy binary exists here, so the witness
// (examples/demo/app witness) takes the proxy container's place and uid and
// records each redirected connection's original destination.
func checkCapture(t *testing.T, m member, bin, injectorConfig, rootFile, echoIP, clientPod string) {
	t.Helper()
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "injector.yaml")
	if err := os.WriteFile(cfgFile, []byte(injectorConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	out := horizonOut(t, bin, "inject", "--filename", "testdata/witness.yaml", "--injector-config", cfgFile,
		"--cluster", m.name, "--clusterset", "testdata/clusterset.yaml", "--ca-bundle", rootFile, "--mode", inject.ModeSidecar)
	pod := &corev1.Pod{}
	if err := yaml.UnmarshalStrict(out, pod); err != nil {
		t.Fatalf("horizon inject output: %v\n%s", err, out)
	}
	replaced := false
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if c.Name == inject.ContainerProxy {
			c.Image, c.ImagePullPolicy = demoRef, corev1.PullNever
			c.Command, c.Args = []string{"/app"}, []string{"witness"}
			replaced = true
		}
	}
	if !replaced {
		t.Fatalf("horizon inject added no %s container:\n%s", inject.ContainerProxy, out)
	}
	if !hasInit(pod, inject.ContainerCapture) {
		t.Fatalf("horizon inject added no %s container:\n%s", inject.ContainerCapture, out)
	}
	w := runPod(t, m, pod)
	podIP := w.Status.PodIP

	exec := func(pod, container string, args ...string) (string, int32) {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		stdout, stderr, code, err := m.node.Exec(ctx, demo, pod, container, append([]string{"/app"}, args...)...)
		if err != nil {
			t.Fatalf("exec %v in %s/%s: %v", args, pod, container, err)
		}
		return strings.TrimSpace(string(stdout) + string(stderr)), code
	}
	proxyLog := func() string {
		out, err := m.node.PodLog(demo, "witness", inject.ContainerProxy)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	// The application's outbound connection lands on 15001, with its
	// original destination.
	if out, code := exec("witness", "app", "dial", "10.99.0.1:8080"); code != 0 {
		t.Errorf("app's dial of 10.99.0.1:8080 was not redirected to the witness (exit %d): %s", code, out)
	}
	waitLog(t, m, "witness", inject.ContainerProxy, "witness outbound", "orig=10.99.0.1:8080")

	// Inbound: another pod's connection to the pod's port lands on 15006.
	if out, code := exec(clientPod, "app", "dial", podIP+":7070"); code != 0 {
		t.Errorf("dial of the witness pod's %s:7070 from %s failed (exit %d): %s", podIP, clientPod, code, out)
	}
	waitLog(t, m, "witness", inject.ContainerProxy, "witness inbound", fmt.Sprintf("orig=%s:7070", podIP))

	// The proxy's uid bypasses capture: its connection reaches echo itself,
	// and a dial to nowhere fails instead of landing on the witness.
	if out, code := exec("witness", inject.ContainerProxy, "dial", echoIP+":7070"); code != 0 {
		t.Errorf("the proxy uid's dial of echo %s:7070 failed (exit %d): %s", echoIP, code, out)
	}
	if out, code := exec("witness", inject.ContainerProxy, "dial", "--timeout", "1s", "10.99.0.2:8080"); code == 0 {
		t.Errorf("the proxy uid's dial of 10.99.0.2:8080 connected, so it was redirected: %s", out)
	}
	// Loopback is never captured: the app reaches its own listener.
	if out, code := exec("witness", "app", "dial", "127.0.0.1:7070"); code != 0 {
		t.Errorf("app's dial of its own 127.0.0.1:7070 failed (exit %d): %s", code, out)
	}
	waitLog(t, m, "witness", "app", "witness app", "orig=127.0.0.1:7070")

	log := proxyLog()
	for _, notThere := range []string{"orig=" + echoIP + ":7070", "orig=10.99.0.2:8080", "orig=127.0.0.1:7070"} {
		if strings.Contains(log, notThere) {
			t.Errorf("the witness saw %s, which capture must not redirect:\n%s", notThere, log)
		}
	}
	t.Logf("capture witness:\n%s", tail(log, 10))
}

func hasInit(p *corev1.Pod, name string) bool {
	for _, c := range p.Spec.InitContainers {
		if c.Name == name {
			return true
		}
	}
	return false
}
