package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/horizonmesh/horizon/internal/testkit"
)

// buildHorizon builds the horizon binary for the commands the test runs on
// the host (ca, cluster add-secret, inject).
func buildHorizon(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "horizon")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/horizon").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/horizon: %v\n%s", err, out)
	}
	return bin
}

// create creates obj in m's cluster.
func create(t *testing.T, m member, obj client.Object) {
	t.Helper()
	c, err := client.New(m.kube.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(t.Context(), obj); err != nil {
		t.Fatalf("create %T %s/%s in %s: %v", obj, obj.GetNamespace(), obj.GetName(), m.name, err)
	}
}

// podFrom is the pod a Deployment's controller and the scheduler would
// make of it on node: its template, named, with nodeName set.
func podFrom(t *testing.T, d *appsv1.Deployment, name, node string) *corev1.Pod {
	t.Helper()
	if d == nil {
		t.Fatalf("the chart rendered no Deployment for pod %s", name)
	}
	tmpl := d.Spec.Template.DeepCopy()
	p := &corev1.Pod{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec}
	p.Name, p.Namespace, p.GenerateName = name, d.Namespace, ""
	p.Spec.NodeName = node
	return p
}

// withOwnKubeconfig points horizon at its own cluster's kube-apiserver
// through the horizon-kubeconfig Secret and a projected token, instead of
// the in-cluster Service address nothing routes here.
func withOwnKubeconfig(p *corev1.Pod) {
	p.Spec.Volumes = append(p.Spec.Volumes,
		corev1.Volume{Name: "kubeconfig", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "horizon-kubeconfig", DefaultMode: new(int32(0o440))}}},
		corev1.Volume{Name: "kube-token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			DefaultMode: new(int32(0o440)),
			Sources:     []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: new(int64(3600))}}},
		}}},
	)
	for i := range p.Spec.Containers {
		if p.Spec.Containers[i].Name == "horizon" {
			p.Spec.Containers[i].VolumeMounts = append(p.Spec.Containers[i].VolumeMounts,
				corev1.VolumeMount{Name: "kubeconfig", MountPath: "/etc/horizon/kubeconfig", ReadOnly: true},
				corev1.VolumeMount{Name: "kube-token", MountPath: "/var/run/secrets/horizon-kube", ReadOnly: true},
			)
		}
	}
}

// withHostPorts publishes ports of a container on its node's addresses (a
// stand-in for a load balancer in front of Horizon).
func withHostPorts(p *corev1.Pod, container string, ports ...int32) {
	for i := range p.Spec.Containers {
		c := &p.Spec.Containers[i]
		if c.Name != container {
			continue
		}
		for _, port := range ports {
			found := false
			for j := range c.Ports {
				if c.Ports[j].ContainerPort == port {
					c.Ports[j].HostPort, found = port, true
				}
			}
			if !found {
				c.Ports = append(c.Ports, corev1.ContainerPort{ContainerPort: port, HostPort: port, Protocol: corev1.ProtocolTCP})
			}
		}
	}
}

// runPod creates p in m's cluster and waits until it runs and is ready; it
// returns the pod as stored then. On timeout it shows the pod's state and
// its containers' logs.
func runPod(t *testing.T, m member, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	ctx := t.Context()
	pods := m.kube.Kube.CoreV1().Pods(p.Namespace)
	if _, err := pods.Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s/%s in %s: %v", p.Namespace, p.Name, m.name, err)
	}
	var got *corev1.Pod
	deadline := time.Now().Add(podWait)
	for {
		var err error
		got, err = pods.Get(ctx, p.Name, metav1.GetOptions{})
		if err == nil && got.Status.Phase == corev1.PodRunning && podReady(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s/%s in %s is not ready after %v (get: %v):\n%s", p.Namespace, p.Name, m.name, podWait, err, describe(m, got))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// describe is a pod's status and its containers' logs, for failures.
func describe(m member, p *corev1.Pod) string {
	if p == nil {
		return "(no pod)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "phase %s, conditions %v\n", p.Status.Phase, p.Status.Conditions)
	statuses := append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...)
	for _, s := range statuses {
		fmt.Fprintf(&b, "container %s: ready=%v restarts=%d state=%+v last=%+v\n", s.Name, s.Ready, s.RestartCount, s.State, s.LastTerminationState)
		if out, err := m.node.PodLog(p.Namespace, p.Name, s.Name); err == nil {
			fmt.Fprintf(&b, "--- log of %s:\n%s\n", s.Name, tail(out, 30))
		}
	}
	return b.String()
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// setLoadBalancer writes the address of a Service's load balancer, as a
// cloud's controller would.
func setLoadBalancer(t *testing.T, m member, service string, addr netip.Addr) {
	t.Helper()
	ctx := t.Context()
	svcs := m.kube.Kube.CoreV1().Services(system)
	svc, err := svcs.Get(ctx, service, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("service %s in %s: %v", service, m.name, err)
	}
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: addr.String()}}
	if _, err := svcs.UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("load balancer status of %s in %s: %v", service, m.name, err)
	}
}

