package main

// The cross-network route test: crossnet's two networks, Horizon, one
// `horizon gateway` per network and xDS-enabled grpc-go echo servers and
// client (examples/demo/app), with a policy file of route rules. A subset
// that only the other network runs is reached through that network's
// gateway, by the subset's SNI, with mutual TLS end to end; editing the
// policy moves the traffic to a cluster's share on the caller's network.

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"text/template"

	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/internal/testkit"
)

func TestE2ECrossNetworkRoutes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs horizon, its gateway and workloads; skipped with -short")
	}
	bin := buildHorizon(t)
	app := filepath.Join(t.TempDir(), "app")
	if out, err := exec.Command("go", "build", "-o", app, "../../examples/demo/app").CombinedOutput(); err != nil {
		t.Fatalf("go build examples/demo/app: %v\n%s", err, out)
	}
	top := newCrossnetTopology(t)
	if !top.isolated {
		t.Log("not root: both networks are 127.x ranges on one loopback device. NOT CHECKED: that east could not have reached west's pod directly")
	}
	caDir := filepath.Join(t.TempDir(), "ca")
	horizonCmd(t, bin, "ca", "init", "--trust-domain", "cluster.local", "--out", caDir)
	for _, c := range []string{"east-1", "west-1"} {
		horizonCmd(t, bin, "ca", "intermediate", "--cluster", c, "--root-dir", caDir, "--out", filepath.Join(caDir, c))
	}
	file := filepath.Join(t.TempDir(), "clusterset.yaml")
	tmpl := template.Must(template.ParseFiles(filepath.Join("testdata", "crossnet", "routes-clusterset.yaml.tmpl")))
	renderTemplate(t, tmpl, file, crossnetClusterSet{
		EastGateway: top.east.gateway, EastGatewayPort: top.east.gatewayPort, EastEcho: top.east.echo, EastEchoPort: top.east.echoPort,
		WestGateway: top.west.gateway, WestGatewayPort: top.west.gatewayPort, WestEcho: top.west.echo, WestEchoPort: top.west.echoPort,
	})
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	testkit.Copy(t, filepath.Join("testdata", "crossnet", "routes-v2.yaml"), policy)

	xdsAddr := net.JoinHostPort(top.horizonIP, strconv.Itoa(freePort(t, top.horizonIP)))
	mtlsAddr := net.JoinHostPort(top.horizonIP, strconv.Itoa(freePort(t, top.horizonIP)))
	h := startHorizon(t, bin, "--clusterset", file, "--policy", policy, "--ca-dir", caDir,
		"--xds-address", xdsAddr, "--mtls-address", mtlsAddr, "--plaintext-remote")
	h.xdsAddr = xdsAddr

	clientDir := workloadCerts(t, bin, top.east, caDir, "east-1", "client", mtlsAddr)
	eastEchoDir := workloadCerts(t, bin, top.east, caDir, "east-1", "echo", mtlsAddr)
	westEchoDir := workloadCerts(t, bin, top.west, caDir, "west-1", "echo", mtlsAddr)
	startEcho(t, bin, app, h, top.east, "east-1", eastEchoDir)
	startEcho(t, bin, app, h, top.west, "west-1", westEchoDir)
	startGateway(t, bin, h, top.west, "west-1")
	startGateway(t, bin, h, top.east, "east-1")

	client := startProc(t, "client in east-1", withEnv(top.east.command(app, "client", "--stdin", "--cert-dir", clientDir),
		"GRPC_XDS_BOOTSTRAP="+proxylessBootstrapFile(t, bin, h, "east-1", "client", clientDir),
		"GRPC_EXPERIMENTAL_XDS_SNI=true"))
	client.waitLine(t, "ready")
	clientNode := "proxyless~east-1~client"

	host := "echo.demo.svc.clusterset.local"
	v2SNI := discovery.SubsetClusterName(host, 7070, discovery.Subset{Name: "v2", Labels: map[string]string{"version": "v2"}})
	westGW := net.JoinHostPort(top.west.gateway, strconv.Itoa(top.west.gatewayPort))

	// 1. Every RPC goes to v2, which only west runs, though east's own
	// server is up: through west's gateway, which routes the subset's SNI.
	waitCalls(t, client, "west-1", "the route to subset v2")
	expectCalls(t, client, "west-1", "phase 1: subset v2, through west's gateway")
	waitTLS(t, client, westGW, v2SNI)
	for _, sni := range []string{
		discovery.SubsetClusterName(host, 7070, discovery.Subset{Name: "v1"}),        // no v1 pod in west
		discovery.SubsetClusterName(host, 7070, discovery.Subset{Name: "v9"}),        // no such subset
		discovery.SubsetClusterName(host, 7070, discovery.Subset{Cluster: "east-1"}), // another network's share
	} {
		if ok, f := client.ask(t, "tls "+westGW+" "+sni); ok {
			t.Errorf("west's gateway passed SNI %q through to %s", sni, strings.Join(f, " "))
		}
	}
	dump := configDumpOf(t, h, clientNode)
	if !strings.Contains(dump, quoteJSON(v2SNI)) || !strings.Contains(dump, quoteJSON(top.west.gateway)) {
		t.Errorf("the client's view lacks the v2 cluster %s or west's gateway:\n%s", v2SNI, dump)
	}
	if strings.Contains(dump, quoteJSON(top.west.echo)) {
		t.Errorf("the client's view holds west's pod address %s", top.west.echo)
	}

	// 2. The policy now sends everything to east-1's share: back home.
	tmp := policy + ".tmp"
	testkit.Copy(t, filepath.Join("testdata", "crossnet", "routes-east.yaml"), tmp)
	if err := os.Rename(tmp, policy); err != nil {
		t.Fatal(err)
	}
	waitCalls(t, client, "east-1", "the policy edit to east-1's share")
	expectCalls(t, client, "east-1", "phase 2: east-1's share")
}
