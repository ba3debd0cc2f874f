package inject

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// Serve serves h over TLS on lis until ctx ends: the webhook's HTTPS
// server, with bounded headers and timeouts (a review body is bounded by
// the handler).
func Serve(ctx context.Context, lis net.Listener, h http.Handler, conf *tls.Config) error {
	srv := &http.Server{
		Handler:           h,
		TLSConfig:         conf,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      ReviewTimeout + 2*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	err := srv.ServeTLS(lis, "", "")
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	<-done
	return err
}

// KeyPairFiles is a tls.Config.GetCertificate that serves the key pair in
// certFile and keyFile, read again when either changes (cert-manager
// renewals); a pair that fails to load keeps the last good one.
func KeyPairFiles(certFile, keyFile string) (func(*tls.ClientHelloInfo) (*tls.Certificate, error), error) {
	kp := &keyPair{certFile: certFile, keyFile: keyFile}
	if _, err := kp.get(nil); err != nil {
		return nil, err
	}
	return kp.get, nil
}

type keyPair struct {
	certFile, keyFile string
	mu                sync.Mutex
	certPEM, keyPEM   []byte // what cert was loaded from
	cert              *tls.Certificate
}

// get reads both files at each handshake (a few KiB; the API server
// reuses its connections) and parses them again when they changed.
func (k *keyPair) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	certPEM, err1 := os.ReadFile(k.certFile)
	keyPEM, err2 := os.ReadFile(k.keyFile)
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := errors.Join(err1, err2); err != nil {
		if k.cert != nil {
			return k.cert, nil
		}
		return nil, fmt.Errorf("injector key pair: %w", err)
	}
	if k.cert != nil && bytes.Equal(certPEM, k.certPEM) && bytes.Equal(keyPEM, k.keyPEM) {
		return k.cert, nil
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		if k.cert != nil {
			return k.cert, nil
		}
		return nil, fmt.Errorf("injector key pair: %w", err)
	}
	k.cert, k.certPEM, k.keyPEM = &c, certPEM, keyPEM
	return k.cert, nil
}
