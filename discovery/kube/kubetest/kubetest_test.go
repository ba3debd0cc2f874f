package kubetest

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/url"
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

// TestReachableFromPods: the API server listens beyond loopback, and a client
// dialling a non-loopback address of this host verifies it as "localhost"
// with the cluster's CA; Start's API server does not listen there.
func TestReachableFromPods(t *testing.T) {
	addr := nonLoopbackAddr(t)
	reachable := StartWith(t, Options{ReachableFromPods: true}, "west")[0]
	loopback := Start(t, "east")[0]
	if _, err := reachable.Kube.Discovery().ServerVersion(); err != nil {
		t.Fatalf("client of Config: %v", err)
	}
	for _, c := range []struct {
		cluster *Cluster
		want    bool
	}{{reachable, true}, {loopback, false}} {
		u, err := url.Parse(c.cluster.Config.Host)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(c.cluster.Config.CAData)
		d := &net.Dialer{Timeout: 3 * time.Second}
		conn, err := tls.DialWithDialer(d, "tcp", net.JoinHostPort(addr, u.Port()), &tls.Config{RootCAs: pool, ServerName: "localhost"})
		if err == nil {
			conn.Close()
		}
		if got := err == nil; got != c.want {
			t.Errorf("cluster %s on %s:%s: verified TLS connection %v, want %v (%v)", c.cluster.Name, addr, u.Port(), got, c.want, err)
		}
	}
}

func nonLoopbackAddr(t *testing.T) string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP.String()
		}
	}
	t.Skip("this host has no non-loopback IPv4 address")
	return ""
}
