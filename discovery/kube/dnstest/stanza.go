package dnstest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// ExampleFile is the users' CoreDNS example, relative to the repository root:
// its ConfigMap's Corefile holds the kubernetes block the tests run.
const ExampleFile = "examples/kubernetes/coredns.yaml"

// Stanza returns the kubernetes plugin block of the Corefile in ExampleFile:
// from the line that starts with "kubernetes " to its closing brace.
func Stanza() (string, error) {
	_, self, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(self), "..", "..", "..", filepath.FromSlash(ExampleFile))
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	d := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	for {
		var cm corev1.ConfigMap
		if err := d.Decode(&cm); err != nil {
			return "", fmt.Errorf("%s: no ConfigMap with a Corefile: %w", ExampleFile, err)
		}
		if cm.Kind == "ConfigMap" && cm.Data["Corefile"] != "" {
			return KubernetesBlock(cm.Data["Corefile"])
		}
	}
}

// KubernetesBlock returns the kubernetes plugin's block of a Corefile, from
// its first line to the matching closing brace.
func KubernetesBlock(corefile string) (string, error) {
	lines := strings.Split(corefile, "\n")
	for i, line := range lines {
		if !strings.HasPrefix(strings.TrimSpace(line), "kubernetes ") {
			continue
		}
		depth := 0
		for j := i; j < len(lines); j++ {
			depth += strings.Count(lines[j], "{") - strings.Count(lines[j], "}")
			if depth == 0 {
				return strings.Join(lines[i:j+1], "\n"), nil
			}
		}
		return "", fmt.Errorf("kubernetes block at line %d is not closed", i+1)
	}
	return "", fmt.Errorf("no kubernetes block")
}

// withKubeconfig adds a kubeconfig line as the block's first option.
func withKubeconfig(block, kubeconfig string) string {
	first, rest, _ := strings.Cut(block, "\n")
	return first + "\n        kubeconfig " + kubeconfig + "\n" + rest
}
