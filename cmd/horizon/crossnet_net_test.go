package main

// The two networks of the cross-network test. As root they are Linux network
// namespaces, each with its own address ranges:
//
//	root namespace (Horizon)        10.91.0.1 ── veth ── 10.91.0.2  ns east
//	                                10.92.0.1 ── veth ── 10.92.0.2  ns west
//	ns east 10.93.0.1 (east's gateway) ── veth ── 10.93.0.2 (west's gateway) ns west
//
// East's pods are 10.91.1.0/24 and west's 10.92.1.0/24, on each namespace's
// loopback device. Nothing routes one network's pod range from the other:
// east reaches west only at west's gateway address, on the link between the
// gateways (and west likewise). Horizon listens on 10.91.0.1, which west
// reaches through a host route to that one address; the root namespace
// delivers it locally and forwards nothing (IP forwarding is left as it is).
//
// Without root the same roles get addresses in 127.91.0.0/16 and
// 127.92.0.0/16, which every process can reach: isolation is not checked.

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// crossnetNetwork is one network: where its processes run and its addresses.
type crossnetNetwork struct {
	name    string // east or west
	ns      string // network namespace; "" without root
	gateway string // its gateway's address, as other networks reach it
	echo    string // its echo server's pod address
	// echoPort and gatewayPort are fixed inside a namespace and picked free
	// on loopback, where both networks share one port space.
	echoPort, gatewayPort int
}

// command returns a command that runs in the network.
func (n *crossnetNetwork) command(name string, args ...string) *exec.Cmd {
	if n.ns == "" {
		return exec.Command(name, args...)
	}
	return exec.Command("ip", append([]string{"netns", "exec", n.ns, name}, args...)...)
}

// crossnetTopology is both networks and where Horizon listens.
type crossnetTopology struct {
	isolated   bool // network namespaces: each network's pods are unreachable from the other
	east, west *crossnetNetwork
	horizonIP  string // where Horizon's xDS and certificate ports listen
}

// crossnetNSPrefix starts the names of the test's namespaces; the creator's
// process id follows, so that leftovers of a dead run can be recognised.
const crossnetNSPrefix = "hzn-xnet-"

