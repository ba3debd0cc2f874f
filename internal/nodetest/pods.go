package nodetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// WaitPod waits until the pod reaches phase (Running: also with an IP and
// every container ready) and returns it; it fails the test on timeout, or at
// once when the pod ends in another phase, with its container states.
func WaitPod(t testing.TB, kube kubernetes.Interface, namespace, name string, phase corev1.PodPhase, timeout time.Duration) *corev1.Pod {
	t.Helper()
	begin := time.Now()
	var last *corev1.Pod
	for time.Since(begin) < timeout {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		pod, err := kube.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
		cancel()
		if err == nil {
			last = pod
			done := pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
			switch {
			case pod.Status.Phase == phase && (phase != corev1.PodRunning || (pod.Status.PodIP != "" && allReady(pod))):
				t.Logf("pod %s/%s: %s after %v", namespace, name, phase, time.Since(begin).Round(10*time.Millisecond))
				return pod
			case done && pod.Status.Phase != phase:
				t.Fatalf("pod %s/%s ended %s, want %s: %s", namespace, name, pod.Status.Phase, phase, containerStates(pod))
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	state := "not found"
	if last != nil {
		state = string(last.Status.Phase) + ": " + containerStates(last)
	}
	t.Fatalf("pod %s/%s not %s after %v (%s)", namespace, name, phase, timeout, state)
	return nil
}

func allReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.ContainerStatuses {
		if !c.Ready {
			return false
		}
	}
	return len(pod.Status.ContainerStatuses) > 0
}

func containerStates(pod *corev1.Pod) string {
	var s string
	for _, c := range append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...) {
		switch {
		case c.State.Waiting != nil:
			s += fmt.Sprintf(" %s waiting (%s: %s)", c.Name, c.State.Waiting.Reason, c.State.Waiting.Message)
		case c.State.Terminated != nil:
			s += fmt.Sprintf(" %s terminated (exit %d, %s: %s)", c.Name, c.State.Terminated.ExitCode, c.State.Terminated.Reason, c.State.Terminated.Message)
		case c.State.Running != nil:
			s += fmt.Sprintf(" %s running", c.Name)
		}
	}
	for _, c := range pod.Status.Conditions {
		if c.Status != corev1.ConditionTrue && c.Message != "" {
			s += fmt.Sprintf(" [%s: %s]", c.Type, c.Message)
		}
	}
	return s
}
