package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
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
