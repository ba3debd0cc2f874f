package kubetest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/horizonmesh/horizon/internal/testkit"
)

// DefaultControllers are the kube-controller-manager controllers a mesh
// relies on: EndpointSlices from Services' selectors and Pods' readiness,
// and every namespace's default ServiceAccount.
var DefaultControllers = []string{"endpointslice-controller", "serviceaccount-controller"}

// StartControllers runs the real kube-controller-manager (built beside
// kube-apiserver by `make kube-tools`) against the cluster with only the
// named controllers (DefaultControllers when none), until the test ends. Its
// log goes to the test's log when the test fails.
func (c *Cluster) StartControllers(t testing.TB, controllers ...string) {
	t.Helper()
	if len(controllers) == 0 {
		controllers = DefaultControllers
	}
	assets, err := Assets()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(assets, "kube-controller-manager")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("kube-controller-manager: %v (run `make kube-tools`)", err)
	}
	kubeconfig := c.KubeconfigFile(t)
	out := &testkit.Buffer{}
	cmd := exec.Command(bin,
		"--kubeconfig="+kubeconfig,
		"--controllers="+strings.Join(controllers, ","),
		"--leader-elect=false",
		"--secure-port=0",
		"--use-service-account-credentials=false",
		"--endpointslice-updates-batch-period=0s",
		"-v=1",
	)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start kube-controller-manager for %s: %v", c.Name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("kube-controller-manager of %s:\n%s", c.Name, tail(out.String(), 60))
		}
	})
	// It is up when the ServiceAccount controller has made default's
	// ServiceAccount (the cheapest sign that its informers synced).
	testkit.Eventually(t, time.Minute, "kube-controller-manager of "+c.Name+" syncing", func() error {
		select {
		case err := <-done:
			done <- err
			return fmt.Errorf("exited: %v\n%s", err, tail(out.String(), 40))
		default:
		}
		if !slices.Contains(controllers, "serviceaccount-controller") {
			return nil
		}
		if _, err := c.Kube.CoreV1().ServiceAccounts("default").Get(t.Context(), "default", metav1.GetOptions{}); err != nil {
			return errors.New("no default ServiceAccount yet: " + err.Error())
		}
		return nil
	})
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
