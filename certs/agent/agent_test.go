package agent

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/certs/agent/agenttest"
	"github.com/horizonmesh/horizon/certs/certsvc"
)

var td = spiffeid.RequireTrustDomainFromString("cluster.local")

// testServer is Horizon's certificate API on a loopback TLS port, signing
// with an intermediate for cluster west, its own certificate an SVID.
type testServer struct {
	root, ca *certs.CA
	addr     string
	metrics  *certsvc.Metrics
	reg      *prometheus.Registry
	tokens   map[string][2]string // "cluster/token" -> namespace, service account
	mu       sync.Mutex
}

func startServer(t *testing.T, now func() time.Time) *testServer {
	t.Helper()
	root, err := certs.NewRoot(td, certs.WithClock(now))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := root.NewIntermediate("west", certs.WithClock(now))
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{root: root, ca: ca, reg: prometheus.NewRegistry(), tokens: map[string][2]string{
		"west/token-of-a": {"shop", "cart"},
	}}
	s.metrics = certsvc.NewMetrics(s.reg)
	signer := func(string) (*certs.CA, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.ca, nil
	}
	svc, err := certsvc.New(certsvc.Config{
		TrustDomain: td,
		Signer:      signer,
		Review: func(_ context.Context, cluster, token string) (string, string, error) {
			if cluster != "west" {
				return "", "", &certsvc.Denied{Reason: certsvc.ReasonUnknownCluster, Err: errors.New("no member " + cluster)}
			}
			id, ok := s.tokens[cluster+"/"+token]
			if !ok {
				return "", "", &certsvc.Denied{Reason: certsvc.ReasonTokenRejected, Err: errors.New("token rejected")}
			}
			return id[0], id[1], nil
		},
		MaxTTL:  time.Hour,
		Metrics: s.metrics,
		Now:     now,
	})
	if err != nil {
		t.Fatal(err)
	}
	self := certsvc.NewSelf(spiffeid.RequireFromString("spiffe://cluster.local/ns/horizon-system/sa/horizon"), time.Hour, func() (*certs.CA, error) { return signer("") }, now)
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(certsvc.ServerTLS(self, self, td, now))))
	svc.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	s.addr = lis.Addr().String()
	return s
}

func (s *testServer) config(t *testing.T, clock Clock) Config {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("token-of-a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return Config{
		Address:     s.addr,
		TrustDomain: td,
		ServerID:    spiffeid.RequireFromString("spiffe://cluster.local/ns/horizon-system/sa/horizon"),
		Bundle:      []*x509.Certificate{s.root.Certificate()},
		TokenFile:   tokenFile,
		Cluster:     "west",
		Dir:         filepath.Join(t.TempDir(), "certs"),
		Clock:       clock,
	}
}

func TestTokenThenRenewal(t *testing.T) {
	srv := startServer(t, time.Now)
	cfg := srv.config(t, nil)
	cfg.Metrics = NewMetrics(nil)
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := a.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	first, _ := a.GetX509SVID()
	if got := first.ID.String(); got != "spiffe://cluster.local/ns/shop/sa/cart" {
		t.Fatalf("SVID for %s, want the token's service account", got)
	}
	if life := first.Certificates[0].NotAfter.Sub(first.Certificates[0].NotBefore); life > time.Hour+certs.ClockSkew {
		t.Errorf("lifetime %v exceeds the server's maximum", life)
	}

	// The files are links through ..data and hold what the agent holds.
	for _, name := range fileNames {
		target, err := os.Readlink(filepath.Join(cfg.Dir, name))
		if err != nil || target != filepath.Join(dataLink, name) {
			t.Errorf("%s: link %q, %v", name, target, err)
		}
	}
	onDisk, bundle, err := readDir(cfg.Dir, td)
	if err != nil {
		t.Fatal(err)
	}
	if !onDisk.Certificates[0].Equal(first.Certificates[0]) || len(bundle.X509Authorities()) != 1 {
		t.Fatal("the files differ from the agent's SVID")
	}
	if st, _ := os.Stat(filepath.Join(cfg.Dir, certs.SVIDKeyFile)); st.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v", st.Mode().Perm())
	}

	// Renewal needs no token: the current SVID proves who asks. It gets a
	// new key.
	if err := os.Remove(cfg.TokenFile); err != nil {
		t.Fatal(err)
	}
	if err := a.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	second, _ := a.GetX509SVID()
	if second.ID != first.ID || second.Certificates[0].Equal(first.Certificates[0]) {
		t.Fatal("renewal did not issue a new SVID for the same ID")
	}
	if second.Certificates[0].PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(first.Certificates[0].PublicKey) {
		t.Error("renewal kept the old key")
	}
	if got := testutil.ToFloat64(srv.metrics.Issued(certsvc.MethodRenewal)); got != 1 {
		t.Errorf("renewals counted %v, want 1", got)
	}
	if got := testutil.ToFloat64(srv.metrics.Issued(certsvc.MethodToken)); got != 1 {
		t.Errorf("token issuances counted %v, want 1", got)
	}
	entries, _ := os.ReadDir(cfg.Dir)
	if len(entries) != len(fileNames)+2 { // the links, ..data and the one data directory; the old one is gone
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v", names)
	}

	// A restarted agent picks the valid SVID up from the files.
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.GetX509SVID(); err != nil || !got.Certificates[0].Equal(second.Certificates[0]) {
		t.Fatalf("restart: %v", err)
	}
}

