package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/horizonmesh/horizon/certs"
)

// DefaultSPIRETimeout is how long serve waits for Horizon's first X509-SVID
// from the SPIRE agent before it gives up.
const DefaultSPIRETimeout = 30 * time.Second

// spireSource is Horizon's side of a SPIRE agent's Workload API (--spire-socket):
// Horizon's own X509-SVID and the trust bundle, both kept current as SPIRE
// rotates them. Horizon issues nothing in this mode: Envoy gets its SVIDs
// from the agent's SDS, on the same socket.
type spireSource struct {
	td     spiffeid.TrustDomain
	source *workloadapi.X509Source
}

// spireServerTLS connects to the SPIRE agent's Workload API at socket (a
// path, or a unix:// address) and returns the server configuration of the
// mTLS xDS port: it presents Horizon's own SVID and requires a client
// certificate that chains to td's bundle and names a member of td. Both come
// from the Workload API on every handshake, so rotations apply to new
// connections without a restart.
//
// It waits at most timeout (DefaultSPIRETimeout if 0) for the first SVID and
// then fails with an error naming the socket and the last Workload API error
// (no agent, or no registration entry for Horizon). Close the returned
// source when done; the tls.Config must not be used after that.
func spireServerTLS(ctx context.Context, socket string, td spiffeid.TrustDomain, timeout time.Duration, log *slog.Logger) (*tls.Config, *spireSource, error) {
	addr, err := spireAddress(socket)
	if err != nil {
		return nil, nil, err
	}
	if timeout <= 0 {
		timeout = DefaultSPIRETimeout
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	wlog := &workloadLog{log: log.With("socket", addr)}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	source, err := workloadapi.NewX509Source(wctx, workloadapi.WithClientOptions(workloadapi.WithAddr(addr), workloadapi.WithLogger(wlog)))
	if err != nil {
		if last := wlog.lastError(); last != "" {
			err = fmt.Errorf("%w (last Workload API error: %s)", err, last)
		}
		return nil, nil, fmt.Errorf("spire: no X509-SVID from the Workload API at %s within %v: is the SPIRE agent running, and is Horizon registered with it? %w", addr, timeout, err)
	}
	s := &spireSource{td: td, source: source}
	if err := s.check(); err != nil {
		source.Close()
		return nil, nil, fmt.Errorf("spire: Workload API at %s: %w", addr, err)
	}
	svid, _ := source.GetX509SVID()
	log.Info("serving mTLS with an X509-SVID from SPIRE", "socket", addr, "spiffe_id", svid.ID.String(), "expires", svid.Certificates[0].NotAfter)
	cfg := tlsconfig.MTLSServerConfig(source, source, certs.Authorizer(tlsconfig.AuthorizeMemberOf(td)))
	return cfg, s, nil
}

// check tells what is wrong with what SPIRE gave Horizon, if anything: an SVID
// outside the trust domain, or no bundle for it.
func (s *spireSource) check() error {
	svid, err := s.source.GetX509SVID()
	if err != nil {
		return err
	}
	if svid.ID.TrustDomain() != s.td {
		return fmt.Errorf("the SVID SPIRE gives Horizon, %s, is not in trust domain %s (--trust-domain)", svid.ID, s.td)
	}
	if len(s.Authorities()) == 0 {
		return fmt.Errorf("no X.509 bundle for trust domain %s", s.td)
	}
	return nil
}

// Authorities are the root certificates of the trust domain's current
// bundle, the ones proxies' certificates must chain to (nil if the Workload
// API has none); for the expiry metrics.
func (s *spireSource) Authorities() []*x509.Certificate {
	b, err := s.source.GetX509BundleForTrustDomain(s.td)
	if err != nil {
		return nil
	}
	return b.X509Authorities()
}

// SVIDExpiry is when Horizon's current X509-SVID expires (zero once closed);
// SPIRE rotates it well before that.
func (s *spireSource) SVIDExpiry() time.Time {
	svid, err := s.source.GetX509SVID()
	if err != nil || len(svid.Certificates) == 0 {
		return time.Time{}
	}
	return svid.Certificates[0].NotAfter
}

// Updated is sent on (without blocking: at most one pending) whenever the
// Workload API pushes new SVIDs or bundles.
func (s *spireSource) Updated() <-chan struct{} { return s.source.Updated() }

// Close drops the connection to the Workload API.
func (s *spireSource) Close() error { return s.source.Close() }

// spireAddress turns --spire-socket into a Workload API address: a path
// becomes unix:// and its absolute path; an address is taken as it is.
func spireAddress(socket string) (string, error) {
	if socket == "" {
		return "", errors.New("--spire-socket: empty")
	}
	addr := socket
	if !strings.Contains(socket, "://") {
		abs, err := filepath.Abs(socket)
		if err != nil {
			return "", fmt.Errorf("--spire-socket %s: %w", socket, err)
		}
		addr = "unix://" + abs
	}
	if err := workloadapi.ValidateAddress(addr); err != nil {
		return "", fmt.Errorf("--spire-socket %s: %w", socket, err)
	}
	return addr, nil
}

// workloadLog passes go-spiffe's Workload API client logs to slog and keeps
// the last error, so a failed start can tell why.
type workloadLog struct {
	log *slog.Logger

	mu   sync.Mutex
	last string
}

func (l *workloadLog) Debugf(format string, args ...any) {
	l.log.Debug("workload api", "detail", fmt.Sprintf(format, args...))
}

func (l *workloadLog) Infof(format string, args ...any) {
	l.log.Info("workload api", "detail", fmt.Sprintf(format, args...))
}

func (l *workloadLog) Warnf(format string, args ...any) {
	l.log.Warn("workload api", "detail", fmt.Sprintf(format, args...))
}

func (l *workloadLog) Errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.mu.Lock()
	l.last = msg
	l.mu.Unlock()
	l.log.Warn("workload api", "error", msg)
}

func (l *workloadLog) lastError() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}
