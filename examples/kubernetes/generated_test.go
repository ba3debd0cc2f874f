package kubernetes_test

import (
	"bytes"
	"os"
	"testing"

	"github.com/horizonmesh/horizon/charts"
)

// TestGeneratedFromChart: the manifests the Helm chart writes here are
// exactly what it renders now with values.yaml (`make examples`), and
// workload-injected.yaml exactly what its injector config injects into
// workload.yaml now, so an edit of the chart, of workload.yaml or of the
// injector that is not regenerated, or an edit of a generated file, fails.
func TestGeneratedFromChart(t *testing.T) {
	files, err := charts.Examples("../../charts/horizon", valuesFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 8 || files[charts.InjectedWorkloadFile] == nil {
		t.Fatalf("the chart writes %d files, want the manifests, the CRDs and %s", len(files), charts.InjectedWorkloadFile)
	}
	for name, want := range files {
		got, err := os.ReadFile(name)
		if err != nil {
			t.Errorf("%s: %v (run make examples)", name, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what charts/horizon renders with %s: run make examples (and edit the chart, not the file)", name, valuesFile)
		}
	}
}