func TestRefusals(t *testing.T) {
	srv := startServer(t, time.Now)
	for _, tc := range []struct {
		name    string
		edit    func(*Config)
		reason  string
		noCount bool // refused before reaching the service
	}{
		{"unknown token", func(c *Config) { os.WriteFile(c.TokenFile, []byte("forged"), 0o600) }, certsvc.ReasonTokenRejected, false},
		{"token claims another cluster", func(c *Config) { c.Cluster = "east" }, certsvc.ReasonUnknownCluster, false},
		{"no credential", func(c *Config) { c.TokenFile, c.Cluster = "", "" }, "", true},
		{"server outside the agent's bundle", func(c *Config) {
			other, _ := certs.NewRoot(td)
			c.Bundle = []*x509.Certificate{other.Certificate()}
		}, "", true},
		{"server is not who the agent expects", func(c *Config) {
			c.ServerID = spiffeid.RequireFromString("spiffe://cluster.local/ns/kube-system/sa/impostor")
		}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := srv.config(t, nil)
			tc.edit(&cfg)
			a, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			var before float64
			if tc.reason != "" {
				before = testutil.ToFloat64(srv.metrics.Refused(tc.reason))
			}
			if err := a.Renew(t.Context()); err == nil {
				t.Fatal("an SVID was issued")
			}
			if _, err := a.GetX509SVID(); err == nil {
				t.Error("the agent holds an SVID")
			}
			if _, err := os.Stat(filepath.Join(cfg.Dir, certs.SVIDFile)); err == nil {
				t.Error("files were written")
			}
			if tc.reason != "" {
				if got := testutil.ToFloat64(srv.metrics.Refused(tc.reason)); got != before+1 {
					t.Errorf("refusals{reason=%s} went %v -> %v", tc.reason, before, got)
				}
			}
		})
	}
}

// The agent renews before expiry, at about half the lifetime, by its clock.
func TestRunRenewsBeforeExpiry(t *testing.T) {
	start := time.Now()
	clock := agenttest.NewClock(start)
	srv := startServer(t, clock.Now)
	cfg := srv.config(t, clock)
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	updated := a.Updated()
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	select {
	case <-updated:
	case <-time.After(10 * time.Second):
		t.Fatal("no SVID at start")
	}
	for round := range 3 {
		svid, _ := a.GetX509SVID()
		leaf := svid.Certificates[0]
		clock.NextTimer(t)
		due := a.RenewAt()
		life := leaf.NotAfter.Sub(leaf.NotBefore)
		lo := leaf.NotBefore.Add(life * 4 / 10)
		hi := leaf.NotBefore.Add(life * 6 / 10)
		if due.Before(lo) || due.After(hi) {
			t.Fatalf("round %d: renewal due at %v, want between 40%% and 60%% of [%v, %v]", round, due, leaf.NotBefore, leaf.NotAfter)
		}
		updated := a.Updated()
		advanceTo(t, clock, due)
		select {
		case <-updated:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: no renewal after the timer fired", round)
		}
		next, _ := a.GetX509SVID()
		if next.Certificates[0].Equal(leaf) || !clock.Now().Before(leaf.NotAfter) {
			t.Fatalf("round %d: not renewed before expiry", round)
		}
	}
	if got := testutil.ToFloat64(srv.metrics.Issued(certsvc.MethodRenewal)); got != 3 {
		t.Errorf("renewals %v, want 3 (the first SVID came with the token)", got)
	}
}

// advanceTo moves the clock to due the way time passes: timer by timer (the
// agent sleeps at most recheckEvery at a time), each firing before the next
// is set.
func advanceTo(t *testing.T, clock *agenttest.Clock, due time.Time) {
	t.Helper()
	for clock.Now().Before(due) {
		next := clock.Now().Add(recheckEvery)
		if next.After(due) {
			next = due
		}
		clock.Advance(next)
		if clock.Now().Before(due) {
			clock.NextTimer(t)
		}
	}
}

// F8: the wall clock jumps forward past the renewal time while the agent
// sleeps (a host resumed, an NTP step). Its timers run on the monotonic
// clock, which did not see the jump; the agent still renews within
// recheckEvery of the jump, before the SVID expires.
func TestRunRenewsAfterClockJump(t *testing.T) {
	clock := agenttest.NewClock(time.Now())
	srv := startServer(t, clock.Now)
	a, err := New(srv.config(t, clock))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	updated := a.Updated()
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	select {
	case <-updated:
	case <-time.After(10 * time.Second):
		t.Fatal("no SVID at start")
	}
	svid, _ := a.GetX509SVID()
	leaf := svid.Certificates[0]
	clock.NextTimer(t) // the agent sleeps
	// Jump to five minutes before expiry: well past the renewal time.
	jump := leaf.NotAfter.Add(-5 * time.Minute).Sub(clock.Now())
	if due := a.RenewAt(); !leaf.NotAfter.Add(-5 * time.Minute).After(due) {
		t.Fatalf("test setup: renewal due %v is not before the jump's target", due)
	}
	updated = a.Updated()
	clock.Jump(jump)
	// One minute of monotonic time passes: a timer set for the renewal time
	// before the jump would still be far away.
	clock.Advance(clock.Now().Add(recheckEvery))
	select {
	case <-updated:
	case <-time.After(10 * time.Second):
		t.Fatalf("no renewal within %v of a clock jump to %v before expiry", recheckEvery, leaf.NotAfter.Sub(clock.Now()))
	}
	next, _ := a.GetX509SVID()
	if next.Certificates[0].Equal(leaf) || !clock.Now().Before(leaf.NotAfter) {
		t.Fatal("not renewed before expiry")
	}
}