// newCrossnetTopology sets up the networks: namespaces as root (torn down
// when the test ends), loopback addresses otherwise.
func newCrossnetTopology(t *testing.T) *crossnetTopology {
	t.Helper()
	if os.Geteuid() != 0 {
		return loopbackTopology(t)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Logf("running as root but without the ip command (%v): using loopback addresses", err)
		return loopbackTopology(t)
	}
	removeStaleNamespaces(t)
	// Root without the right to make namespaces (a restricted container):
	// loopback, as without root.
	probe := crossnetNSPrefix + fmt.Sprintf("%d-probe", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		t.Logf("running as root but cannot create a network namespace (%v: %s): using loopback addresses", err, strings.TrimSpace(string(out)))
		return loopbackTopology(t)
	}
	exec.Command("ip", "netns", "del", probe).Run()
	id := fmt.Sprintf("%d-%04x", os.Getpid(), rand.IntN(1<<16))
	suffix := id[len(id)-4:] // interface names have at most 15 bytes
	top := &crossnetTopology{
		isolated:  true,
		horizonIP: "10.91.0.1",
		east:      &crossnetNetwork{name: "east", ns: crossnetNSPrefix + id + "-east", gateway: "10.93.0.1", echo: "10.91.1.2", echoPort: 7070, gatewayPort: 15443},
		west:      &crossnetNetwork{name: "west", ns: crossnetNSPrefix + id + "-west", gateway: "10.93.0.2", echo: "10.92.1.2", echoPort: 7070, gatewayPort: 15443},
	}
	for _, ns := range []string{top.east.ns, top.west.ns} {
		ipCmd(t, "netns", "add", ns)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v\n%s", ns, err, out)
			}
		})
		ipCmd(t, "-n", ns, "link", "set", "lo", "up")
	}
	// Deleting a namespace deletes the veth ends in it, and so their peers.
	eastRoot, westRoot, eastGW, westGW := "hxe"+suffix, "hxw"+suffix, "hxge"+suffix, "hxgw"+suffix
	// east <-> root
	ipCmd(t, "link", "add", eastRoot, "type", "veth", "peer", "name", "eth0", "netns", top.east.ns)
	ipCmd(t, "addr", "add", "10.91.0.1/24", "dev", eastRoot)
	ipCmd(t, "link", "set", eastRoot, "up")
	ipCmd(t, "-n", top.east.ns, "addr", "add", "10.91.0.2/24", "dev", "eth0")
	ipCmd(t, "-n", top.east.ns, "link", "set", "eth0", "up")
	// west <-> root
	ipCmd(t, "link", "add", westRoot, "type", "veth", "peer", "name", "eth0", "netns", top.west.ns)
	ipCmd(t, "addr", "add", "10.92.0.1/24", "dev", westRoot)
	ipCmd(t, "link", "set", westRoot, "up")
	ipCmd(t, "-n", top.west.ns, "addr", "add", "10.92.0.2/24", "dev", "eth0")
	ipCmd(t, "-n", top.west.ns, "link", "set", "eth0", "up")
	// West reaches Horizon, on 10.91.0.1, through the root namespace.
	ipCmd(t, "-n", top.west.ns, "route", "add", "10.91.0.1/32", "via", "10.92.0.1")
	// The link between the gateways: each network reaches the other's
	// gateway address, and nothing else of it.
	ipCmd(t, "-n", top.east.ns, "link", "add", eastGW, "type", "veth", "peer", "name", westGW, "netns", top.west.ns)
	ipCmd(t, "-n", top.east.ns, "addr", "add", "10.93.0.1/24", "dev", eastGW)
	ipCmd(t, "-n", top.east.ns, "link", "set", eastGW, "up")
	ipCmd(t, "-n", top.west.ns, "addr", "add", "10.93.0.2/24", "dev", westGW)
	ipCmd(t, "-n", top.west.ns, "link", "set", westGW, "up")
	// Horizon probes the gateways from the root namespace.
	ipCmd(t, "route", "add", "10.93.0.1/32", "via", "10.91.0.2")
	ipCmd(t, "route", "add", "10.93.0.2/32", "via", "10.92.0.2")
	// Pods live on their namespace's loopback device.
	ipCmd(t, "-n", top.east.ns, "addr", "add", "10.91.1.2/32", "dev", "lo")
	ipCmd(t, "-n", top.west.ns, "addr", "add", "10.92.1.2/32", "dev", "lo")
	return top
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// removeStaleNamespaces deletes namespaces left by runs whose process is gone
// (a test killed before its cleanup).
func removeStaleNamespaces(t *testing.T) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		ns, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(ns, crossnetNSPrefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Logf("stale namespace %s: %v\n%s", ns, err, out)
		} else {
			t.Logf("deleted stale namespace %s", ns)
		}
	}
}

// loopbackTopology puts each network in its own 127.x range. Every address
// is reachable from every process, and the two echo servers, both listening
// on every address, need ports of their own.
func loopbackTopology(t *testing.T) *crossnetTopology {
	t.Helper()
	top := &crossnetTopology{
		horizonIP: "127.0.0.1",
		east:      &crossnetNetwork{name: "east", gateway: "127.91.0.2", echo: "127.91.1.2"},
		west:      &crossnetNetwork{name: "west", gateway: "127.92.0.2", echo: "127.92.1.2"},
	}
	for _, n := range []*crossnetNetwork{top.east, top.west} {
		n.echoPort = freePort(t, "0.0.0.0")
		n.gatewayPort = freePort(t, n.gateway)
	}
	return top
}

// freePort returns a port that was free on ip a moment ago.
func freePort(t *testing.T, ip string) int {
	t.Helper()
	lis, err := net.Listen("tcp4", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Skipf("cannot listen on %s (this test needs 127.91.0.0/16 and 127.92.0.0/16, which Linux routes to loopback): %v", ip, err)
	}
	defer lis.Close()
	return lis.Addr().(*net.TCPAddr).Port
}
