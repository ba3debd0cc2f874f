package chaos

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/horizonmesh/horizon/bench/load"
	"github.com/horizonmesh/horizon/discovery/kube"
	"github.com/horizonmesh/horizon/discovery/kube/kubetest"
)

// Long reports whether the long scenarios were asked for (CHAOS_LONG=1,
// `make chaos`).
func Long() bool { ok, _ := strconv.ParseBool(os.Getenv("CHAOS_LONG")); return ok }

// Options size an Env.
type Options struct {
	Members   int // member clusters (3 by default)
	Services  int // exported services in every member
	Endpoints int // endpoints of each service in each member
	Proxies   int // simulated sidecars, spread over the members
	NACKers   int // of which the first NACKers NACK every version
	Stuck     int // and the next Stuck stop reading when told
	Flags     []string
	// Bound is I3's: the longest a view may differ from the oracle.
	Bound time.Duration
	// Proxied puts a TCP proxy the suite can hang (Member.Hang) between
	// Horizon and every member's apiserver.
	Proxied bool
	// NoWatchCache starts the members' apiservers without their watch
	// cache, so that a watch resumed past an etcd compaction
	// (Cluster.CompactEtcd) is answered 410 Gone (F2/410).
	NoWatchCache bool
	// StaticWindow gives the proxies fixed 64 KiB HTTP/2 stream windows
	// (gRPC's BDP estimation off), as a slow Envoy's: a proxy that stops
	// reading then blocks Horizon's sends within a few pushes.
	StaticWindow bool
	// Replicas runs that many `horizon serve` replicas of the same members
	// (default 1); proxies reach them through a balancer (balancer.go).
	Replicas int
	// Conns is how many gRPC connections the proxies share (0: one per 50),
	// which the balancer spreads over the replicas.
	Conns int

	secrets bool
}

// Env is one scenario's world: members, Horizon, proxies, checks.
type Env struct {
	T          testing.TB
	Options    Options
	Members    []*Member
	Horizon    *Horizon   // the first replica
	Horizons   []*Horizon // every replica (Options.Replicas)
	Fleet      *load.Fleet
	Recorders  []*Recorder
	Ledger     *Ledger
	Violations *Violations
	Checker    *Checker

	address     string     // where proxies connect: Horizon, or a balancer over the replicas
	recMu       sync.Mutex // guards Recorders' growth (AddProxies)
	central     *kubetest.Cluster
	bin         string // horizon, for add-secret
	changes     int    // churn's count, for tests
	mu          sync.Mutex
	gone        map[string]bool
	stopChecker context.CancelFunc
	checkerDone chan struct{}
}

