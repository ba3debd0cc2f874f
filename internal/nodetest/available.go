package nodetest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// CNIBinDir holds the CNI plugins (Debian's containernetworking-plugins).
const CNIBinDir = "/usr/lib/cni"

// Available reports why nodes cannot run here, or nil when they can: the
// test must run as root on Linux, with containerd, runc, ctr and iptables on
// PATH, the CNI plugins in CNIBinDir and the kubelet built (`make node-tools`
// does both). Tests skip with its message.
func Available() error {
	if runtime.GOOS != "linux" {
		return errors.New("nodetest: kubelet nodes need Linux")
	}
	if os.Geteuid() != 0 {
		return errors.New("nodetest: kubelet nodes need root (containerd, cgroups, bridges, iptables); run the tests as root")
	}
	var missing []error
	for _, bin := range []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, fmt.Errorf("%s not on PATH", bin))
		}
	}
	for _, p := range []string{"bridge", "host-local", "portmap", "loopback"} {
		if _, err := os.Stat(filepath.Join(CNIBinDir, p)); err != nil {
			missing = append(missing, fmt.Errorf("CNI plugin %s not in %s", p, CNIBinDir))
		}
	}
	if _, err := Kubelet(); err != nil {
		missing = append(missing, err)
	}
	if len(missing) > 0 {
		return fmt.Errorf("nodetest: run `make node-tools` (as root): %w", errors.Join(missing...))
	}
	return nil
}

// Kubelet is the path of the kubelet binary: in KUBEBUILDER_ASSETS, or
// bin/k8s at the repository root (where `make node-tools` builds it).
func Kubelet() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		_, self, _, _ := runtime.Caller(0)
		dir = filepath.Join(filepath.Dir(self), "..", "..", "bin", "k8s")
	}
	p := filepath.Join(dir, "kubelet")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("kubelet not found in %s", dir)
	}
	return p, nil
}
