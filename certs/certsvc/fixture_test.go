package certsvc

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/certs/certpb"
)

// internal is in every error the fixture's member clusters and CA store
// return: text that must reach the log and never a client.
const internal = "INTERNAL /etc/horizon/ca/east/ca.key CN=Horizon intermediate CA"

var (
	cartID    = spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/cart")
	horizonID = spiffeid.RequireFromString("spiffe://cluster.local/ns/horizon-system/sa/horizon")
)

// fixture is a certificate API the way `horizon serve --ca-dir` makes one:
// one root, intermediates for east and west, and the root signing for every
// other cluster. Its clock is manual, its log recorded.
type fixture struct {
	root, east, west *certs.CA
	srv              *Server
	metrics          *Metrics
	log              *logRecorder
	now              time.Time
	mu               sync.Mutex // guards now
}

// newFixture starts one. Its member clusters review tokens so:
//
//	"cart"            shop/cart, in any cluster
//	"horizon"         horizon-system/horizon (Horizon's own account), in any cluster
//	"slash"           a namespace that makes no SPIFFE ID
//	"rejected", "audience", "not-sa", "unknown": refused for that reason
//	"down"            the member cannot be asked
//
// and the CA store has no CA for cluster "broken", and west's intermediate
// (wrongly) for cluster "south".
func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{log: &logRecorder{}, metrics: NewMetrics(nil), now: time.Now()}
	var err error
	if f.root, err = certs.NewRoot(td); err != nil {
		t.Fatal(err)
	}
	if f.east, err = f.root.NewIntermediate("east"); err != nil {
		t.Fatal(err)
	}
	if f.west, err = f.root.NewIntermediate("west"); err != nil {
		t.Fatal(err)
	}
	f.srv, err = New(Config{
		TrustDomain: td,
		Signer: func(cluster string) (*certs.CA, error) {
			switch cluster {
			case "east":
				return f.east, nil
			case "west", "south":
				return f.west, nil
			case "broken":
				return nil, errors.New("load " + internal + ": permission denied")
			}
			return f.root, nil
		},
		Review: func(_ context.Context, cluster, token string) (string, string, error) {
			switch token {
			case "cart":
				return "shop", "cart", nil
			case "horizon":
				return "horizon-system", "horizon", nil
			case "slash":
				return "shop/" + internal, "cart", nil
			case "rejected":
				return "", "", &Denied{Reason: ReasonTokenRejected, Err: errors.New("[invalid bearer token] " + internal)}
			case "audience":
				return "", "", &Denied{Reason: ReasonTokenAudience, Err: errors.New(`token audiences ["kubernetes"] is invalid for the target audiences ["horizon"] ` + internal)}
			case "not-sa":
				return "", "", &Denied{Reason: ReasonNotSA, Err: errors.New(`"system:admin" ` + internal)}
			case "unknown":
				return "", "", &Denied{Reason: ReasonUnknownCluster, Err: errors.New("no synced member cluster " + internal)}
			case "down":
				return "", "", errors.New("dial tcp 10.0.0.1:6443: connection refused " + internal)
			}
			return "", "", &Denied{Reason: ReasonTokenRejected, Err: errors.New("unknown token")}
		},
		Reserved: []spiffeid.ID{horizonID},
		Metrics:  f.metrics,
		Log:      slog.New(f.log),
		Now:      f.clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
}

// callFrom is a request context on the TLS port from addr, with the
// client's certificates (none for a token caller) and metadata.
func callFrom(addr string, chain []*x509.Certificate, md ...string) context.Context {
	a, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		panic(err)
	}
	ctx := peer.NewContext(context.Background(), &peer.Peer{
		Addr:     a,
		AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: chain}},
	})
	if len(md) > 0 {
		ctx = metadata.NewIncomingContext(ctx, metadata.Pairs(md...))
	}
	return ctx
}

// withToken is a token caller's context.
func withToken(token string) context.Context {
	return callFrom("10.1.0.1:40000", nil, "authorization", "Bearer "+token)
}

// withSVID is a renewing caller's context.
func withSVID(chain []*x509.Certificate) context.Context { return callFrom("10.1.0.2:40000", chain) }

// issued is what a successful Sign returned, parsed, and the cluster its
// verified chain is bound to.
type issued struct {
	chain   []*x509.Certificate
	cluster string
}

// sign calls Sign and fails the test unless an SVID for id came back that
// verifies against the root.
func (f *fixture) sign(t *testing.T, ctx context.Context, cluster string, id spiffeid.ID) issued {
	t.Helper()
	resp, err := f.srv.Sign(ctx, &certpb.SignRequest{Csr: csrFor(t, ""), Cluster: cluster})
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	var chain []*x509.Certificate
	for _, der := range resp.CertChain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, c)
	}
	got, verified, err := certs.VerifyChain(chain, f.root.Bundle(), f.clock())
	if err != nil {
		t.Fatalf("the issued SVID does not verify: %v", err)
	}
	if got != id || resp.SpiffeId != id.String() {
		t.Fatalf("issued %s (%s), want %s", got, resp.SpiffeId, id)
	}
	return issued{chain: chain, cluster: certs.ClusterOf(verified)}
}

// svidFrom issues an SVID for id from ca directly, as `horizon ca issue`
// does.
func svidFrom(t *testing.T, ca *certs.CA, id spiffeid.ID) []*x509.Certificate {
	t.Helper()
	key, err := certs.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	svid, err := ca.Issue(key.Public(), id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return svid.Certificates
}

// forge signs with ca's key a leaf for id whose subject claims cluster in
// Horizon's organization: what a holder of a cluster's intermediate could
// write, to claim another cluster.
func forge(t *testing.T, ca *certs.CA, id spiffeid.ID, cluster string) []*x509.Certificate {
	t.Helper()
	files, err := ca.Files()
	if err != nil {
		t.Fatal(err)
	}
	var caKey any
	for _, f := range files {
		if f.Name == certs.KeyFile {
			if caKey, err = certs.ParseKey(f.Data); err != nil {
				t.Fatal(err)
			}
		}
	}
	key, err := certs.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{Organization: []string{certs.ClusterOrganization}, OrganizationalUnit: []string{cluster}},
		URIs:                  []*url.URL{id.URL()},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Certificate(), key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return append([]*x509.Certificate{leaf}, ca.Chain()[:len(ca.Chain())-1]...)
}

// logRecorder is an slog.Handler that keeps every line, each as its message
// and its attributes' values as text.
type logRecorder struct {
	mu    sync.Mutex
	lines []logLine
}

type logLine struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l := logLine{level: r.Level, msg: r.Message, attrs: map[string]string{}}
	r.Attrs(func(a slog.Attr) bool {
		l.attrs[a.Key] = a.Value.String()
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lines = append(h.lines, l)
	return nil
}

func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler { panic("not used") }
func (h *logRecorder) WithGroup(string) slog.Handler      { panic("not used") }

// take returns the lines logged since the last take, with message msg.
func (h *logRecorder) take(msg string) []logLine {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []logLine
	for _, l := range h.lines {
		if l.msg == msg {
			out = append(out, l)
		}
	}
	h.lines = nil
	return out
}