// New starts members, seeds them, starts `horizon serve` (bin) with every
// member and opts.Flags, waits for every proxy to match the oracle, and
// starts the checker. Everything stops at the test's end.
func New(t testing.TB, bin string, o Options) *Env {
	t.Helper()
	if o.Members == 0 {
		o.Members = 3
	}
	if o.Bound == 0 {
		o.Bound = 10 * time.Second
	}
	e := &Env{T: t, Options: o, Violations: &Violations{}, gone: map[string]bool{}, bin: bin}
	e.Ledger = &Ledger{addrs: map[string]bool{}, members: map[string]bool{}, removed: map[string]bool{}, owner: ownerOf}
	e.Members = StartMembers(t, o.Members, kubetest.Options{NoWatchCache: o.NoWatchCache})
	ctx := t.Context()
	for _, m := range e.Members {
		if o.Proxied {
			m.proxied(t)
		}
		for s := range o.Services {
			if err := m.AddService(ctx, s, o.Endpoints, true); err != nil {
				t.Fatal(err)
			}
		}
	}
	flags := []string{"--gateway-probe-interval", "0", "--mcs-controller=false"}
	if o.secrets {
		e.central = kubetest.Start(t, "central")[0]
		path := filepath.Join(t.TempDir(), "central.kubeconfig")
		if err := kubetest.WriteKubeconfig(path, e.central.Config); err != nil {
			t.Fatal(err)
		}
		if _, err := e.central.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "horizon-system"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, m := range e.Members {
			if err := addSecret(ctx, bin, m, e.central); err != nil {
				t.Fatal(err)
			}
		}
		flags = append(flags, "--member-secrets-namespace", "horizon-system", "--kubeconfig", path)
	} else {
		for _, m := range e.Members {
			flags = append(flags, "--member", m.MemberFlag())
		}
	}
	replicas := max(o.Replicas, 1)
	for range replicas {
		h, err := NewHorizon(bin, append(flags, o.Flags...)...)
		if err != nil {
			t.Fatal(err)
		}
		e.Horizons = append(e.Horizons, h)
		if err := h.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				// What Horizon itself believes, before it stops: the members'
				// states and the ClusterSet it serves.
				for _, page := range []string{"/debug/members", "/debug/clusterset"} {
					code, body, err := h.get(context.Background(), page)
					t.Logf("horizon serve %s %s: %d %v\n%s", h.XDS, page, code, err, tail(string(body), 32000))
				}
			}
			if err := h.Signal(syscall.SIGTERM, 20*time.Second); err != nil {
				t.Error(err)
			}
			if t.Failed() {
				t.Logf("horizon serve %v:\n%s", h.Flags, tail(h.Out.String(), 8000))
			}
		})
	}
	e.Horizon = e.Horizons[0]
	for _, h := range e.Horizons {
		if err := h.Ready(ctx, 60*time.Second); err != nil {
			t.Fatalf("%v\n%s", err, h.Out)
		}
	}
	e.address = e.Horizon.XDS
	if replicas > 1 {
		var targets []string
		for _, h := range e.Horizons {
			targets = append(targets, h.XDS)
		}
		lb, err := newBalancer(targets...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(lb.Close)
		e.address = lb.Addr()
	}
	e.Fleet = e.newFleet(o.Proxies, o.NACKers, o.Stuck)
	e.Checker = &Checker{env: e, Interval: 500 * time.Millisecond, Bound: o.Bound,
		last: map[string]Objects{}, since: map[*Recorder]time.Time{}, reported: map[*Recorder]bool{}}
	return e
}

// newFleet makes a fleet of n proxies, spread over the members, connected
// through e.address, with a recorder each (the first nackers NACK, the next
// stuck stop reading when told).
func (e *Env) newFleet(n, nackers, stuck int) *load.Fleet {
	e.T.Helper()
	o := e.Options
	var refs []load.ClusterRef
	for _, m := range e.Members {
		refs = append(refs, load.ClusterRef{Name: m.Name, Network: m.Network})
	}
	fc := load.FleetConfig{Address: e.address, Proxies: n, Clusters: refs, Conns: o.Conns}
	if o.StaticWindow {
		fc.DialOptions = []grpc.DialOption{grpc.WithInitialWindowSize(64 << 10), grpc.WithInitialConnWindowSize(16 << 20)}
	}
	fleet, err := load.NewFleet(fc)
	if err != nil {
		e.T.Fatal(err)
	}
	var recs []*Recorder
	for i, p := range fleet.Proxies() {
		b := ACK
		switch {
		case i < nackers:
			b = NACK
		case i < nackers+stuck:
			b = Stuck
		}
		r := newRecorder(e, p.Identity(), b)
		p.Observe(r.observe)
		recs = append(recs, r)
	}
	e.recMu.Lock()
	e.Recorders = append(e.Recorders, recs...)
	e.recMu.Unlock()
	return fleet
}

// AddProxies connects n more proxies that never held anything (checked like
// the others from now on) and stops them at the test's end.
func (e *Env) AddProxies(n int) {
	e.T.Helper()
	f := e.newFleet(n, 0, 0)
	if err := f.Start(context.Background()); err != nil {
		e.T.Fatal(err)
	}
	e.T.Cleanup(f.Stop)
}

// recorders returns the recorders so far (AddProxies may add more).
func (e *Env) recorders() []*Recorder {
	e.recMu.Lock()
	defer e.recMu.Unlock()
	return slices.Clip(e.Recorders)
}

