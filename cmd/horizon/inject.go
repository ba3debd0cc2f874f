package main

import (
	"fmt"
	"io"
	"os"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/inject"
)

// injectConfig is what `horizon inject` is asked for.
type injectConfig struct {
	file           string // "-": standard input
	injectorConfig string
	cluster        string
	clusterSet     string
	mode           string
	caBundle       string
}

// run runs `horizon inject`: the manifests of cfg.file with Horizon's
// sidecar in their pods, on stdout.
func (cfg injectConfig) run(stdin io.Reader, stdout io.Writer) error {
	switch cfg.mode {
	case "", inject.ModeSidecar, inject.ModeProxyless:
	default:
		return fmt.Errorf("inject: --mode %q: want %s or %s", cfg.mode, inject.ModeSidecar, inject.ModeProxyless)
	}
	c, err := inject.LoadConfig(cfg.injectorConfig)
	if err != nil {
		return fmt.Errorf("inject: --injector-config: %w", err)
	}
	cs, err := loadClusterSet(cfg.clusterSet)
	if err != nil {
		return fmt.Errorf("inject: --clusterset: %w", err)
	}
	bundle, err := os.ReadFile(cfg.caBundle)
	if err != nil {
		return fmt.Errorf("inject: --ca-bundle: %w", err)
	}
	if roots, err := certs.ParseCertificates(bundle); err != nil || len(roots) == 0 {
		return fmt.Errorf("inject: --ca-bundle %s: no PEM certificates (%v)", cfg.caBundle, err)
	}
	target, err := inject.TargetFor(cs, cfg.cluster, nil, bundle)
	if err != nil {
		return fmt.Errorf("inject: --cluster: %w", err)
	}
	in, name := stdin, "<stdin>"
	if cfg.file != "-" {
		f, err := os.Open(cfg.file)
		if err != nil {
			return fmt.Errorf("inject: %w", err)
		}
		defer f.Close()
		in, name = f, cfg.file
	}
	return inject.Manifests(stdout, in, name, c, target, cfg.mode)
}
