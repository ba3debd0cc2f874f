package capture

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/horizonmesh/horizon/internal/testkit"
)

// The test binary doubles as the processes the capture test runs inside
// network namespaces (ip netns exec): a witness, and a client that dials
// as a given uid.
const helperEnv = "HORIZON_CAPTURE_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "witness":
		var ls []Listener
		for f := range strings.SplitSeq(os.Getenv("LISTEN"), ",") {
			name, addr, _ := strings.Cut(f, "=")
			ls = append(ls, Listener{Name: name, Address: addr})
		}
		ctx, stop := context.WithCancel(context.Background())
		defer stop()
		err := Witness(ctx, os.Stdout, ls, func([]net.Addr) { fmt.Println("ready") })
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	case "dial":
		uid, _ := strconv.Atoi(os.Getenv("DIAL_UID"))
		if err := syscall.Setuid(uid); err != nil {
			fmt.Println("err setuid:", err)
			os.Exit(1)
		}
		c, err := net.DialTimeout("tcp", os.Getenv("DIAL_ADDR"), 3*time.Second)
		if err != nil {
			fmt.Println("err", err)
			os.Exit(1)
		}
		c.Close()
		fmt.Println("ok")
		os.Exit(0)
	}
}

// TestCaptureInNetworkNamespace programs the rules in a pod-like network
// namespace wired by a veth pair to a peer namespace, and shows where real
// connections land: on the witness at 15001/15006 with their original
// destination when captured, on their real destination when not.
func TestCaptureInNetworkNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and nftables rules")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2)")
	}
	id := strconv.Itoa(os.Getpid() % 100000)
	pod, peer := "hzc-pod-"+id, "hzc-peer-"+id
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	ip("netns", "add", pod)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", pod).Run() })
	ip("netns", "add", peer)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", peer).Run() })
	a, b := "hzca"+id, "hzcb"+id
	ip("link", "add", a, "type", "veth", "peer", "name", b)
	ip("link", "set", a, "netns", pod)
	ip("link", "set", b, "netns", peer)
	ip("-n", pod, "addr", "add", "10.99.0.2/24", "dev", a)
	ip("-n", pod, "link", "set", a, "up")
	ip("-n", pod, "link", "set", "lo", "up")
	ip("-n", pod, "route", "add", "default", "via", "10.99.0.1")
	ip("-n", peer, "addr", "add", "10.99.0.1/24", "dev", b)
	ip("-n", peer, "addr", "add", "10.1.2.3/32", "dev", b)
	ip("-n", peer, "addr", "add", "10.1.2.4/32", "dev", b)
	ip("-n", peer, "link", "set", b, "up")
	ip("-n", peer, "link", "set", "lo", "up")

	spec := Spec{
		InboundPort: 15006, OutboundPort: 15001, ProxyUID: 1337,
		AllInbound: true, ExcludeInboundPorts: []uint16{7071},
		AllOutbound: true, ExcludeOutboundPorts: []uint16{9090},
		ExcludeOutboundIPRanges: []netip.Prefix{netip.MustParsePrefix("10.1.2.4/32")},
	}
	ns, err := os.Open("/run/netns/" + pod)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	if err := Apply(conn, spec); err != nil {
		t.Fatalf("nf_tables does not work in this kernel or namespace: %v", err)
	}
	// Idempotent: a second run replaces the table, it adds no rules.
	if err := Apply(conn, spec); err != nil {
		t.Fatal(err)
	}
	table := &nftables.Table{Family: nftables.TableFamilyINet, Name: Table}
	var got int
	for _, chain := range []string{ChainInbound, ChainOutbound} {
		rules, err := conn.GetRules(table, &nftables.Chain{Name: chain, Table: table})
		if err != nil {
			t.Fatal(err)
		}
		got += len(rules)
	}
	if want := len(Rules(spec)); got != want {
		t.Fatalf("after two Apply: %d rules in table inet %s, want %d", got, Table, want)
	}

	// What the kernel holds is what --dry-run prints.
	if _, err := exec.LookPath("nft"); err == nil {
		out, err := exec.Command("ip", "netns", "exec", pod, "nft", "list", "table", "inet", Table).CombinedOutput()
		if err != nil {
			t.Fatalf("nft list: %v: %s", err, out)
		}
		if string(out) != Render(spec) {
			t.Errorf("the kernel's table:\n%s\nRender:\n%s", out, Render(spec))
		}
	}

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// start runs a helper inside a namespace.
	start := func(netns string, env ...string) (*exec.Cmd, *testkit.Buffer) {
		out := &testkit.Buffer{}
		cmd := exec.Command("ip", "netns", "exec", netns, self, "-test.run=^$")
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, out
	}
	witness := func(netns, listen string) *testkit.Buffer {
		cmd, out := start(netns, helperEnv+"=witness", "LISTEN="+listen)
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		testkit.Eventually(t, 10*time.Second, netns+" witness ready", func() bool { return strings.Contains(out.String(), "ready\n") })
		return out
	}
	inPod := witness(pod, "outbound=0.0.0.0:15001,inbound=0.0.0.0:15006,app=0.0.0.0:7071,local=127.0.0.1:7072")
	// The peer has no nat rules, so no conntrack entry: its lines say orig=-.
	inPeer := witness(peer, "peer=0.0.0.0:8080,peer=0.0.0.0:9090")

	dial := func(netns string, uid int, addr string) {
		t.Helper()
		cmd, out := start(netns, helperEnv+"=dial", "DIAL_UID="+strconv.Itoa(uid), "DIAL_ADDR="+addr)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("dial %s from %s as uid %d: %v: %s", addr, netns, uid, err, out)
		}
	}
	lines := func(b *testkit.Buffer) int { return strings.Count(b.String(), "\nwitness ") }
	for _, c := range []struct {
		name      string
		netns     string
		uid       int
		addr      string
		lands     *testkit.Buffer
		line      string
		untouched *testkit.Buffer
	}{
		{"outbound from an app uid is captured", pod, 1000, "10.1.2.3:8080", inPod, "witness outbound orig=10.1.2.3:8080 local=", inPeer},
		{"inbound to the pod IP is captured", peer, 0, "10.99.0.2:7070", inPod, "witness inbound orig=10.99.0.2:7070 local=", inPeer},
		{"the proxy uid is not captured", pod, 1337, "10.1.2.3:8080", inPeer, "local=10.1.2.3:8080 from=10.99.0.2:", inPod},
		{"an excluded outbound port is not captured", pod, 1000, "10.1.2.3:9090", inPeer, "local=10.1.2.3:9090 from=10.99.0.2:", inPod},
		{"an excluded outbound range is not captured", pod, 1000, "10.1.2.4:8080", inPeer, "local=10.1.2.4:8080 from=10.99.0.2:", inPod},
		{"loopback is not captured", pod, 1000, "127.0.0.1:7072", inPod, "witness local orig=127.0.0.1:7072 local=127.0.0.1:7072", inPeer},
		{"an excluded inbound port is not captured", peer, 0, "10.99.0.2:7071", inPod, "witness app orig=10.99.0.2:7071 local=10.99.0.2:7071", inPeer},
	} {
		t.Run(c.name, func(t *testing.T) {
			before, other := strings.Count(c.lands.String(), c.line), lines(c.untouched)
			dial(c.netns, c.uid, c.addr)
			testkit.Eventually(t, 5*time.Second, c.line, func() bool { return strings.Count(c.lands.String(), c.line) == before+1 })
			if n := lines(c.untouched); n != other {
				t.Fatalf("the connection also reached the other side:\npod:\n%s\npeer:\n%s", inPod, inPeer)
			}
		})
	}
	if t.Failed() {
		t.Logf("rules:\n%s\npod:\n%s\npeer:\n%s", Render(spec), inPod, inPeer)
	}
}
