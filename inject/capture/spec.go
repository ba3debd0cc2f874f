// Package capture redirects a pod's TCP traffic to its sidecar with
// nftables: the rules `horizon capture` (the injected init container
// horizon-capture) installs in the pod's network namespace.
//
//	inbound:  nat prerouting, TCP to any port (or to IncludeInboundPorts)
//	          except ExcludeInboundPorts  →  redirect to InboundPort (15006)
//	outbound: nat output, TCP from any uid except ProxyUID, to anything but
//	          loopback, ExcludeOutboundPorts and ExcludeOutboundIPRanges
//	          (and only to IncludeOutboundIPRanges when given)  →  redirect
//	          to OutboundPort (15001)
//
// The rules live in a table of their own, inet horizon, which Apply
// replaces in one netlink transaction, so running it again is safe. They
// are built once (Rules) and both printed (--dry-run) and programmed from
// the same values. The sidecar finds a redirected connection's original
// destination with SO_ORIGINAL_DST (OriginalDst).
package capture

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Spec is what to capture.
type Spec struct {
	InboundPort  uint16 // inbound TCP is redirected here (15006)
	OutboundPort uint16 // outbound TCP is redirected here (15001)
	ProxyUID     uint32 // the proxy's own traffic is never redirected

	// AllInbound redirects inbound TCP to every port but
	// ExcludeInboundPorts; otherwise only to IncludeInboundPorts.
	AllInbound          bool
	IncludeInboundPorts []uint16
	ExcludeInboundPorts []uint16

	ExcludeOutboundPorts []uint16
	// AllOutbound redirects outbound TCP to every address but
	// ExcludeOutboundIPRanges; otherwise only to IncludeOutboundIPRanges.
	AllOutbound             bool
	IncludeOutboundIPRanges []netip.Prefix
	ExcludeOutboundIPRanges []netip.Prefix
}

// Defaults of the capture ports and the proxy's uid.
const (
	DefaultInboundPort  = 15006
	DefaultOutboundPort = 15001
	DefaultProxyUID     = 1337
)

// Check reports a Spec that cannot be programmed.
func (s Spec) Check() error {
	switch {
	case s.InboundPort == 0 || s.OutboundPort == 0:
		return fmt.Errorf("capture: inbound port %d, outbound port %d: want both set", s.InboundPort, s.OutboundPort)
	case s.InboundPort == s.OutboundPort:
		return fmt.Errorf("capture: inbound and outbound port are both %d", s.InboundPort)
	case s.ProxyUID == 0:
		return fmt.Errorf("capture: proxy uid 0: the proxy must not run as root, or root's traffic escapes capture")
	}
	return nil
}

// Args are the flags of `horizon capture` that say s.
func (s Spec) Args() []string {
	args := []string{
		"--inbound-port=" + strconv.Itoa(int(s.InboundPort)),
		"--outbound-port=" + strconv.Itoa(int(s.OutboundPort)),
		"--proxy-uid=" + strconv.FormatUint(uint64(s.ProxyUID), 10),
	}
	if s.AllInbound {
		args = append(args, "--include-inbound-ports=*")
	} else {
		args = append(args, "--include-inbound-ports="+FormatPorts(s.IncludeInboundPorts))
	}
	if len(s.ExcludeInboundPorts) > 0 {
		args = append(args, "--exclude-inbound-ports="+FormatPorts(s.ExcludeInboundPorts))
	}
	if len(s.ExcludeOutboundPorts) > 0 {
		args = append(args, "--exclude-outbound-ports="+FormatPorts(s.ExcludeOutboundPorts))
	}
	if s.AllOutbound {
		args = append(args, "--include-outbound-ip-ranges=*")
	} else {
		args = append(args, "--include-outbound-ip-ranges="+FormatPrefixes(s.IncludeOutboundIPRanges))
	}
	if len(s.ExcludeOutboundIPRanges) > 0 {
		args = append(args, "--exclude-outbound-ip-ranges="+FormatPrefixes(s.ExcludeOutboundIPRanges))
	}
	return args
}

// ParsePorts reads a comma-separated list of ports ("15020, 15021"), or
// "*" (all: true). An empty string is no port. The list comes back sorted
// and without duplicates.
func ParsePorts(s string) (all bool, ports []uint16, err error) {
	s = strings.TrimSpace(s)
	if s == "*" {
		return true, nil, nil
	}
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := strconv.ParseUint(f, 10, 16)
		if err != nil || p == 0 {
			return false, nil, fmt.Errorf("%q is not a port (1-65535)", f)
		}
		ports = append(ports, uint16(p))
	}
	slices.Sort(ports)
	return false, slices.Compact(ports), nil
}

// ParsePrefixes reads a comma-separated list of CIDRs ("10.0.0.0/8,
// fd00::/8"; a bare address is a /32 or /128), or "*" (all: true). The list
// comes back masked, sorted and without duplicates.
func ParsePrefixes(s string) (all bool, prefixes []netip.Prefix, err error) {
	s = strings.TrimSpace(s)
	if s == "*" {
		return true, nil, nil
	}
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		var p netip.Prefix
		if strings.Contains(f, "/") {
			p, err = netip.ParsePrefix(f)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(f); err == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil {
			return false, nil, fmt.Errorf("%q is not a CIDR", f)
		}
		prefixes = append(prefixes, p.Masked())
	}
	slices.SortFunc(prefixes, comparePrefixes)
	return false, slices.Compact(prefixes), nil
}

func comparePrefixes(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// FormatPorts is the comma-separated form ParsePorts reads.
func FormatPorts(ports []uint16) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ",")
}

// FormatPrefixes is the comma-separated form ParsePrefixes reads.
func FormatPrefixes(prefixes []netip.Prefix) string {
	s := make([]string, len(prefixes))
	for i, p := range prefixes {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}
