// Package tlsfiles is TLS from PEM files that rotate on disk, for the two
// ends of Horizon's xDS connection that do not get their certificates from
// Horizon's CA API: the mutual-TLS port's credentials when an operator's
// PKI provides them (`horizon serve --tls-cert`), and a client's mutual TLS
// to Horizon from the SVID directory `horizon agent` keeps current
// (`horizon gateway --cert-dir`). Files are read again when they change, so
// rotation needs no restart.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/horizonmesh/horizon/certs"
)

// Server serves TLS from PEM files that may change on disk (rotation):
// every handshake checks their modification times and reloads them when they
// moved; a bad reload keeps the last good credentials.
type Server struct {
	certFile, keyFile, caFile string

	mu     sync.Mutex
	stamp  [3]time.Time
	config *tls.Config
	err    error
}

// NewServer loads the server's certificate and key and the bundle of the CAs
// its clients' certificates must chain to; all three are needed.
func NewServer(certFile, keyFile, caFile string) (*Server, error) {
	f := &Server{certFile: certFile, keyFile: keyFile, caFile: caFile}
	if _, err := f.current(); err != nil {
		return nil, err
	}
	return f, nil
}

// Config requires a client certificate that chains to the client CA
// bundle; which identities may do what is decided per stream (xds).
func (f *Server) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return f.current()
		},
	}
}

func (f *Server) current() (*tls.Config, error) {
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

func (f *Server) lastGood(err error) (*tls.Config, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.keepLocked(err)
}

func (f *Server) keepLocked(err error) (*tls.Config, error) {
	if f.config != nil {
		return f.config, nil // keep serving with the last good files
	}
	return nil, err
}

// SVIDDirClient is a client's mutual TLS to Horizon from an SVID directory
// that `horizon agent` keeps current (svid.crt, svid.key, bundle.crt): the
// files are read at each handshake, Horizon's certificate must be an
// X509-SVID of trust domain td under the bundle, with the SPIFFE ID want.
// It fails when the directory holds no SVID.
func SVIDDirClient(dir string, td spiffeid.TrustDomain, want spiffeid.ID) (*tls.Config, error) {
	path := func(name string) string { return filepath.Join(dir, name) }
	if _, err := os.Stat(path(certs.SVIDFile)); err != nil {
		return nil, err
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
