package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/horizonmesh/horizon/certs"
)

// fileCreds serves TLS from PEM files that may change on disk (rotation):
// every handshake checks their modification times and reloads them when they
// moved; a bad reload keeps the last good credentials.
type fileCreds struct {
	certFile, keyFile, caFile string

	mu     sync.Mutex
	stamp  [3]time.Time
	config *tls.Config
	err    error
}

func newFileCreds(certFile, keyFile, caFile string) (*fileCreds, error) {
	if certFile == "" || keyFile == "" || caFile == "" {
		return nil, errors.New("--tls-cert, --tls-key and --tls-client-ca go together")
	}
	f := &fileCreds{certFile: certFile, keyFile: keyFile, caFile: caFile}
	if _, err := f.current(); err != nil {
		return nil, err
	}
	return f, nil
}

// serverConfig requires a client certificate that chains to the client CA
// bundle; which identities may do what is decided per stream (xds).
func (f *fileCreds) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return f.current()
		},
	}
}

func (f *fileCreds) current() (*tls.Config, error) {
	var stamp [3]time.Time
	for i, p := range []string{f.certFile, f.keyFile, f.caFile} {
		st, err := os.Stat(p)
		if err != nil {
			return f.lastGood(fmt.Errorf("tls: %w", err))
		}
		stamp[i] = st.ModTime()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.config != nil && stamp == f.stamp {
		return f.config, nil
	}
	cert, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
	if err != nil {
		return f.keepLocked(fmt.Errorf("tls: %s, %s: %w", f.certFile, f.keyFile, err))
	}
	pem, err := os.ReadFile(f.caFile)
	if err != nil {
		return f.keepLocked(fmt.Errorf("tls: %w", err))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return f.keepLocked(fmt.Errorf("tls: %s holds no certificate", f.caFile))
	}
	f.stamp = stamp
	f.config = &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
	return f.config, nil
}

func (f *fileCreds) lastGood(err error) (*tls.Config, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.keepLocked(err)
}

func (f *fileCreds) keepLocked(err error) (*tls.Config, error) {
	if f.config != nil {
		return f.config, nil // keep serving with the last good files
	}
	return nil, err
}

// svidDirClientTLS is a client's mutual TLS to Horizon from an SVID
// directory that `horizon agent` keeps current (svid.crt, svid.key,
// bundle.crt): the files are read at each handshake, Horizon's certificate
// must be an X509-SVID under the bundle, with serverID (default
// spiffe://<td>/ns/horizon-system/sa/horizon).
func svidDirClientTLS(dir, trustDomain, serverID string) (*tls.Config, error) {
	td, err := spiffeid.TrustDomainFromString(trustDomain)
	if err != nil {
		return nil, fmt.Errorf("--trust-domain: %w", err)
	}
	want, err := spiffeid.FromSegments(td, "ns", "horizon-system", "sa", "horizon")
	if serverID != "" {
		want, err = spiffeid.FromString(serverID)
	}
	if err != nil {
		return nil, fmt.Errorf("--xds-server-id: %w", err)
	}
	path := func(name string) string { return filepath.Join(dir, name) }
	if _, err := os.Stat(path(certs.SVIDFile)); err != nil {
		return nil, fmt.Errorf("--cert-dir: %w", err)
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// VerifyPeerCertificate checks Horizon by its SPIFFE ID.
		InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, err := tls.LoadX509KeyPair(path(certs.SVIDFile), path(certs.SVIDKeyFile))
			return &c, err
		},
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			pem, err := os.ReadFile(path(certs.BundleFile))
			if err != nil {
				return err
			}
			roots, err := certs.ParseCertificates(pem)
			if err != nil {
				return fmt.Errorf("%s: %w", path(certs.BundleFile), err)
			}
			chain := make([]*x509.Certificate, 0, len(raw))
			for _, der := range raw {
				c, err := x509.ParseCertificate(der)
				if err != nil {
					return err
				}
				chain = append(chain, c)
			}
			id, err := certs.Verify(chain, x509bundle.FromX509Authorities(td, roots), time.Now())
			if err != nil {
				return fmt.Errorf("Horizon's certificate: %w", err)
			}
			if id != want {
				return fmt.Errorf("Horizon's certificate is %s, want %s", id, want)
			}
			return nil
		},
	}, nil
}
