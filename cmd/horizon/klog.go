package main

import (
	"log/slog"

	"k8s.io/klog/v2"
)

// routeKlog sends what client-go logs through klog (reflector and leader
// election errors, throttling notes) to Horizon's logger, so that every line
// on stderr has one format (--log-format). klog's verbosity still applies:
// its V(n) lines are dropped unless klog is told otherwise.
func routeKlog(log *slog.Logger) {
	klog.SetSlogLogger(log.With("component", "client-go"))
}
