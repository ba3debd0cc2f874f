package main

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/horizonmesh/horizon/certs"
	"github.com/horizonmesh/horizon/internal/testkit"
	"github.com/horizonmesh/horizon/internal/testkit/certtest"
	"github.com/horizonmesh/horizon/internal/testkit/xdstest"
)

// issueFiles issues an X509-SVID from ca and writes svid.crt, svid.key and
// bundle.crt into dir (replacing them), returning the SVID.
func issueFiles(t *testing.T, ca *certs.CA, id, dir string) *x509svid.SVID {
	t.Helper()
	return issueFilesTrusting(t, ca, ca.Bundle(), id, dir)
}

// issueFilesTrusting is issueFiles with bundle as bundle.crt, e.g. the
// mesh's for an SVID from a foreign root.
func issueFilesTrusting(t *testing.T, ca *certs.CA, bundle *x509bundle.Bundle, id, dir string) *x509svid.SVID {
	t.Helper()
	out := certtest.SVID(t, ca, id)
	key, ok := out.PrivateKey.(crypto.Signer)
	if !ok {
		t.Fatalf("key %T", out.PrivateKey)
	}
	files, err := certs.SVIDFiles(&certs.SVID{ID: out.ID, Certificates: out.Certificates}, key, bundle)
	if err != nil {
		t.Fatal(err)
	}
	if err := certs.WriteFiles(dir, files, true); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestE2EMutualTLSPort: horizon serve with --tls-* serves xDS on its mTLS
// port only to proxies with a certificate from the bundle, takes their
// identity from it, refuses forged metadata, and picks up a new server
// certificate written to disk without a restart.
func TestE2EMutualTLSPort(t *testing.T) {
	root := certtest.Root(t, spiffeid.RequireTrustDomainFromString("cluster.local"))
	east, err := root.NewIntermediate("east")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	horizonID := "spiffe://cluster.local/ns/horizon-system/sa/horizon"
	first := issueFiles(t, east, horizonID, dir)
	mtls := freeLoopbackAddr(t)
	bin := buildHorizon(t)
	h := startHorizon(t, bin, "--mtls-address", mtls, "--tls-cert", filepath.Join(dir, "svid.crt"),
		"--tls-key", filepath.Join(dir, "svid.key"), "--tls-client-ca", filepath.Join(dir, "bundle.crt"))

	bundle := root.Bundle()
	var requestAs func(client *x509svid.SVID, cluster, namespace string) (*discoverypb.DiscoveryResponse, *x509.Certificate, error)
	request := func(client *x509svid.SVID, namespace string) (*discoverypb.DiscoveryResponse, *x509.Certificate, error) {
		return requestAs(client, "west-1", namespace)
	}
	requestAs = func(client *x509svid.SVID, cluster, namespace string) (*discoverypb.DiscoveryResponse, *x509.Certificate, error) {
		var serverCert *x509.Certificate
		cfg := tlsconfig.TLSClientConfig(bundle, tlsconfig.AuthorizeID(first.ID))
		if client != nil {
			cfg = tlsconfig.MTLSClientConfig(client, bundle, tlsconfig.AuthorizeID(first.ID))
		}
		cfg.VerifyConnection = func(cs tls.ConnectionState) error { serverCert = cs.PeerCertificates[0]; return nil }
		conn, err := grpc.NewClient(mtls, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			return nil, nil, err
		}
		defer conn.Close()
		resp, err := xdstest.Fetch(t, conn, &discoverypb.DiscoveryRequest{
			Node: xdstest.Node("p", "CLUSTER_ID", cluster, "NAMESPACE", namespace, "SERVICE_ACCOUNT", "echo"), TypeUrl: resourcev3.ClusterType,
		})
		return resp, serverCert, err
	}
	// A workload of west-1, signed by west-1's intermediate, which binds it
	// to west-1 (the member cluster comes from the verified chain).
	west, err := root.NewIntermediate("west-1")
	if err != nil {
		t.Fatal(err)
	}
	echo := issueFiles(t, west, "spiffe://cluster.local/ns/demo/sa/echo", t.TempDir())
	resp, served, err := request(echo, "demo")
	if err != nil || len(resp.GetResources()) == 0 {
		t.Fatalf("a proxy with its own identity: %v %v\n%s", resp, err, h.out.String())
	}
	if !served.Equal(first.Certificates[0]) {
		t.Fatal("the server did not present its SVID")
	}
	if _, _, err := request(echo, "payments"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("forged NAMESPACE: %v, want PermissionDenied", err)
	}
	// west-1's SVID claiming east-1: east-1's view was served before the
	// cluster was bound to the credential.
	if _, _, err := requestAs(echo, "east-1", "demo"); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "claim_cluster") {
		t.Fatalf("a west-1 SVID claiming CLUSTER_ID=east-1: %v, want PermissionDenied claim_cluster", err)
	}
	if _, _, err := request(nil, "demo"); err == nil {
		t.Fatal("a proxy without a certificate was served")
	}
	// Rotate the server's SVID on disk: new handshakes present the new one.
	time.Sleep(10 * time.Millisecond) // a distinct modification time
	second := issueFiles(t, east, horizonID, dir)
	testkit.Eventually(t, 10*time.Second, "the rotated certificate served", func() error {
		_, served, err := request(echo, "demo")
		if err == nil && !served.Equal(second.Certificates[0]) {
			err = errors.New("the server presents its old certificate")
		}
		return err
	})
}
