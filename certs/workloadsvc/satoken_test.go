package workloadsvc

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/horizonmesh/horizon/certs/agent"
	"github.com/horizonmesh/horizon/certs/certsvc"
	"github.com/horizonmesh/horizon/certs/workloadpb"
	"github.com/horizonmesh/horizon/discovery"
	"github.com/horizonmesh/horizon/discovery/file"
)

// fakeReviewer stands in for a member cluster's TokenReview: each token
// is one ServiceAccount or one refusal. Every review first calls the
// registry (a reviewer run under the registry's lock would deadlock
// there) and then before, when set.
type fakeReviewer struct {
	h      *horizon
	mu     sync.Mutex
	calls  []string // cluster/token of each review
	before func()
}

var reviewedTokens = map[string]struct {
	ns, sa string
	err    error
}{
	"sa-reviews":  {ns: "shop", sa: "reviews"},
	"sa-ratings":  {ns: "shop", sa: "ratings"},
	"sa-rejected": {err: &certsvc.Denied{Reason: certsvc.ReasonTokenRejected, Err: errors.New("apiserver says: secret words")}},
	"sa-audience": {err: &certsvc.Denied{Reason: certsvc.ReasonTokenAudience, Err: errors.New("audiences [kubernetes]")}},
	"sa-cluster":  {err: &certsvc.Denied{Reason: certsvc.ReasonUnknownCluster, Err: errors.New("no synced member cluster")}},
	"sa-odd":      {err: &certsvc.Denied{Reason: "odd_reason", Err: errors.New("a reason outside the set")}},
	"sa-down":     {err: errors.New("connection refused")},
}

func (f *fakeReviewer) review(_ context.Context, cluster, token string) (string, string, error) {
	if _, ok := f.h.reg.Group(vmsGroup); !ok { // takes the registry's lock
		return "", "", errors.New("the registry lost ratings-vms")
	}
	f.h.reg.Instances() // and again
	f.mu.Lock()
	f.calls = append(f.calls, cluster+"/"+token)
	before := f.before
	f.mu.Unlock()
	if before != nil {
		before()
	}
	r, ok := reviewedTokens[token]
	if !ok {
		return "", "", &certsvc.Denied{Reason: certsvc.ReasonTokenRejected, Err: errors.New("unknown token")}
	}
	return r.ns, r.sa, r.err
}

