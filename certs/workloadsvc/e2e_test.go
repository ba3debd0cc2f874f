package workloadsvc

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/certs/agent"
	"github.com/horizonmesh/horizon/certs/certsvc"
	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/file"
	"github.com/horizonmesh/horizon/discovery/workload"
	"github.com/horizonmesh/horizon/internal/testkit/certtest"
	"github.com/horizonmesh/horizon/xds"
	"github.com/horizonmesh/horizon/xds/bootstrap"
)

var (
	td        = spiffeid.RequireTrustDomainFromString("cluster.local")
	horizonID = spiffeid.RequireFromString("spiffe://cluster.local/ns/horizon-system/sa/horizon")
	vmsGroup  = discovery.ServiceKey{Namespace: "shop", Name: "ratings-vms"}
)

// health is a real HTTP health endpoint whose answer the test switches.
type health struct {
	ok   atomic.Bool
	hang atomic.Bool
	port int
}

func startHealth(t *testing.T) *health {
	t.Helper()
	h := &health{}
	h.ok.Store(true)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.port = lis.Addr().(*net.TCPAddr).Port
	release := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		if h.hang.Load() {
			select { // a probe that hangs: it answers only when the test ends
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		if !h.ok.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	})}
	go srv.Serve(lis)
	t.Cleanup(func() { close(release); srv.Close() })
	return h
}

// horizon is the registration API the way serve runs it: Horizon as the
// CA on a mutual-TLS port on loopback, the registry merging into the
// ClusterSet of testdata/clusterset.yaml.
type horizon struct {
	addr    string
	root    *certs.CA
	key     []byte
	reg     *workload.Registry
	metrics *workload.Metrics

	mu      sync.Mutex
	latest  *discovery.ClusterSet
	changed chan struct{}
}

func startHorizon(t *testing.T, probePort int) *horizon {
	t.Helper()
	return startHorizonWith(t, probePort, nil)
}

// startHorizonWith is startHorizon with the service's Config changed by
// configure (when not nil) before the service is made.
func startHorizonWith(t *testing.T, probePort int, configure func(*Config)) *horizon {
	t.Helper()
	h := &horizon{root: certtest.Root(t, td), key: make([]byte, 32), changed: make(chan struct{}, 1), metrics: workload.NewMetrics(nil)}
	rand.Read(h.key)
	data, err := os.ReadFile("testdata/clusterset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cs, err := file.Parse("clusterset.yaml", []byte(strings.ReplaceAll(string(data), "PROBE_PORT", strconv.Itoa(probePort))))
	if err != nil {
		t.Fatal(err)
	}
	h.reg = workload.New(workload.Options{ReportInterval: 100 * time.Millisecond, Metrics: h.metrics, Out: func(cs *discovery.ClusterSet) {
		h.mu.Lock()
		h.latest = cs
		h.mu.Unlock()
		select {
		case h.changed <- struct{}{}:
		default:
		}
	}})
	h.reg.In(cs)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.reg.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	signer := func(string) (*certs.CA, error) { return h.root, nil }
	self := certsvc.NewSelf(horizonID, time.Hour, func() (*certs.CA, error) { return h.root, nil }, time.Now)
	cfg := Config{TrustDomain: td, Signer: signer, JoinKey: h.key, Registry: h.reg, Reserved: []spiffeid.ID{horizonID}, Refused: h.metrics.Refused, Log: slog.New(slog.DiscardHandler)}
	if configure != nil {
		configure(&cfg)
	}
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(certsvc.ServerTLS(self, self, td, time.Now))))
	svc.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = lis.Addr().String()
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return h
}

func (h *horizon) cs() *discovery.ClusterSet {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.latest
}

// await waits until cond holds for the latest ClusterSet. It fails the
// test after a minute: a bound for a stuck test, not a performance claim.
func (h *horizon) await(t *testing.T, what string, cond func(*discovery.ClusterSet) bool) {
	t.Helper()
	deadline := time.After(time.Minute)
	for !cond(h.cs()) {
		select {
		case <-h.changed:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("%s: not reached", what)
		}
	}
}

