package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/horizonmesh/horizon/certs/agent"
)

// vmAgentConfig is what `horizon agent` is asked for on a workload outside
// Kubernetes (a VM): --join-token-file and the instance.
type vmAgentConfig struct {
	joinTokenFile, group, address, probeHost string
	labels                                   []string
}

func (c vmAgentConfig) enabled() bool { return c.joinTokenFile != "" }

// run joins the group, keeps the SVID current in --cert-dir, and reports
// the group's probe until ctx ends.
func (c vmAgentConfig) run(ctx context.Context, acfg agent.Config, metricsAddress string, reg *prometheus.Registry, stdout io.Writer) error {
	if c.group == "" || c.address == "" {
		return errors.New("--join-token-file needs --workload-group and --workload-address")
	}
	if acfg.TokenFile != "" {
		return errors.New("--join-token-file and --token-file exclude each other: a VM joins with its group's token")
	}
	labels := map[string]string{}
	for _, l := range c.labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return fmt.Errorf("--workload-label %q: want key=value", l)
		}
		labels[k] = v
	}
	vm, err := agent.NewVM(agent.VMConfig{Config: acfg, JoinTokenFile: c.joinTokenFile, Group: c.group, Address: c.address, Labels: labels, ProbeHost: c.probeHost})
	if err != nil {
		return err
	}
	stop, err := serveAgentMetrics(metricsAddress, reg)
	if err != nil {
		return err
	}
	defer stop()
	fmt.Fprintf(stdout, "horizon agent: joining workload group %s as %s at %s; SVID in %s\n", c.group, c.address, acfg.Address, acfg.Dir)
	if err := vm.Run(ctx); !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