// echoManifests are echo's Service and ServiceExport and the demo
// ServiceAccounts in m.
func echoManifests(m member) []byte {
	return []byte(`apiVersion: v1
kind: ServiceAccount
metadata: {name: echo, namespace: demo}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: client, namespace: demo}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: demo}
spec:
  selector: {app: echo}
  ports: [{name: grpc, port: 7070, targetPort: 7070}]
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {name: echo, namespace: demo}
`)
}

// echoPod is a proxyless echo server of m, injected by the webhook.
func echoPod(m member, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: demo, Labels: map[string]string{"app": "echo"},
			Annotations: map[string]string{"sidecar.horizon.io/mode": "proxyless"}},
		Spec: corev1.PodSpec{
			NodeName: m.name, ServiceAccountName: "echo", TerminationGracePeriodSeconds: new(int64(2)),
			SecurityContext: appUser(),
			Containers: []corev1.Container{{
				Name: "app", Image: demoRef, ImagePullPolicy: corev1.PullNever,
				Args:  []string{"server", "--cluster", m.name, "--port", "7070", "--allow", clientID},
				Ports: []corev1.ContainerPort{{Name: "grpc", ContainerPort: 7070}},
			}},
		},
	}
}

// clientPod is west's proxyless client, calling echo four times a second.
func clientPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "client", Namespace: demo, Labels: map[string]string{"app": "client"},
			Annotations: map[string]string{"sidecar.horizon.io/mode": "proxyless"}},
		Spec: corev1.PodSpec{
			NodeName: "west", ServiceAccountName: "client", TerminationGracePeriodSeconds: new(int64(2)),
			SecurityContext: appUser(),
			Containers: []corev1.Container{{
				Name: "app", Image: demoRef, ImagePullPolicy: corev1.PullNever,
				Args: []string{"client", "--interval", "250ms"},
				Env:  []corev1.EnvVar{{Name: "GRPC_EXPERIMENTAL_XDS_SNI", Value: "true"}},
			}},
		},
	}
}

// appUser is the demo image's user, named in the pod so that the injected
// agent writes the SVID's key as the user grpc-go reads it as.
func appUser() *corev1.PodSecurityContext {
	return &corev1.PodSecurityContext{RunAsUser: new(int64(65532)), RunAsNonRoot: new(true)}
}

// checkInjected checks what the webhook added to a pod of mode.
func checkInjected(t *testing.T, p *corev1.Pod, mode string) {
	t.Helper()
	if p.Annotations["sidecar.horizon.io/status"] == "" {
		t.Fatalf("pod %s: no sidecar.horizon.io/status annotation: the webhook did not inject it", p.Name)
	}
	names := map[string]bool{}
	for _, c := range p.Spec.InitContainers {
		names[c.Name] = true
	}
	for _, want := range []string{"horizon-bootstrap", "horizon-agent"} {
		if !names[want] {
			t.Errorf("pod %s (%s): no init container %s; has %v", p.Name, mode, want, names)
		}
	}
	if mode == "proxyless" && (names["horizon-capture"] || names["horizon-proxy"]) {
		t.Errorf("pod %s is proxyless but got capture or a proxy: %v", p.Name, names)
	}
	env := false
	for _, c := range p.Spec.Containers {
		for _, e := range c.Env {
			if e.Name == "GRPC_XDS_BOOTSTRAP" {
				env = true
			}
		}
	}
	if mode == "proxyless" && !env {
		t.Errorf("pod %s: GRPC_XDS_BOOTSTRAP not set in its app container", p.Name)
	}
}

