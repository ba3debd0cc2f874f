package kubetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/horizonmesh/horizon/internal/testkit"
)

// TestControllers: with StartControllers, a namespace gets its default
// ServiceAccount and a Service's ready Pod appears in its EndpointSlice
// with its node's zone (the Pod's status is written here, as a kubelet
// would).
func TestControllers(t *testing.T) {
	c := Start(t, "west")[0]
	c.StartControllers(t)
	ctx := t.Context()
	if _, err := c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, "default ServiceAccount in demo", func() error {
		_, err := c.Kube.CoreV1().ServiceAccounts("demo").Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: "demo"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "echo"},
			Ports:    []corev1.ServicePort{{Name: "grpc", Port: 7070, TargetPort: intstr.FromInt32(7070)}},
		},
	}
	if _, err := c.Kube.CoreV1().Services("demo").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1", Labels: map[string]string{corev1.LabelTopologyZone: "west-1a"}}}
	if _, err := c.Kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "echo-1", Namespace: "demo", Labels: map[string]string{"app": "echo"}},
		Spec:       corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "echo", Image: "echo"}}},
	}
	created, err := c.Kube.CoreV1().Pods("demo").Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created.Status = corev1.PodStatus{
		Phase: corev1.PodRunning, PodIP: "10.1.2.3", PodIPs: []corev1.PodIP{{IP: "10.1.2.3"}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
	}
	if _, err := c.Kube.CoreV1().Pods("demo").UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, "the ready Pod in echo's EndpointSlice", func() error {
		slices, err := c.Kube.DiscoveryV1().EndpointSlices("demo").List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=echo"})
		if err != nil {
			return err
		}
		for _, s := range slices.Items {
			for _, ep := range s.Endpoints {
				if len(ep.Addresses) == 1 && ep.Addresses[0] == "10.1.2.3" && ep.Conditions.Ready != nil && *ep.Conditions.Ready &&
					ep.Zone != nil && *ep.Zone == "west-1a" {
					return nil
				}
			}
		}
		return errors.New(fmt.Sprint("slices: ", slices.Items))
	})
}
