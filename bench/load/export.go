package load

import "time"

// Helpers for harnesses built on this package (bench/kube), so that their
// figures are computed as this package's tables compute them.

// Quantile is the nearest-rank quantile of sorted s, as the tables report
// p50 and p99.
func Quantile(s []time.Duration, q float64) time.Duration { return quantile(s, q) }

// CPUSeconds is this process's user + system CPU time, as "CPU s/change"
// measures it.
func CPUSeconds() float64 { return cpuSeconds() }
