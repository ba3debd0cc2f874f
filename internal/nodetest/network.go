package nodetest

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"testing"
)

// Isolate keeps the pod networks of nodes a and b apart, as two networks of
// a multi-network mesh are: the host stops forwarding between their pod
// CIDRs, except new TCP connections whose original destination (before any
// DNAT, such as a hostPort's) is one of allow, like the other network's
// east-west gateway (a pod IP:port, or a node Gateway:hostPort). Replies of
// allowed connections pass. The host itself (every kube-apiserver, on each
// node's Gateway address) stays reachable from both. The rules live in an
// iptables chain of their own (HZNT-ISO-<a>-<b>, jumped to first from
// FORWARD) removed when the test ends.
func Isolate(t testing.TB, a, b *Node, allow ...netip.AddrPort) {
	t.Helper()
	chain := chainPrefix + "ISO-" + a.Name + "-" + b.Name
	if len(chain) > 28 {
		chain = chain[:28]
	}
	t.Cleanup(func() {
		if err := deleteChain(chain); err != nil {
			t.Errorf("isolation of %s and %s: %v", a.Name, b.Name, err)
		}
	})
	rules := [][]string{{"-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"}}
	for _, ap := range allow {
		rules = append(rules, []string{"-p", "tcp", "-m", "conntrack", "--ctorigdst", ap.Addr().String(), "--ctorigdstport", strconv.Itoa(int(ap.Port())), "-j", "ACCEPT"})
	}
	rules = append(rules,
		[]string{"-s", a.PodCIDR.String(), "-d", b.PodCIDR.String(), "-j", "DROP"},
		[]string{"-s", b.PodCIDR.String(), "-d", a.PodCIDR.String(), "-j", "DROP"},
	)
	errs := []error{run("iptables", "-w", "-N", chain)}
	for _, r := range rules {
		errs = append(errs, run("iptables", append([]string{"-w", "-A", chain}, r...)...))
	}
	errs = append(errs, run("iptables", "-w", "-I", "FORWARD", "1", "-j", chain))
	if err := errors.Join(errs...); err != nil {
		t.Fatal(fmt.Errorf("isolate %s and %s: %w", a.Name, b.Name, err))
	}
}
