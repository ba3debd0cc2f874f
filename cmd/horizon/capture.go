package main

import (
	"fmt"
	"io"

	"github.com/google/nftables"

	"github.com/horizonmesh/horizon/inject/capture"
)

// captureConfig is what `horizon capture` is asked for.
type captureConfig struct {
	inboundPort, outboundPort uint16
	proxyUID                  uint32
	includeInboundPorts       string
	excludeInboundPorts       string
	excludeOutboundPorts      string
	includeOutboundIPRanges   string
	excludeOutboundIPRanges   string
	dryRun                    bool
}

// spec reads the flags' lists.
func (cfg captureConfig) spec() (capture.Spec, error) {
	s := capture.Spec{InboundPort: cfg.inboundPort, OutboundPort: cfg.outboundPort, ProxyUID: cfg.proxyUID}
	var err error
	if s.AllInbound, s.IncludeInboundPorts, err = capture.ParsePorts(cfg.includeInboundPorts); err != nil {
		return s, fmt.Errorf("--include-inbound-ports: %w", err)
	}
	for _, l := range []struct {
		flag, value string
		dst         *[]uint16
	}{
		{"exclude-inbound-ports", cfg.excludeInboundPorts, &s.ExcludeInboundPorts},
		{"exclude-outbound-ports", cfg.excludeOutboundPorts, &s.ExcludeOutboundPorts},
	} {
		all, ports, err := capture.ParsePorts(l.value)
		if err == nil && all {
			err = fmt.Errorf(`"*" is not allowed here`)
		}
		if err != nil {
			return s, fmt.Errorf("--%s: %w", l.flag, err)
		}
		*l.dst = ports
	}
	if s.AllOutbound, s.IncludeOutboundIPRanges, err = capture.ParsePrefixes(cfg.includeOutboundIPRanges); err != nil {
		return s, fmt.Errorf("--include-outbound-ip-ranges: %w", err)
	}
	all, prefixes, err := capture.ParsePrefixes(cfg.excludeOutboundIPRanges)
	if err == nil && all {
		err = fmt.Errorf(`"*" is not allowed here`)
	}
	if err != nil {
		return s, fmt.Errorf("--exclude-outbound-ip-ranges: %w", err)
	}
	s.ExcludeOutboundIPRanges = prefixes
	return s, s.Check()
}

// run runs `horizon capture`: it replaces the table inet horizon of the
// current network namespace with the capture rules, or prints them.
func (cfg captureConfig) run(stdout io.Writer) error {
	s, err := cfg.spec()
	if err != nil {
		return fmt.Errorf("capture: %w", err)
	}
	if cfg.dryRun {
		_, err := io.WriteString(stdout, capture.Render(s))
		return err
	}
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("capture: netlink: %w", err)
	}
	if err := capture.Apply(conn, s); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "horizon capture: installed\n%s", capture.Render(s))
	return nil
}