// waitLog waits until a line of a container's log holds every one of
// words, and returns the time the line carries (slog's time=), else now.
func waitLog(t *testing.T, m member, pod, container string, words ...string) time.Time {
	t.Helper()
	var at time.Time
	testkit.Eventually(t, podWait, fmt.Sprintf("%s/%s of %s logging %q", pod, container, m.name, words), func() error {
		out, err := m.node.PodLog(podNamespace(pod), pod, container)
		if err != nil {
			return err
		}
		for _, line := range strings.Split(out, "\n") {
			if containsAll(line, words) {
				at = lineTime(line)
				return nil
			}
		}
		return errors.New("not yet; last lines:\n" + tail(out, 5))
	})
	return at
}

func containsAll(s string, words []string) bool {
	for _, w := range words {
		if !strings.Contains(s, w) {
			return false
		}
	}
	return true
}

// lineTime is the time of a slog text or JSON line, or now.
func lineTime(line string) time.Time {
	for _, key := range []string{"time=", `"time":"`} {
		if i := strings.Index(line, key); i >= 0 {
			v := line[i+len(key):]
			if j := strings.IndexAny(v, " \""); j > 0 {
				v = v[:j]
			}
			if ts, err := time.Parse(time.RFC3339Nano, v); err == nil {
				return ts
			}
		}
	}
	return time.Now()
}

// answersNeeded is how many answers in a row from one cluster count as
// the client having settled there.
const answersNeeded = 4

// waitAnswers waits until the client's log, after the lines it held when
// called, has answersNeeded answers in a row from cluster, each by an echo
// server that saw the client's SPIFFE ID and presented echo's. It returns
// when that was seen.
func waitAnswers(t *testing.T, m member, pod, cluster string, _ time.Time) time.Time {
	t.Helper()
	out, err := m.node.PodLog(demo, pod, "app")
	if err != nil && !os.IsNotExist(err) {
		t.Logf("client log: %v", err)
	}
	skip := strings.Count(out, "\n")
	want := fmt.Sprintf("answered by %s (it saw the caller as %s; the client saw %s)", cluster, clientID, echoID)
	testkit.Eventually(t, podWait, "client calls answered by "+cluster, func() error {
		out, err := m.node.PodLog(demo, pod, "app")
		if err != nil {
			return err
		}
		run := 0
		sc := bufio.NewScanner(strings.NewReader(out))
		for i := 0; sc.Scan(); i++ {
			if i < skip {
				continue
			}
			if strings.Contains(sc.Text(), want) {
				run++
				if run == answersNeeded {
					return nil
				}
			} else {
				run = 0
			}
		}
		return errors.New("last lines:\n" + tail(out, 4))
	})
	return time.Now()
}

// deleteIfThere deletes a pod if it exists (cleanup of a failed step).
func deleteIfThere(t *testing.T, m member, name string) {
	err := m.kube.Kube.CoreV1().Pods(podNamespace(name)).Delete(t.Context(), name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Logf("delete pod %s in %s: %v", name, m.name, err)
	}
}

// horizonRSS is the resident memory of the `horizon serve` process on this
// host, in bytes (0 when not found).
func horizonRSS(t *testing.T) int64 {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		cmdline, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) < 2 || args[0] != "/horizon" || args[1] != "serve" {
			continue
		}
		status, err := os.ReadFile(filepath.Join(filepath.Dir(f), "status"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				if err == nil {
					return kb * 1024
				}
			}
		}
	}
	t.Log("no `/horizon serve` process found on this host")
	return 0
}

// report collects the figures bench/RESULTS.md records.
type report struct {
	rows   []string
	memory int64
}

func (r *report) add(what string, d time.Duration) {
	if d > 0 {
		r.rows = append(r.rows, fmt.Sprintf("| %s | %v |", what, d.Round(10*time.Millisecond)))
	}
}

// log writes the figures to the test log and, when HORIZON_E2E_REPORT names
// a file, there.
func (r *report) log(t *testing.T) {
	rows := append([]string{"| figure | value |", "|---|---|"}, r.rows...)
	rows = append(rows, fmt.Sprintf("| control plane pod memory (VmRSS of the recreated pod's `horizon serve`: 2 members, the xDS streams of 3 proxyless pods and 2 gateways) | %.1f MiB |", float64(r.memory)/(1<<20)))
	text := strings.Join(rows, "\n")
	t.Logf("figures:\n%s", text)
	if f := os.Getenv("HORIZON_E2E_REPORT"); f != "" {
		if err := os.WriteFile(f, []byte(text+"\n"), 0o644); err != nil {
			t.Errorf("HORIZON_E2E_REPORT: %v", err)
		}
	}
}
