package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
	"github.com/horizonmesh/horizon/internal/testkit"
	"github.com/horizonmesh/horizon/internal/testkit/certtest"
	"github.com/horizonmesh/horizon/internal/testkit/xdstest"
)

// healthEndpoint is a real HTTP health endpoint the test switches.
func healthEndpoint(t *testing.T) (port int, ok *atomic.Bool) {
	t.Helper()
	ok = &atomic.Bool{}
	ok.Store(true)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ok.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
	})}
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Close() })
	return lis.Addr().(*net.TCPAddr).Port, ok
}

// edsHealth asks Horizon, as a sidecar of cluster, for one assignment and
// returns address:port -> health status.
func edsHealth(t *testing.T, addr, cluster, name string) (map[string]string, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	resp, err := xdstest.Fetch(t, conn, &discoverypb.DiscoveryRequest{
		Node: xdstest.Node("probe-"+cluster, "CLUSTER_ID", cluster, "ROLE", "sidecar"), TypeUrl: resourcev3.EndpointType, ResourceNames: []string{name},
	})
	if err != nil || len(resp.GetResources()) == 0 {
		return nil, err
	}
	var cla endpoint.ClusterLoadAssignment
	if err := resp.GetResources()[0].UnmarshalTo(&cla); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, lle := range cla.GetEndpoints() {
		for _, lb := range lle.GetLbEndpoints() {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			out[net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))] = lb.GetHealthStatus().String()
		}
	}
	return out, nil
}

