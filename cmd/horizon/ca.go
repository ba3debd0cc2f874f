package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/horizonmesh/horizon/certs"
)

// caInitConfig is what `horizon ca init` is asked for.
type caInitConfig struct {
	trustDomain, out string
	ttl              time.Duration
	force            bool
}

// caIntermediateConfig is what `horizon ca intermediate` is asked for.
type caIntermediateConfig struct {
	cluster, rootDir, out string
	ttl                   time.Duration
	force                 bool
}

// caIssueConfig is what `horizon ca issue` is asked for.
type caIssueConfig struct {
	caDir, id, out string
	ttl            time.Duration
	force          bool
}

// run runs `horizon ca init`: a root CA.
func (cfg caInitConfig) run(stdout io.Writer) error {
	td, err := spiffeid.TrustDomainFromString(cfg.trustDomain)
	if err != nil {
		return fmt.Errorf("ca init: --trust-domain %q: %w", cfg.trustDomain, err)
	}
	root, err := certs.NewRoot(td, certs.WithTTL(cfg.ttl))
	if err != nil {
		return fmt.Errorf("ca init: %w", err)
	}
	files, err := root.Files()
	if err != nil {
		return fmt.Errorf("ca init: %w", err)
	}
	if err := writeCAFiles(cfg.out, files, cfg.force, stdout); err != nil {
		return fmt.Errorf("ca init: %w", err)
	}
	describeValidity(stdout, "root CA", root.Certificate())
	fmt.Fprintf(stdout, "trust domain: %s\nroot fingerprint (SHA-256): %s\n", td, certs.Fingerprint(root.Root()))
	return nil
}

// run runs `horizon ca intermediate`: a member cluster's
// intermediate CA.
func (cfg caIntermediateConfig) run(stdout io.Writer) error {
	parent, err := certs.LoadDir(cfg.rootDir)
	if err != nil {
		return fmt.Errorf("ca intermediate: %w", err)
	}
	ca, err := parent.NewIntermediate(cfg.cluster, certs.WithTTL(cfg.ttl))
	if err != nil {
		return fmt.Errorf("ca intermediate: %w", err)
	}
	files, err := ca.Files()
	if err != nil {
		return fmt.Errorf("ca intermediate: %w", err)
	}
	if err := writeCAFiles(cfg.out, files, cfg.force, stdout); err != nil {
		return fmt.Errorf("ca intermediate: %w", err)
	}
	describeValidity(stdout, "intermediate CA of cluster "+cfg.cluster, ca.Certificate())
	fmt.Fprintf(stdout, "trust domain: %s\nroot fingerprint (SHA-256): %s\n", ca.TrustDomain(), certs.Fingerprint(ca.Root()))
	return nil
}

// run runs `horizon ca issue`: a key and an X509-SVID.
func (cfg caIssueConfig) run(stdout io.Writer) error {
	id, err := spiffeid.FromString(cfg.id)
	if err != nil {
		return fmt.Errorf("ca issue: --id %q: %w", cfg.id, err)
	}
	if cfg.ttl <= 0 {
		return fmt.Errorf("ca issue: --ttl %v is not positive", cfg.ttl)
	}
	ca, err := certs.LoadDir(cfg.caDir)
	if err != nil {
		return fmt.Errorf("ca issue: %w", err)
	}
	key, err := certs.GenerateKey()
	if err != nil {
		return fmt.Errorf("ca issue: %w", err)
	}
	svid, err := ca.Issue(key.Public(), id, cfg.ttl)
	if err != nil {
		return fmt.Errorf("ca issue: %w", err)
	}
	files, err := certs.SVIDFiles(svid, key, ca.Bundle())
	if err != nil {
		return fmt.Errorf("ca issue: %w", err)
	}
	if err := writeCAFiles(cfg.out, files, cfg.force, stdout); err != nil {
		return fmt.Errorf("ca issue: %w", err)
	}
	describeValidity(stdout, "X509-SVID "+id.String(), svid.Leaf())
	fmt.Fprintf(stdout, "root fingerprint (SHA-256): %s\n", certs.Fingerprint(ca.Root()))
	return nil
}

// writeCAFiles writes files into dir and lists them on stdout.
func writeCAFiles(dir string, files []certs.File, force bool, stdout io.Writer) error {
	if err := certs.WriteFiles(dir, files, force); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w (use --force to overwrite)", err)
		}
		return err
	}
	for _, f := range files {
		fmt.Fprintf(stdout, "wrote %s (mode %04o)\n", filepath.Join(dir, f.Name), f.Mode)
	}
	return nil
}

func describeValidity(stdout io.Writer, what string, cert *x509.Certificate) {
	fmt.Fprintf(stdout, "%s, valid until %s\n", what, cert.NotAfter.UTC().Format(time.RFC3339))
}
