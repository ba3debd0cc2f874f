package file

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/horizonmesh/horizon/internal/filewatch"
)

// Metrics counts a Watcher's reloads. A nil *Metrics records nothing.
type Metrics struct {
	*filewatch.Reloads
}

// NewMetrics creates the file source's metrics and registers them with reg
// (unless reg is nil):
//
//   - horizon_file_reloads_total{result="ok|rejected"}
//   - horizon_file_last_reload_success_timestamp_seconds
func NewMetrics(reg prometheus.Registerer) *Metrics {
	return &Metrics{filewatch.NewReloads(reg, "horizon_file", "the local ClusterSet file")}
}

func (m *Metrics) reloads() *filewatch.Reloads {
	if m == nil {
		return nil
	}
	return m.Reloads
}