// TestE2EWorkloadAgent runs the real commands: `horizon serve --ca-dir`
// with a ClusterSet file holding a VM group, `horizon workload token`, and
// `horizon agent --join-token-file` as the VM's agent, with a real HTTP
// health endpoint. The VM joins over mutual TLS on loopback and gets the
// group's SVID; a sidecar on the VM network is sent the VM directly, one
// on east only vm-west's gateway; the health endpoint goes down and the VM
// is UNHEALTHY in both views, comes back, and once the agent is stopped
// it leaves the views after the group's grace period. The metrics count
// it per group and health.
func TestE2EWorkloadAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs horizon serve and horizon agent")
	}
	port, healthy := healthEndpoint(t)
	dir := t.TempDir()
	data, err := os.ReadFile("testdata/workloads/e2e.yaml")
	if err != nil {
		t.Fatal(err)
	}
	csFile := filepath.Join(dir, "clusterset.yaml")
	os.WriteFile(csFile, []byte(strings.ReplaceAll(string(data), "PROBE_PORT", strconv.Itoa(port))), 0o644)
	caDir := filepath.Join(dir, "ca")
	files, err := certtest.Root(t, spiffeid.RequireTrustDomainFromString("cluster.local")).Files()
	if err != nil {
		t.Fatal(err)
	}
	if err := certs.WriteFiles(caDir, files, true); err != nil {
		t.Fatal(err)
	}

	bin := buildHorizon(t)
	mtls := freeLoopbackAddr(t)
	h := startHorizon(t, bin, "--clusterset", csFile, "--ca-dir", caDir, "--mtls-address", mtls,
		"--gateway-probe-interval", "0", "--workload-report-interval", "200ms")

	tok, err := exec.Command(bin, "workload", "token", "--ca-dir", caDir, "--group", "shop/ratings-vms", "--ttl", "10m").Output()
	if err != nil {
		t.Fatalf("horizon workload token: %v", err)
	}
	tokenFile := filepath.Join(dir, "join.token")
	os.WriteFile(tokenFile, tok, 0o600)
	certDir := filepath.Join(dir, "vm-certs")
	agent := exec.Command(bin, "agent", "--mtls-address", mtls, "--ca-bundle", filepath.Join(caDir, certs.RootCertFile), "--cert-dir", certDir,
		"--join-token-file", tokenFile, "--workload-group", "shop/ratings-vms", "--workload-address", "10.2.0.5", "--workload-label", "host=vm-5")
	agentOut := &testkit.Buffer{}
	agent.Stdout, agent.Stderr = agentOut, agentOut
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	agentDone := make(chan struct{})
	go func() { agent.Wait(); close(agentDone) }()
	stopAgent := func() {
		agent.Process.Signal(syscall.SIGTERM)
		<-agentDone
	}
	t.Cleanup(func() {
		select {
		case <-agentDone:
		default:
			stopAgent()
		}
		if t.Failed() {
			t.Logf("horizon agent:\n%s", agentOut)
		}
	})

	name := discovery.ClusterName(discovery.Host(discovery.ServiceKey{Namespace: "shop", Name: "ratings"}, discovery.ClusterSetWide), 8080)
	views := func(what string, vmWest, east map[string]string) {
		t.Helper()
		testkit.Eventually(t, e2eWait, what, func() error {
			for cluster, want := range map[string]map[string]string{"vm-west": vmWest, "east-1": east} {
				got, err := edsHealth(t, h.xdsAddr, cluster, name)
				if err == nil && !maps.Equal(got, want) {
					err = fmt.Errorf("%s: got %v, want %v", cluster, got, want)
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
	}
	views("VM joined and ready",
		map[string]string{"10.2.0.5:8080": "HEALTHY", "10.0.0.100:15443": "HEALTHY"},
		map[string]string{"10.0.0.2:8080": "HEALTHY", "10.2.0.100:15443": "HEALTHY"})
	if _, err := os.Stat(filepath.Join(certDir, certs.SVIDFile)); err != nil {
		t.Errorf("the agent wrote no SVID: %v", err)
	}
	metric := func(want string) {
		t.Helper()
		testkit.Eventually(t, e2eWait, "metric "+want, func() error {
			resp, err := h.http.Get("http://" + h.httpAddr + "/metrics")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if !strings.Contains(string(body), want) {
				return fmt.Errorf("no %q", want)
			}
			return nil
		})
	}
	metric(`horizon_workloads{group="shop/ratings-vms",health="ready"} 1`)
	resp, err := h.http.Get("http://" + h.httpAddr + "/debug/workloads")
	if err != nil {
		t.Fatal(err)
	}
	var debug struct {
		Instances []struct {
			Group, Address string
			Ready          bool
			Labels         map[string]string
		}
	}
	err = json.NewDecoder(resp.Body).Decode(&debug)
	resp.Body.Close()
	if err != nil || len(debug.Instances) != 1 || debug.Instances[0].Group != "shop/ratings-vms" || debug.Instances[0].Address != "10.2.0.5" ||
		!debug.Instances[0].Ready || debug.Instances[0].Labels["host"] != "vm-5" {
		t.Errorf("/debug/workloads: %+v (%v)", debug, err)
	}

	healthy.Store(false)
	views("VM failing its probe",
		map[string]string{"10.2.0.5:8080": "UNHEALTHY", "10.0.0.100:15443": "HEALTHY"},
		map[string]string{"10.0.0.2:8080": "HEALTHY", "10.2.0.100:15443": "UNHEALTHY"})
	metric(`horizon_workloads{group="shop/ratings-vms",health="not_ready"} 1`)

	healthy.Store(true)
	views("VM back",
		map[string]string{"10.2.0.5:8080": "HEALTHY", "10.0.0.100:15443": "HEALTHY"},
		map[string]string{"10.0.0.2:8080": "HEALTHY", "10.2.0.100:15443": "HEALTHY"})

	stopAgent()
	views("VM gone after its grace period",
		map[string]string{"10.0.0.100:15443": "HEALTHY"},
		map[string]string{"10.0.0.2:8080": "HEALTHY"})
	metric(`horizon_workload_removals_total{reason="grace period passed"} 1`)
}

// TestE2EWorkloadsWithMembers: `horizon serve --member ... --workloads
// FILE` serves a Kubernetes member together with workload groups: one on
// a VM network the file declares, one on the member itself. Each network
// gets its own pods and VMs directly and the other's gateway weighted by
// both; an edit of the workloads file that drops a group takes its VM out
// of the views.
func TestE2EWorkloadsWithMembers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	cl := kubetest.Start(t, "east")
	east := cl[0]
	kubeSeed(t, east, "echo", true, "10.0.1.1")
	kubeGateway(t, east, "net-east", "198.51.100.1")
	data, err := os.ReadFile("testdata/workloads/members.yaml")
	if err != nil {
		t.Fatal(err)
	}
	wf := filepath.Join(t.TempDir(), "workloads.yaml")
	os.WriteFile(wf, data, 0o644)

	bin := buildHorizon(t)
	h := startHorizon(t, bin, "--member", fmt.Sprintf("name=east,network=net-east,kubeconfig=%s", adminKubeconfigFile(t, east.Config)),
		"--workloads", wf, "--gateway-probe-interval", "0")
	echo := "outbound_.7070_._.echo.demo.svc.clusterset.local"
	waitEDS(t, h, "east", echo, map[string]string{"10.0.1.1:7070": "1@0", "10.0.1.50:7070": "1@0", "203.0.113.10:15443": "1@0"})
	// vm-net is in region eu-west, east in none: east's gateway is a
	// lower priority there.
	waitEDS(t, h, "vm-net", echo, map[string]string{"10.9.0.5:7070": "1@0", "198.51.100.1:15443": "2@1"})

	// Drop the group on the member: its VM leaves every view.
	tmp := wf + ".tmp"
	os.WriteFile(tmp, data[:strings.Index(string(data), "  - name: echo-east")], 0o644)
	if err := os.Rename(tmp, wf); err != nil {
		t.Fatal(err)
	}
	waitEDS(t, h, "east", echo, map[string]string{"10.0.1.1:7070": "1@0", "203.0.113.10:15443": "1@0"})
	waitEDS(t, h, "vm-net", echo, map[string]string{"10.9.0.5:7070": "1@0", "198.51.100.1:15443": "1@1"})
}