func (h *horizon) token(t *testing.T, group string, ttl time.Duration) string {
	t.Helper()
	tok, err := IssueToken(h.key, td.Name(), group, ttl, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// startVM runs `horizon agent --join-token-file` in process.
func (h *horizon) startVM(t *testing.T, token, group, address string) (*agent.VM, func()) {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "join.token")
	os.WriteFile(tokenFile, []byte(token+"\n"), 0o600)
	vm, err := agent.NewVM(agent.VMConfig{
		Config:        agent.Config{Address: h.addr, TrustDomain: td, ServerID: horizonID, Bundle: []*x509.Certificate{h.root.Root()}, Dir: t.TempDir(), Log: slog.New(slog.DiscardHandler)},
		JoinTokenFile: tokenFile, Group: group, Address: address, Labels: map[string]string{"host": "vm-5"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { vm.Run(ctx); close(done) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return vm, stop
}

// endpoint returns the VM endpoint of shop/ratings in vm-west.
func vmEndpoint(cs *discovery.ClusterSet, addr string) (discovery.Endpoint, bool) {
	c, _ := cs.Cluster("vm-west")
	if c == nil {
		return discovery.Endpoint{}, false
	}
	s, ok := c.Service(discovery.ServiceKey{Namespace: "shop", Name: "ratings"})
	if !ok {
		return discovery.Endpoint{}, false
	}
	i := slices.IndexFunc(s.Endpoints, func(e discovery.Endpoint) bool { return e.Address == addr })
	if i < 0 {
		return discovery.Endpoint{}, false
	}
	return s.Endpoints[i], true
}

// views renders the EDS of ratings' ClusterSet host for a proxyless client
// on network east (the VM only through vm-west's gateway) and a sidecar on
// the VM network (the VM directly), as "address:port health" per
// endpoint.
func views(t *testing.T, cs *discovery.ClusterSet) (east, west []string) {
	t.Helper()
	render := func(p bootstrap.Proxy) []string {
		node, err := p.Node()
		if err != nil {
			t.Fatal(err)
		}
		px, err := xds.ResolveNode(node, cs)
		if err != nil {
			t.Fatal(err)
		}
		res, err := xds.Render(cs, px.GroupFor(nil), xds.Policy{TrustDomain: td})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, cla := range res.Endpoints {
			if h, _, err := discovery.ParseClusterName(cla.GetClusterName()); err != nil || h != "ratings.shop.svc.clusterset.local" {
				continue
			}
			for _, lle := range cla.GetEndpoints() {
				for _, lb := range lle.GetLbEndpoints() {
					sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
					out = append(out, fmt.Sprintf("%s:%d %s", sa.GetAddress(), sa.GetPortValue(), lb.GetHealthStatus()))
				}
			}
		}
		slices.Sort(out)
		return out
	}
	east = render(bootstrap.Proxy{ID: "client", Role: "sidecar", Cluster: "east-1", Namespace: "shop", ServiceAccount: "client"})
	west = render(bootstrap.Proxy{ID: "vm-client", Role: "sidecar", Cluster: "vm-west", Namespace: "shop", ServiceAccount: "ratings"})
	return east, west
}

// TestVMJoinsAndLeavesEveryView is the whole path over mutual TLS on
// loopback: a VM agent joins with its group's token and gets the group's
// SVID, its HTTP probe passes and the VM is a ready endpoint, reached
// directly on its own network and through vm-west's gateway from east;
// the health endpoint goes down and the VM leaves every view (not ready);
// it comes back; the agent stops and the VM is not ready, then removed
// after the grace period.
func TestVMJoinsAndLeavesEveryView(t *testing.T) {
	hs := startHealth(t)
	h := startHorizon(t, hs.port)
	east0, west0 := views(t, h.cs())
	vm, stop := h.startVM(t, h.token(t, "shop/ratings-vms", time.Hour), "shop/ratings-vms", "10.2.0.5")

	h.await(t, "VM ready", func(cs *discovery.ClusterSet) bool { e, ok := vmEndpoint(cs, "10.2.0.5"); return ok && e.Ready })
	svid, err := vm.Agent().GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	if svid.ID.String() != "spiffe://cluster.local/ns/shop/sa/ratings" {
		t.Errorf("SVID %s, want the group's service account", svid.ID)
	}
	if got := certs.ClusterOf(append(svid.Certificates, h.root.Root())); got != "vm-west" {
		t.Errorf("SVID bound to cluster %q, want the group's vm-west", got)
	}
	e, _ := vmEndpoint(h.cs(), "10.2.0.5")
	if e.Labels["host"] != "vm-5" || e.ServiceAccount != "ratings" || !e.MTLS || !strings.Contains(e.Workload, "shop/ratings-vms") {
		t.Errorf("endpoint %+v", e)
	}
	east, west := views(t, h.cs())
	// East reaches the VM network only through its gateway; the VM
	// network reaches the VM directly, and east-1's pod through east's
	// gateway.
	if !slices.Contains(east, "10.2.0.100:15443 HEALTHY") || slices.ContainsFunc(east, func(s string) bool { return strings.HasPrefix(s, "10.2.0.5:") }) {
		t.Errorf("east's view %v: want vm-west's gateway and never the VM's address", east)
	}
	if !slices.Contains(west, "10.2.0.5:8080 HEALTHY") {
		t.Errorf("vm-west's view %v: want the VM directly", west)
	}
	if slices.Contains(east0, "10.2.0.100:15443 HEALTHY") || slices.Contains(west0, "10.2.0.5:8080 HEALTHY") {
		t.Errorf("before the join the views had the VM: %v %v", east0, west0)
	}

	// The health endpoint goes down.
	hs.ok.Store(false)
	h.await(t, "VM not ready", func(cs *discovery.ClusterSet) bool { e, ok := vmEndpoint(cs, "10.2.0.5"); return ok && !e.Ready })
	east, west = views(t, h.cs())
	// With nothing ready behind it, vm-west's gateway stays in east's
	// view as UNHEALTHY (the translator's rule for a network whose
	// endpoints are all not ready): no traffic goes there.
	if !slices.Contains(east, "10.2.0.100:15443 UNHEALTHY") {
		t.Errorf("east's view %v: want vm-west's gateway UNHEALTHY", east)
	}
	if slices.Contains(west, "10.2.0.5:8080 HEALTHY") {
		t.Errorf("vm-west's view %v: the failing VM is HEALTHY", west)
	}
	if !slices.Contains(west, "10.2.0.5:8080 UNHEALTHY") {
		t.Errorf("vm-west's view %v: want the failing VM UNHEALTHY", west)
	}

	// It comes back.
	hs.ok.Store(true)
	h.await(t, "VM ready again", func(cs *discovery.ClusterSet) bool { e, ok := vmEndpoint(cs, "10.2.0.5"); return ok && e.Ready })

	// A probe that hangs fails at its timeout.
	hs.hang.Store(true)
	h.await(t, "VM not ready on a hanging probe", func(cs *discovery.ClusterSet) bool { e, ok := vmEndpoint(cs, "10.2.0.5"); return ok && !e.Ready })
	hs.hang.Store(false)
	h.await(t, "VM ready after the hang", func(cs *discovery.ClusterSet) bool { e, ok := vmEndpoint(cs, "10.2.0.5"); return ok && e.Ready })

	// The agent goes away: not ready once its reports are stale, removed
	// after the group's grace period (3s).
	stop()
	h.await(t, "VM not ready without its agent", func(cs *discovery.ClusterSet) bool { e, ok := vmEndpoint(cs, "10.2.0.5"); return ok && !e.Ready })
	h.await(t, "VM removed after the grace period", func(cs *discovery.ClusterSet) bool { _, ok := vmEndpoint(cs, "10.2.0.5"); return !ok })
	if east, _ := views(t, h.cs()); !slices.Equal(east, east0) {
		t.Errorf("east's view %v after the VM left, want the one before it joined: %v", east, east0)
	}
}

func mustID(t *testing.T, s string) spiffeid.ID {
	t.Helper()
	id, err := spiffeid.FromString(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
