package main

import (
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestBuildInfo(t *testing.T) {
	old := version
	t.Cleanup(func() { version = old })
	version = "v9.8.7"
	var out strings.Builder
	printVersion(&out)
	for _, want := range []string{"horizon v9.8.7\n", "go     " + runtime.Version()} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("version output %q lacks %q", out.String(), want)
		}
	}
	reg := prometheus.NewRegistry()
	registerBuildInfo(reg)
	b := readBuildInfo()
	want := `# HELP horizon_build_info Always 1; its labels name the Horizon build that is running.
# TYPE horizon_build_info gauge
horizon_build_info{commit="` + b.Commit + `",go_version="` + runtime.Version() + `",version="v9.8.7"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "horizon_build_info"); err != nil {
		t.Error(err)
	}
}
