// Command render-examples writes examples/kubernetes from the Helm chart
// charts/horizon (`make examples`): the manifests its templates render with
// examples/kubernetes/values.yaml, the CRDs, and workload-injected.yaml:
// workload.yaml as the rendered injector config injects it. A test fails when the
// committed files differ from a fresh render.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/horizonmesh/horizon/charts"
)

func main() {
	chart := flag.String("chart", "charts/horizon", "the chart's directory")
	values := flag.String("values", "examples/kubernetes/values.yaml", "values file to render with")
	out := flag.String("out", "examples/kubernetes", "folder to write the files into")
	flag.Parse()
	files, err := charts.Examples(*chart, *values)
	if err != nil {
		fmt.Fprintln(os.Stderr, "render-examples:", err)
		os.Exit(1)
	}
	for name, data := range files {
		p := filepath.Join(*out, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "render-examples:", err)
			os.Exit(1)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "render-examples:", err)
			os.Exit(1)
		}
	}
}
