package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// version is Horizon's release, set at build time
// (-ldflags "-X main.version=v1.2.3"; the Makefile passes git describe).
// Unset, the module version from the build info is used, "(devel)" for a
// build from a checkout.
var version = ""

// buildInfo is what `horizon version` prints and horizon_build_info carries.
type buildInfo struct {
	Version   string
	Commit    string // the VCS revision the binary was built from, "" if unknown
	Modified  bool   // built from a tree with uncommitted changes
	GoVersion string
}

func readBuildInfo() buildInfo {
	b := buildInfo{Version: version, GoVersion: runtime.Version()}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		if b.Version == "" {
			b.Version = "unknown"
		}
		return b
	}
	if b.Version == "" {
		b.Version = info.Main.Version
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Commit = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

func (b buildInfo) String() string {
	commit := b.Commit
	if commit == "" {
		commit = "unknown"
	}
	if b.Modified {
		commit += " (modified)"
	}
	return fmt.Sprintf("horizon %s\n  commit %s\n  go     %s\n", b.Version, commit, b.GoVersion)
}

func printVersion(w io.Writer) { fmt.Fprint(w, readBuildInfo()) }

// registerBuildInfo adds horizon_build_info{version, commit, go_version} 1.
func registerBuildInfo(reg prometheus.Registerer) {
	b := readBuildInfo()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "horizon_build_info",
		Help:        "Always 1; its labels name the Horizon build that is running.",
		ConstLabels: prometheus.Labels{"version": b.Version, "commit": b.Commit, "go_version": b.GoVersion},
	})
	g.Set(1)
	reg.MustRegister(g)
}