func (f *fakeReviewer) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// clusterSet is testdata/clusterset.yaml with edit applied.
func clusterSet(t *testing.T, edit func(string) string) *discovery.ClusterSet {
	t.Helper()
	data, err := os.ReadFile("testdata/clusterset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cs, err := file.Parse("clusterset.yaml", []byte(edit(strings.ReplaceAll(string(data), "PROBE_PORT", "1"))))
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// TestServiceAccountTokenJoin is the decision table of a Kubernetes
// ServiceAccount token as a join credential, over mutual TLS on loopback
// with a fake reviewer: a group that names a tokenReviewCluster admits a
// token of its own identity, reviewed by that cluster, and issues the
// group's SVID; every other case is refused with its reason, counted, and
// registers nothing.
func TestServiceAccountTokenJoin(t *testing.T) {
	f := &fakeReviewer{}
	h := startHorizonWith(t, 1, func(c *Config) { c.Review = f.review })
	f.h = h
	anon := client{t: t, h: h}
	reviews := discovery.ServiceKey{Namespace: "shop", Name: "reviews"}

	svid, err := anon.join(withToken("sa-reviews"), "shop/reviews-vms", "10.2.0.33")
	if err != nil {
		t.Fatalf("join with the group's ServiceAccount token: %v", err)
	}
	if svid.ID.String() != "spiffe://cluster.local/ns/shop/sa/reviews" {
		t.Errorf("SVID %s, want the group's service account", svid.ID)
	}
	if f.count() != 1 || f.calls[0] != "east-1/sa-reviews" {
		t.Errorf("reviews %v, want one by the group's tokenReviewCluster east-1", f.calls)
	}
	h.await(t, "the VM an endpoint of shop/reviews in vm-west", func(cs *discovery.ClusterSet) bool {
		c, _ := cs.Cluster("vm-west")
		s, ok := c.Service(reviews)
		return ok && len(s.Endpoints) == 1 && s.Endpoints[0].Address == "10.2.0.33" && s.Endpoints[0].ServiceAccount == "reviews"
	})
	// The SVID it got renews the join like any other.
	if _, err := (client{t: t, h: h, svid: svid}).join(context.Background(), "shop/reviews-vms", "10.2.0.33"); err != nil {
		t.Errorf("join again with the SVID: %v", err)
	}
	joined := h.cs().Version()

	noGroup := func(token, group, address string) func() error {
		return func() error { _, err := anon.join(withToken(token), group, address); return err }
	}
	cases := []struct {
		name    string
		call    func() error
		code    codes.Code
		reason  string
		message string // the client is told this, after the reason
		reviews int    // reviews the call makes
	}{
		{"no group named", noGroup("sa-reviews", "", "10.2.0.34"), codes.InvalidArgument, ReasonBadRequest, "a ServiceAccount token joins the group the request names", 0},
		{"unknown group", noGroup("sa-reviews", "shop/nope", "10.2.0.34"), codes.NotFound, "unknown_group", "no workload group shop/nope", 0},
		{"group without tokenReviewCluster", noGroup("sa-ratings", "shop/ratings-vms", "10.2.0.5"), codes.PermissionDenied, ReasonSATokenOff, "group shop/ratings-vms admits no ServiceAccount tokens", 0},
		{"token of another ServiceAccount", noGroup("sa-ratings", "shop/reviews-vms", "10.2.0.34"), codes.PermissionDenied, ReasonIdentityMismatch,
			"the token is ServiceAccount shop/ratings of cluster east-1, but group shop/reviews-vms is ServiceAccount shop/reviews", 1},
		{"token the member rejects", noGroup("sa-rejected", "shop/reviews-vms", "10.2.0.34"), codes.Unauthenticated, certsvc.ReasonTokenRejected, reviewHints[certsvc.ReasonTokenRejected], 1},
		{"token for another audience", noGroup("sa-audience", "shop/reviews-vms", "10.2.0.34"), codes.Unauthenticated, certsvc.ReasonTokenAudience, reviewHints[certsvc.ReasonTokenAudience], 1},
		{"tokenReviewCluster not a member", noGroup("sa-cluster", "shop/reviews-vms", "10.2.0.34"), codes.FailedPrecondition, certsvc.ReasonUnknownCluster, reviewHints[certsvc.ReasonUnknownCluster], 1},
		{"member cannot be asked", noGroup("sa-down", "shop/reviews-vms", "10.2.0.34"), codes.Unavailable, certsvc.ReasonReviewFailed, reviewHints[certsvc.ReasonReviewFailed], 1},
		{"reviewer reason outside the set", noGroup("sa-odd", "shop/reviews-vms", "10.2.0.34"), codes.Unavailable, certsvc.ReasonReviewFailed, reviewHints[certsvc.ReasonReviewFailed], 1},
		{"address outside the group's addresses", noGroup("sa-reviews", "shop/reviews-vms", "10.2.0.60"), codes.PermissionDenied, ReasonAddressClaim, "address claim: the agent registers 10.2.0.60", 1},
		{"malformed certificate request: no review", func() error {
			_, err := anon.conn().Join(withToken("sa-reviews"), &workloadpb.JoinRequest{Csr: []byte("nope"), Group: "shop/reviews-vms", Address: "10.2.0.34"})
			return err
		}, codes.InvalidArgument, ReasonBadRequest, "malformed certificate request", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n, calls := testutil.ToFloat64(h.metrics.RefusalsFor(c.reason)), f.count()
			err := c.call()
			if status.Code(err) != c.code || !containsReason(err, c.reason) {
				t.Fatalf("err = %v, want %s %s", err, c.code, c.reason)
			}
			if msg := status.Convert(err).Message(); !strings.HasPrefix(msg, c.reason+": "+c.message) || strings.Contains(msg, "secret words") {
				t.Errorf("the client is told %q, want %q", msg, c.reason+": "+c.message)
			}
			if got := testutil.ToFloat64(h.metrics.RefusalsFor(c.reason)); got != n+1 {
				t.Errorf("refusals{reason=%s} = %v, want %v", c.reason, got, n+1)
			}
			if got := f.count() - calls; got != c.reviews {
				t.Errorf("%d reviews, want %d", got, c.reviews)
			}
		})
	}
	if got := h.cs().Version(); got != joined {
		t.Errorf("the refusals changed the ClusterSet: version %s, want %s", got, joined)
	}
	for _, in := range h.reg.Instances() {
		if in.Address != "10.2.0.33" {
			t.Errorf("a refused join registered %+v", in)
		}
	}

	// The group changes while the token is reviewed: the join checks the
	// group as it is then, and refuses.
	base := clusterSet(t, func(s string) string { return s })
	for _, c := range []struct {
		name   string
		edit   func(string) string
		reason string
	}{
		{"another identity", func(s string) string {
			return strings.Replace(s, "    serviceAccount: reviews\n", "    serviceAccount: reviewers\n", 1)
		}, ReasonIdentityMismatch},
		{"tokens off", func(s string) string { return strings.Replace(s, "    tokenReviewCluster: east-1\n", "", 1) }, ReasonSATokenOff},
		{"another review cluster", func(s string) string {
			return strings.Replace(s, "    tokenReviewCluster: east-1\n", "    tokenReviewCluster: east-2\n", 1)
		}, ReasonSATokenOff},
	} {
		t.Run("group changed during the review: "+c.name, func(t *testing.T) {
			changed := clusterSet(t, c.edit)
			f.mu.Lock()
			f.before = func() { h.reg.In(changed) }
			f.mu.Unlock()
			t.Cleanup(func() {
				f.mu.Lock()
				f.before = nil
				f.mu.Unlock()
				h.reg.In(base)
			})
			n := testutil.ToFloat64(h.metrics.RefusalsFor(c.reason))
			_, err := anon.join(withToken("sa-reviews"), "shop/reviews-vms", "10.2.0.35")
			if status.Code(err) != codes.PermissionDenied || !containsReason(err, c.reason) || !strings.Contains(err.Error(), "changed while the token was reviewed") {
				t.Fatalf("err = %v, want %s after the group changed", err, c.reason)
			}
			if got := testutil.ToFloat64(h.metrics.RefusalsFor(c.reason)); got != n+1 {
				t.Errorf("refusals{reason=%s} = %v, want %v", c.reason, got, n+1)
			}
			for _, in := range h.reg.Instances() {
				if in.Address == "10.2.0.35" {
					t.Errorf("registered %+v", in)
				}
			}
		})
	}
}

// TestServiceAccountTokenWithoutReviewer: with no Kubernetes members
// (no reviewer) a token that is not a join token is refused as malformed,
// and the client is told why.
func TestServiceAccountTokenWithoutReviewer(t *testing.T) {
	h := startHorizon(t, 1)
	_, err := (client{t: t, h: h}).join(withToken("eyJhbGciOiJSUzI1NiJ9.e30.sig"), "shop/reviews-vms", "10.2.0.33")
	if status.Code(err) != codes.Unauthenticated || !containsReason(err, ReasonTokenMalformed) || !strings.Contains(err.Error(), "reviews no Kubernetes ServiceAccount tokens here") {
		t.Fatalf("err = %v, want token_malformed saying no ServiceAccount tokens are reviewed", err)
	}
	if got := testutil.ToFloat64(h.metrics.RefusalsFor(ReasonTokenMalformed)); got != 1 {
		t.Errorf("refusals{reason=token_malformed} = %v, want 1", got)
	}
}

// TestServiceAccountTokenReviewsLimited: reviews past the rate are refused
// before the member is asked.
func TestServiceAccountTokenReviewsLimited(t *testing.T) {
	f := &fakeReviewer{}
	h := startHorizonWith(t, 1, func(c *Config) { c.Review, c.ReviewsPerSecond, c.ReviewBurst = f.review, 1e-6, 1 })
	f.h = h
	anon := client{t: t, h: h}
	if _, err := anon.join(withToken("sa-reviews"), "shop/reviews-vms", "10.2.0.33"); err != nil {
		t.Fatal(err)
	}
	_, err := anon.join(withToken("sa-reviews"), "shop/reviews-vms", "10.2.0.34")
	if status.Code(err) != codes.ResourceExhausted || !containsReason(err, "rate_limited") {
		t.Fatalf("err = %v, want rate_limited", err)
	}
	if f.count() != 1 {
		t.Errorf("%d reviews, want 1: the limited one reached the member", f.count())
	}
	if got := testutil.ToFloat64(h.metrics.RefusalsFor("rate_limited")); got != 1 {
		t.Errorf("refusals{reason=rate_limited} = %v, want 1", got)
	}
}

// TestVMAgentWithServiceAccountToken runs `horizon agent
// --join-token-file` in process with a ServiceAccount token file, as a
// projected token or `kubectl create token` gives one: the agent reads the
// file afresh for each join, so a token replaced in place (rotated) is the
// one it sends; once joined, a renewal goes with the SVID and does not
// depend on the token, which may have expired.
func TestVMAgentWithServiceAccountToken(t *testing.T) {
	f := &fakeReviewer{}
	h := startHorizonWith(t, 1, func(c *Config) { c.Review = f.review })
	f.h = h
	tokenFile := filepath.Join(t.TempDir(), "token")
	write := func(token string) {
		t.Helper()
		if err := os.WriteFile(tokenFile+".tmp", []byte(token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tokenFile+".tmp", tokenFile); err != nil { // as the kubelet swaps a projected token
			t.Fatal(err)
		}
	}
	write("sa-rejected")
	vm, err := agent.NewVM(agent.VMConfig{
		Config:        agent.Config{Address: h.addr, TrustDomain: td, ServerID: horizonID, Bundle: []*x509.Certificate{h.root.Root()}, Dir: t.TempDir(), Log: slog.New(slog.DiscardHandler)},
		JoinTokenFile: tokenFile, Group: "shop/reviews-vms", Address: "10.2.0.40",
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { vm.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	reviewed := func(token string) bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return slices.Contains(f.calls, "east-1/"+token)
	}
	h.await(t, "the rejected token reviewed", func(*discovery.ClusterSet) bool { return reviewed("sa-rejected") })
	write("sa-reviews")
	reviews := discovery.ServiceKey{Namespace: "shop", Name: "reviews"}
	h.await(t, "the VM joined with the rotated token", func(cs *discovery.ClusterSet) bool {
		c, _ := cs.Cluster("vm-west")
		s, ok := c.Service(reviews)
		_, err := vm.Agent().GetX509SVID()
		return ok && slices.ContainsFunc(s.Endpoints, func(e discovery.Endpoint) bool { return e.Address == "10.2.0.40" && e.Ready }) && err == nil
	})
	svid, err := vm.Agent().GetX509SVID()
	if err != nil || svid.ID.String() != "spiffe://cluster.local/ns/shop/sa/reviews" {
		t.Fatalf("SVID %v (%v), want the group's service account", svid, err)
	}

	// The token expires (the member rejects it now): renewal goes on with
	// the SVID.
	write("sa-rejected")
	calls := f.count()
	if err := vm.Agent().Renew(context.Background()); err != nil {
		t.Fatalf("renewal with an expired token in the file: %v", err)
	}
	if f.count() != calls {
		t.Errorf("the renewal had the token reviewed: %v", f.calls[calls:])
	}
	if renewed, _ := vm.Agent().GetX509SVID(); renewed.Certificates[0].Equal(svid.Certificates[0]) {
		t.Error("the SVID was not renewed")
	}
}