// Connect starts the proxies, waits until every checked one holds the
// oracle's view, and starts the checker.
func (e *Env) Connect(timeout time.Duration) time.Duration {
	e.T.Helper()
	if err := e.Fleet.Start(context.Background()); err != nil {
		e.T.Fatal(err)
	}
	e.T.Cleanup(func() {
		for _, r := range e.Recorders {
			r.Release()
		}
		e.Fleet.Stop()
	})
	took, err := e.Checker.Converged(e.T.Context(), timeout)
	if err != nil {
		e.T.Fatalf("initial sync: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.stopChecker, e.checkerDone = cancel, make(chan struct{})
	go func() { defer close(e.checkerDone); e.Checker.Run(ctx) }()
	e.T.Cleanup(e.StopChecker)
	return took
}

// StopChecker stops the continuous checks (idempotent).
func (e *Env) StopChecker() {
	if e.stopChecker != nil {
		e.stopChecker()
		<-e.checkerDone
		e.stopChecker = nil
	}
}

// Report fails the test for every violation found, printing the first 20.
func (e *Env) Report() {
	e.T.Helper()
	vs := e.Violations.List()
	for i, v := range vs {
		if i == 20 {
			e.T.Errorf("... and %d more violations", len(vs)-20)
			break
		}
		e.T.Errorf("violation: %s", v)
	}
	e.T.Logf("checker: %d samples, %d proxy-samples differing from the oracle (within the bound or not), %d violations",
		e.Checker.samples, e.Checker.divergent, len(vs))
}

func (e *Env) removed(member string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.gone[member]
}

// Checked returns the recorders compared with the oracle: those that ACK,
// in members not removed (a removed member's own proxies are no longer
// Horizon's to serve).
func (e *Env) Checked() []*Recorder {
	var out []*Recorder
	for _, r := range e.recorders() {
		if r.Behaviour == ACK && !e.removed(r.ID.Cluster) {
			out = append(out, r)
		}
	}
	return out
}

// Change scales service s of member m to n endpoints (recording removals in
// the ledger first) and returns when it was written.
func (e *Env) Change(m *Member, s, n int) time.Time {
	e.T.Helper()
	var gone []string
	for i := n; i < m.Endpoints(s); i++ {
		gone = append(gone, fmt.Sprintf("%s:%d", m.EndpointAddr(s, i), ServicePort))
	}
	if len(gone) > 0 {
		e.Ledger.RemoveEndpoints(m.Name, gone...)
	}
	at := time.Now()
	if err := m.Scale(e.T.Context(), s, n); err != nil {
		e.T.Fatal(err)
	}
	return at
}

// Latencies waits until every checked recorder holds the oracle's view of
// service s and returns, per recorder, the time it accepted it minus since.
func (e *Env) Latencies(s int, since time.Time, timeout time.Duration) ([]time.Duration, error) {
	want := e.Checker.Expected(e.T.Context())
	name := ClusterSetName(ServiceName(s), Namespace, ServicePort)
	var out []time.Duration
	deadline := time.After(timeout)
	for _, r := range e.Checked() {
		select {
		case at := <-r.Await(name, want[r.ID.Network][name]):
			out = append(out, max(0, at.Sub(since)))
		case <-deadline:
			got, _ := r.View()
			return out, fmt.Errorf("%s never held %s = %v within %v (holds %v)", r.ID.ID, name, want[r.ID.Network][name], timeout, got[name])
		}
	}
	return out, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// WithSecrets makes New read members from Secrets in a control-plane
// cluster of its own (`horizon cluster add-secret`), so that a member can
// be removed while Horizon runs (F5).
func (o Options) WithSecrets() Options { o.secrets = true; return o }

// addSecret applies the member Secret `horizon cluster add-secret` prints
// for m in the control plane's cluster, as an operator would.
func addSecret(ctx context.Context, bin string, m *Member, central *kubetest.Cluster) error {
	sec, err := memberSecret(ctx, bin, m)
	if err != nil {
		return err
	}
	if _, err := central.Kube.CoreV1().Secrets(sec.Namespace).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("member %s: create Secret: %w", m.Name, err)
	}
	return nil
}

// memberSecret is the Secret `horizon cluster add-secret` prints for m: each
// run mints a new ServiceAccount token.
func memberSecret(ctx context.Context, bin string, m *Member) (*corev1.Secret, error) {
	out, err := exec.CommandContext(ctx, bin, "cluster", "add-secret", "--kubeconfig", m.Kubeconfig, "--name", m.Name, "--network", m.Network).Output()
	if err != nil {
		return nil, fmt.Errorf("member %s: horizon cluster add-secret: %w", m.Name, err)
	}
	var sec corev1.Secret
	if err := yaml.UnmarshalStrict(out, &sec); err != nil {
		return nil, fmt.Errorf("member %s: add-secret printed no Secret: %w", m.Name, err)
	}
	return &sec, nil
}

// RotateCredentials runs `horizon cluster add-secret` for m again and
// replaces its Secret with the new one (WithSecrets only), as an operator
// rotating a member's token does. It returns when the Secret was written.
func (e *Env) RotateCredentials(m *Member) time.Time {
	e.T.Helper()
	ctx := e.T.Context()
	sec, err := memberSecret(ctx, e.bin, m)
	if err != nil {
		e.T.Fatal(err)
	}
	secrets := e.central.Kube.CoreV1().Secrets(sec.Namespace)
	old, err := secrets.Get(ctx, sec.Name, metav1.GetOptions{})
	if err != nil {
		e.T.Fatal(err)
	}
	if string(old.Data["kubeconfig"]) == string(sec.Data["kubeconfig"]) {
		e.T.Fatalf("member %s: add-secret printed the same kubeconfig again; nothing to rotate", m.Name)
	}
	sec.ResourceVersion = old.ResourceVersion
	at := time.Now()
	if _, err := secrets.Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		e.T.Fatal(err)
	}
	return at
}

// RemoveMember deletes m's Secret (WithSecrets only): Horizon must drop its
// endpoints from every view and touch nothing else.
func (e *Env) RemoveMember(m *Member) time.Time {
	e.T.Helper()
	e.Ledger.RemoveMember(m.Name)
	e.mu.Lock()
	e.gone[m.Name] = true
	e.mu.Unlock()
	at := time.Now()
	if err := e.central.Kube.CoreV1().Secrets("horizon-system").Delete(e.T.Context(), "member-"+m.Name, metav1.DeleteOptions{}); err != nil {
		e.T.Fatal(err)
	}
	return at
}

// RevokeAccess deletes the ClusterRoleBinding that grants Horizon's member
// identity (the ServiceAccount `horizon cluster add-secret` made, WithSecrets
// only) its rights in m, and returns a function that restores it. Requests
// Horizon makes from then on are refused with 403 Forbidden; watches it
// already holds run on until they end (Member.Cut ends them).
func (e *Env) RevokeAccess(m *Member) (restore func()) {
	e.T.Helper()
	ctx := e.T.Context()
	bindings := m.Cluster.Kube.RbacV1().ClusterRoleBindings()
	b, err := bindings.Get(ctx, kube.ReaderClusterRole, metav1.GetOptions{})
	if err != nil {
		e.T.Fatalf("member %s: Horizon's ClusterRoleBinding: %v", m.Name, err)
	}
	if err := bindings.Delete(ctx, b.Name, metav1.DeleteOptions{}); err != nil {
		e.T.Fatalf("member %s: delete ClusterRoleBinding %s: %v", m.Name, b.Name, err)
	}
	return func() {
		e.T.Helper()
		b.ResourceVersion, b.UID = "", ""
		if _, err := bindings.Create(e.T.Context(), b, metav1.CreateOptions{}); err != nil {
			e.T.Fatalf("member %s: restore ClusterRoleBinding %s: %v", m.Name, b.Name, err)
		}
	}
}
