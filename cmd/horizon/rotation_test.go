package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/certs/agent"
	"github.com/horizonmesh/horizon/certs/agent/agenttest"
	"github.com/horizonmesh/horizon/internal/testkit"
	"github.com/horizonmesh/horizon/internal/testkit/certtest"
)

// workloadSource is what a workload's TLS needs: its SVID and its bundle.
type workloadSource interface {
	x509svid.Source
	x509bundle.Source
}

// workloadTLS is mutual TLS between workloads as Envoy does it: present the
// SVID, require the peer's, verify it under the current bundle at now.
func workloadTLS(src workloadSource, td spiffeid.TrustDomain, now func() time.Time) *tls.Config {
	verify := func(raw [][]byte, _ [][]*x509.Certificate) error {
		var chain []*x509.Certificate
		for _, der := range raw {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				return err
			}
			chain = append(chain, c)
		}
		_, err := certs.Verify(chain, src, now())
		return err
	}
	cert := func() (*tls.Certificate, error) {
		svid, err := src.GetX509SVID()
		if err != nil {
			return nil, err
		}
		c := &tls.Certificate{PrivateKey: svid.PrivateKey}
		for _, x := range svid.Certificates {
			c.Certificate = append(c.Certificate, x.Raw)
		}
		return c, nil
	}
	return &tls.Config{
		MinVersion:            tls.VersionTLS13,
		InsecureSkipVerify:    true, // verify does it, by SPIFFE rules
		ClientAuth:            tls.RequireAnyClientCert,
		VerifyPeerCertificate: verify,
		GetCertificate:        func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert() },
		GetClientCertificate:  func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert() },
	}
}

// echoServer accepts mutual-TLS connections and echoes one byte.
func echoServer(t *testing.T, conf *tls.Config) string {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				b := make([]byte, 1)
				if _, err := io.ReadFull(c, b); err == nil {
					c.Write(b)
				}
			}()
		}
	}()
	return lis.Addr().String()
}

// handshake opens a new mutual-TLS connection and exchanges a byte: a
// failure on either side fails it.
func handshake(addr string, conf *tls.Config) error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, conf)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte{42}); err != nil {
		return err
	}
	b := make([]byte, 1)
	_, err = io.ReadFull(c, b)
	return err
}

func writeCADir(t *testing.T, dir string, ca *certs.CA) {
	t.Helper()
	files, err := ca.Files()
	if err != nil {
		t.Fatal(err)
	}
	if err := certs.WriteFiles(dir, files, true); err != nil {
		t.Fatal(err)
	}
}

func pemOf(certs_ ...*x509.Certificate) []byte { return certs.EncodeCertificates(certs_...) }

func writeTestFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestRootRotation follows the documented procedure (README, "Rotating the
// root") on a CA directory served by Horizon's certificate API: trust A+B,
// sign with B, drop A. Workloads run agents that renew on a fake clock, and
// a pool of workloads keeps opening mutual-TLS connections to each other
// the whole time. No handshake and no renewal may fail; at the end every
// workload trusts only B, and an SVID signed under A is refused.
func TestRootRotation(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	clock := agenttest.NewClock(time.Now())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	// Root A signs west's workloads; east has its own intermediate under A.
	rootA := certtest.Root(t, td, certs.WithClock(clock.Now))
	eastA, err := rootA.NewIntermediate("east", certs.WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeCADir(t, dir, rootA)
	writeCADir(t, filepath.Join(dir, "east"), eastA)

	reg := prometheus.NewRegistry()
	ca, err := newCertAuthority(identityConfig{
		caDir: dir, identity: "spiffe://cluster.local/ns/horizon-system/sa/horizon", svidTTL: time.Hour,
	}, td, nil, reg, log, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(ca.tls)))
	ca.register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	reload := func(step string) {
		t.Helper()
		if err := ca.store.Reload(); err != nil {
			t.Fatalf("%s: reload: %v", step, err)
		}
	}

	// Four workloads, two per cluster. Their first SVIDs come from Horizon's
	// CA directly (as `horizon ca issue` would); agents renew from then on.
	type workload struct {
		agent *agent.Agent
		addr  string
		conf  *tls.Config
	}
	agentMetrics := agent.NewMetrics(nil)
	var pool []*workload
	var staleA *x509svid.SVID // an SVID under A that is never renewed
	for i, cluster := range []string{"east", "east", "west", "west"} {
		signer, _ := ca.store.Signer(cluster)
		out := t.TempDir()
		id := fmt.Sprintf("spiffe://cluster.local/ns/shop/sa/w%d", i)
		svid := issueFiles(t, signer, id, out)
		if i == 0 {
			staleA = svid
		}
		a, err := agent.New(agent.Config{
			Address: lis.Addr().String(), TrustDomain: td, Bundle: []*x509.Certificate{rootA.Certificate()},
			Dir: out, Clock: clock, Log: log, Metrics: agentMetrics,
			ServerID: spiffeid.RequireFromString("spiffe://cluster.local/ns/horizon-system/sa/horizon"),
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.GetX509SVID(); err != nil {
			t.Fatalf("workload %d did not pick up its SVID: %v", i, err)
		}
		// Renewing it with itself gets Horizon's one-hour lifetime.
		if err := a.Renew(t.Context()); err != nil {
			t.Fatalf("workload %d: %v", i, err)
		}
		w := &workload{agent: a, conf: workloadTLS(a, td, clock.Now)}
		w.addr = echoServer(t, w.conf)
		pool = append(pool, w)
		go a.Run(t.Context())
	}

	// The live pool: every workload keeps connecting to every other.
	var ok, failed atomic.Int64
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			for _, from := range pool {
				for _, to := range pool {
					if from == to {
						continue
					}
					if err := handshake(to.addr, from.conf); err != nil {
						failed.Add(1)
						firstFailure.CompareAndSwap(nil, fmt.Sprintf("%s at %s", err, clock.Now().Format(time.TimeOnly)))
					} else {
						ok.Add(1)
					}
				}
			}
			select {
			case <-stop:
				return
			default:
			}
		}
	})
	defer func() {
		close(stop)
		wg.Wait()
	}()

	// live lets fake time pass in five-minute steps, letting agents renew
	// what falls due, until every workload has renewed at least twice, and
	// checks that the pool saw handshakes and no failure.
	live := func(step string) {
		t.Helper()
		renewed := make([]int, len(pool))
		notify := make([]<-chan struct{}, len(pool))
		for i, w := range pool {
			notify[i] = w.agent.Updated()
		}
		for slices := 0; ; slices++ {
			done := true
			for _, n := range renewed {
				done = done && n >= 2
			}
			if done {
				break
			}
			if slices > 100 {
				t.Fatalf("%s: workloads renewed %v times in %d steps", step, renewed, slices)
			}
			clock.Advance(clock.Now().Add(5 * time.Minute))
			// Wait (real time) until no agent is overdue.
			for i, w := range pool {
				testkit.Eventually(t, 10*time.Second, fmt.Sprintf("%s: workload %d renewed", step, i), func() bool { return w.agent.RenewAt().After(clock.Now()) })
				select {
				case <-notify[i]:
					renewed[i]++
					notify[i] = w.agent.Updated()
				default:
				}
			}
			before := ok.Load()
			testkit.Eventually(t, 10*time.Second, step+": a handshake per workload", func() bool {
				return ok.Load() >= before+int64(len(pool)) || failed.Load() > 0
			})
		}
		if n := failed.Load(); n > 0 {
			t.Fatalf("%s: %d failed handshakes (first: %v)", step, n, firstFailure.Load())
		}
		if n := testutil.ToFloat64(agentMetrics.Failures()); n > 0 {
			t.Fatalf("%s: %v failed renewals", step, n)
		}
	}
	roots := func(w *workload) []*x509.Certificate {
		b, _ := w.agent.GetX509BundleForTrustDomain(td)
		return b.X509Authorities()
	}

	live("start: A")

	// 1. Trust A+B: a new root B is added to every bundle; A still signs.
	rootB := certtest.Root(t, td, certs.WithClock(clock.Now))
	writeTestFile(t, filepath.Join(dir, certs.RootCertFile), pemOf(rootA.Certificate(), rootB.Certificate()))
	writeTestFile(t, filepath.Join(dir, "east", certs.RootCertFile), pemOf(rootA.Certificate(), rootB.Certificate()))
	reload("trust A+B")
	live("trust A+B")
	for i, w := range pool {
		if len(roots(w)) != 2 {
			t.Fatalf("after a renewal, workload %d trusts %d roots, want A and B", i, len(roots(w)))
		}
	}

	// 2. Sign with B: B's key signs, east gets an intermediate under B, and
	// the bundle stays A+B while SVIDs under A are still live.
	eastB, err := rootB.NewIntermediate("east", certs.WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	keyB, err := rootB.Files()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range keyB {
		if f.Name == certs.RootKeyFile {
			writeTestFile(t, filepath.Join(dir, certs.RootKeyFile), f.Data)
		}
	}
	writeTestFile(t, filepath.Join(dir, certs.RootCertFile), pemOf(rootB.Certificate(), rootA.Certificate()))
	eastFiles, _ := eastB.Files()
	for _, f := range eastFiles {
		if f.Name != certs.RootCertFile {
			writeTestFile(t, filepath.Join(dir, "east", f.Name), f.Data)
		}
	}
	reload("sign with B")
	live("sign with B")
	for i, w := range pool {
		svid, _ := w.agent.GetX509SVID()
		if _, err := certs.Verify(svid.Certificates, x509bundle.FromX509Authorities(td, []*x509.Certificate{rootB.Certificate()}), clock.Now()); err != nil {
			t.Fatalf("workload %d's SVID is not under B: %v", i, err)
		}
	}

	// 3. Drop A, once no SVID under A is left (each has renewed since).
	writeTestFile(t, filepath.Join(dir, certs.RootCertFile), pemOf(rootB.Certificate()))
	writeTestFile(t, filepath.Join(dir, "east", certs.RootCertFile), pemOf(rootB.Certificate()))
	reload("drop A")
	live("drop A")
	for i, w := range pool {
		if r := roots(w); len(r) != 1 || !r[0].Equal(rootB.Certificate()) {
			t.Fatalf("workload %d still trusts %d roots", i, len(r))
		}
	}
	// An SVID under A, even one not yet expired, is now refused: the
	// checks above could fail.
	if _, err := certs.Verify(staleA.Certificates, pool[1].agent, staleA.Certificates[0].NotBefore.Add(time.Minute)); certs.ReasonOf(err) != certs.ReasonUntrusted {
		t.Fatalf("an SVID under the dropped root: %v, want untrusted", err)
	}
	t.Logf("%d handshakes through three rotation steps, none failed", ok.Load())
}
