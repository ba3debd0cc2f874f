package kubetest

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
)

// TestRestart: a member's API server can be stopped and started again with
// its data and certificates, and both MCS API versions are served.
func TestRestart(t *testing.T) {
	c := Start(t, "east")[0]
	ctx := t.Context()
	if _, err := c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.MCS.MulticlusterV1alpha1().ServiceExports("demo").Create(ctx, &mcsv1alpha1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Name: "echo"}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("v1alpha1 ServiceExport: %v", err)
	}
	if _, err := c.MCS.MulticlusterV1beta1().ServiceExports("demo").Get(ctx, "echo", metav1.GetOptions{}); err != nil {
		t.Fatalf("v1beta1 view of a v1alpha1 export: %v", err)
	}
	if err := c.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Kube.CoreV1().Namespaces().Get(ctx, "demo", metav1.GetOptions{}); err == nil {
		t.Fatal("the API server still answers after StopAPIServer")
	}
	start := time.Now()
	if err := c.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	t.Logf("restart took %v", time.Since(start))
	if _, err := c.Kube.CoreV1().Namespaces().Get(ctx, "demo", metav1.GetOptions{}); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}
