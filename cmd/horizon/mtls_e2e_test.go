package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

type e2eCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newE2ECA(t *testing.T) *e2eCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse("spiffe://cluster.local")
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, URIs: []*url.URL{u}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &e2eCA{cert: c, key: key}
}

// svid issues a workload certificate; write puts it (and the bundle) in dir.
func (ca *e2eCA) svid(t *testing.T, id string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse(id)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs: []*url.URL{u}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func writePEM(t *testing.T, path, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeSVID(t *testing.T, dir string, c tls.Certificate) {
	t.Helper()
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	// Write the key first and the certificate last: the server reloads when
	// the files change, and a pair must match.
	writePEM(t, filepath.Join(dir, "tls.key.tmp"), "PRIVATE KEY", keyDER)
	writePEM(t, filepath.Join(dir, "tls.crt.tmp"), "CERTIFICATE", c.Certificate[0])
	for _, f := range []string{"tls.key", "tls.crt"} {
		if err := os.Rename(filepath.Join(dir, f+".tmp"), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestE2EMutualTLSPort: horizon serve with --tls-* serves xDS on its mTLS
// port only to proxies with a certificate from the bundle, takes their
// identity from it, refuses forged metadata, and picks up a new server
// certificate written to disk without a restart.
func TestE2EMutualTLSPort(t *testing.T) {
	ca := newE2ECA(t)
	dir := t.TempDir()
	writePEM(t, filepath.Join(dir, "ca.crt"), "CERTIFICATE", ca.cert.Raw)
	first := ca.svid(t, "spiffe://cluster.local/ns/horizon-system/sa/horizon")
	writeSVID(t, dir, first)
	mtls := freeLoopbackAddr(t)
	bin := buildHorizon(t)
	h := startHorizon(t, bin, "--mtls-address", mtls, "--tls-cert", filepath.Join(dir, "tls.crt"),
		"--tls-key", filepath.Join(dir, "tls.key"), "--tls-client-ca", filepath.Join(dir, "ca.crt"))

	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	request := func(client *tls.Certificate, namespace string) (*discoverypb.DiscoveryResponse, *x509.Certificate, error) {
		var serverCert *x509.Certificate
		cfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12,
			VerifyConnection: func(cs tls.ConnectionState) error { serverCert = cs.PeerCertificates[0]; return nil }}
		if client != nil {
			cfg.Certificates = []tls.Certificate{*client}
		}
		conn, err := grpc.NewClient(mtls, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			return nil, nil, err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stream, err := discoverypb.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
		if err != nil {
			return nil, serverCert, err
		}
		md, _ := structpb.NewStruct(map[string]any{"CLUSTER_ID": "east-1", "NAMESPACE": namespace, "SERVICE_ACCOUNT": "echo"})
		if err := stream.Send(&discoverypb.DiscoveryRequest{Node: &core.Node{Id: "p", Metadata: md}, TypeUrl: resourcev3.ClusterType}); err != nil {
			return nil, serverCert, err
		}
		resp, err := stream.Recv()
		return resp, serverCert, err
	}
	echo := ca.svid(t, "spiffe://cluster.local/ns/demo/sa/echo")
	resp, served, err := request(&echo, "demo")
	if err != nil || len(resp.GetResources()) == 0 {
		t.Fatalf("a proxy with its own identity: %v %v\n%s", resp, err, h.out.String())
	}
	if !served.Equal(first.Leaf) {
		t.Fatal("the server did not present its SVID")
	}
	if _, _, err := request(&echo, "payments"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("forged NAMESPACE: %v, want PermissionDenied", err)
	}
	if _, _, err := request(nil, "demo"); err == nil {
		t.Fatal("a proxy without a certificate was served")
	}
	// Rotate the server's SVID on disk: new handshakes present the new one.
	second := ca.svid(t, "spiffe://cluster.local/ns/horizon-system/sa/horizon")
	time.Sleep(10 * time.Millisecond) // a distinct modification time
	writeSVID(t, dir, second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, served, err := request(&echo, "demo")
		if err == nil && served.Equal(second.Leaf) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rotated certificate is not served: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
