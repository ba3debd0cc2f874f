package health

import (
	"maps"
	"runtime"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// series returns the values of a metric family by "network/address" (or ""
// for a metric without those labels).
func series(t *testing.T, reg *prometheus.Registry, name string) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			key := ""
			if len(labels) > 0 {
				key = labels["network"] + "/" + labels["address"]
			}
			switch {
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

func checkGauge(t *testing.T, reg *prometheus.Registry, name string, want map[string]float64) {
	t.Helper()
	if got := series(t, reg, name); !maps.Equal(got, want) {
		t.Errorf("%s = %v, want %v", name, got, want)
	}
}

func counter(t *testing.T, reg *prometheus.Registry, name, key string) float64 {
	t.Helper()
	return series(t, reg, name)[key]
}

func seriesOf(t *testing.T, reg *prometheus.Registry, name string) []string {
	t.Helper()
	return slices.Sorted(maps.Keys(series(t, reg, name)))
}

func runtimeGoroutines() int { return runtime.NumGoroutine() }

// The probe duration histogram has no per-gateway label.
func TestHistogramLabels(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.add("n", "192.0.2.1:1", true)
	m.probed("n", "192.0.2.1:1", false, 0.01)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "horizon_gateway_probe_duration_seconds" {
			continue
		}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() != "result" {
					t.Errorf("histogram label %s", l.GetName())
				}
			}
		}
		return
	}
	t.Error("no probe duration histogram")
}
