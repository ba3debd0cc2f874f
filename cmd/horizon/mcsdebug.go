package main

import (
	"net/http"
	"os"

	"github.com/horizonmesh/horizon/discovery/kube/mcs"
)

// defaultLeaseNamespace is --leader-election-namespace's default: the pod's
// own namespace (POD_NAMESPACE, set from the downward API), else
// horizon-system.
func defaultLeaseNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	return "horizon-system"
}

// handleMCSDebug serves GET /debug/mcs: the MCS controller's leader
// election (mcs.ElectionStatus), {"enabled":false} without a controller.
// A replica that cannot take its Lease shows the reason and error there
// while it lasts; it stays ready, since it still serves xDS.
func handleMCSDebug(debug *http.ServeMux, c *mcs.Controller) {
	debug.HandleFunc("GET /debug/mcs", func(w http.ResponseWriter, _ *http.Request) {
		if c == nil {
			writeJSON(w, map[string]any{"election": mcs.ElectionStatus{}})
			return
		}
		writeJSON(w, map[string]any{"election": c.ElectionStatus()})
	})
}
