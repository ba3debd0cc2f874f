package main

import (
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/horizonmesh/horizon/certs"
)

const caUsage = `Usage:
  horizon ca init --trust-domain DOMAIN --out DIR [--ttl D] [--force]
  horizon ca intermediate --cluster NAME --root-dir DIR --out DIR [--ttl D] [--force]
  horizon ca issue --ca-dir DIR --id spiffe://DOMAIN/ns/NS/sa/SA --out DIR [--ttl D] [--force]

The ClusterSet's one SPIFFE trust root and the CAs under it.

init makes a root CA for the trust domain: DIR/root.crt and DIR/root.key.
Keep root.key offline; members need only root.crt.

intermediate makes the intermediate CA of one member cluster under the root in
--root-dir (a directory made by init, or ca.crt, ca.key and root.crt of your
own CA): DIR/ca.crt, DIR/ca.key and DIR/root.crt, the same three keys the
cluster's CA Secret holds.

issue makes a key and an X509-SVID for --id with the CA in --ca-dir (for tests
and development; workloads get theirs from the control plane): DIR/svid.crt,
DIR/svid.key and DIR/bundle.crt.

Private keys are written with mode 0600. Existing files are never overwritten
without --force.

Run 'horizon ca <command> -h' for a command's flags.
`

func caCommand(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, caUsage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "init":
		return caInit(args[1:], stdout, stderr)
	case "intermediate":
		return caIntermediate(args[1:], stdout, stderr)
	case "issue":
		return caIssue(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, caUsage)
		return nil
	}
	fmt.Fprint(stderr, caUsage)
	return fmt.Errorf("ca: unknown command %q", args[0])
}

func caFlags(name string, stderr io.Writer) *flag.FlagSet {
	flags := flag.NewFlagSet("ca "+name, flag.ContinueOnError)
	flags.SetOutput(stderr)
	flags.Usage = func() {
		fmt.Fprint(stderr, caUsage, "\nFlags of ", name, ":\n")
		flags.PrintDefaults()
	}
	return flags
}

// parseCAFlags parses args and checks that each of the required flags is set.
func parseCAFlags(flags *flag.FlagSet, args []string, required ...string) error {
	if err := flags.Parse(args); err != nil {
		return err
	}
	if flags.NArg() > 0 {
		return fmt.Errorf("%s: unexpected arguments %q", flags.Name(), flags.Args())
	}
	var errs []error
	for _, name := range required {
		if flags.Lookup(name).Value.String() == "" {
			errs = append(errs, fmt.Errorf("--%s is required", name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s: %w", flags.Name(), err)
	}
	return nil
}

func caInit(args []string, stdout, stderr io.Writer) error {
	var domain, out string
	var ttl time.Duration
	var force bool
	flags := caFlags("init", stderr)
	flags.StringVar(&domain, "trust-domain", "", "the ClusterSet's SPIFFE trust domain, e.g. mesh.example.com (required)")
	flags.StringVar(&out, "out", "", "directory to write root.crt and root.key to (required)")
	flags.DurationVar(&ttl, "ttl", certs.DefaultRootTTL, "how long the root is valid")
	flags.BoolVar(&force, "force", false, "overwrite existing files")
	if err := parseCAFlags(flags, args, "trust-domain", "out"); err != nil {
		return err
	}
	td, err := spiffeid.TrustDomainFromString(domain)
	if err != nil {
		return fmt.Errorf("ca init: --trust-domain %q: %w", domain, err)
	}
	root, err := certs.NewRoot(td, certs.WithTTL(ttl))
	if err != nil {
		return fmt.Errorf("ca init: %w", err)
	}
	files, err := root.Files()
	if err != nil {
		return fmt.Errorf("ca init: %w", err)
	}
	if err := writeCAFiles(out, files, force, stdout); err != nil {
		return fmt.Errorf("ca init: %w", err)
	}
	describeValidity(stdout, "root CA", root.Certificate())
	fmt.Fprintf(stdout, "trust domain: %s\nroot fingerprint (SHA-256): %s\n", td, certs.Fingerprint(root.Root()))
	return nil
}

func caIntermediate(args []string, stdout, stderr io.Writer) error {
	var cluster, rootDir, out string
	var ttl time.Duration
	var force bool
	flags := caFlags("intermediate", stderr)
	flags.StringVar(&cluster, "cluster", "", "the member cluster's name (required)")
	flags.StringVar(&rootDir, "root-dir", "", "directory of the CA to sign with: root.crt and root.key (from init), or ca.crt, ca.key and root.crt (required)")
	flags.StringVar(&out, "out", "", "directory to write ca.crt, ca.key and root.crt to (required)")
	flags.DurationVar(&ttl, "ttl", certs.DefaultIntermediateTTL, "how long the intermediate is valid (never beyond its parent)")
	flags.BoolVar(&force, "force", false, "overwrite existing files")
	if err := parseCAFlags(flags, args, "cluster", "root-dir", "out"); err != nil {
		return err
	}
	parent, err := certs.LoadDir(rootDir)
	if err != nil {
		return fmt.Errorf("ca intermediate: %w", err)
	}
	ca, err := parent.NewIntermediate(cluster, certs.WithTTL(ttl))
	if err != nil {
		return fmt.Errorf("ca intermediate: %w", err)
	}
	files, err := ca.Files()
	if err != nil {
		return fmt.Errorf("ca intermediate: %w", err)
	}
	if err := writeCAFiles(out, files, force, stdout); err != nil {
		return fmt.Errorf("ca intermediate: %w", err)
	}
	describeValidity(stdout, "intermediate CA of cluster "+cluster, ca.Certificate())
	fmt.Fprintf(stdout, "trust domain: %s\nroot fingerprint (SHA-256): %s\n", ca.TrustDomain(), certs.Fingerprint(ca.Root()))
	return nil
}

func caIssue(args []string, stdout, stderr io.Writer) error {
	var caDir, rawID, out string
	var ttl time.Duration
	var force bool
	flags := caFlags("issue", stderr)
	flags.StringVar(&caDir, "ca-dir", "", "directory of the issuing CA: ca.crt, ca.key and root.crt, or root.crt and root.key (required)")
	flags.StringVar(&rawID, "id", "", "the workload's SPIFFE ID, spiffe://<trust domain>/ns/<namespace>/sa/<service account> (required)")
	flags.StringVar(&out, "out", "", "directory to write svid.crt, svid.key and bundle.crt to (required)")
	flags.DurationVar(&ttl, "ttl", certs.DefaultSVIDTTL, "how long the SVID is valid (never beyond its CA)")
	flags.BoolVar(&force, "force", false, "overwrite existing files")
	if err := parseCAFlags(flags, args, "ca-dir", "id", "out"); err != nil {
		return err
	}
	id, err := spiffeid.FromString(rawID)
	if err != nil {
		return fmt.Errorf("ca issue: --id %q: %w", rawID, err)
	}
	if ttl <= 0 {
		return fmt.Errorf("ca issue: --ttl %v is not positive", ttl)
	}
	ca, err := certs.LoadDir(caDir)
	if err != nil {
		return fmt.Errorf("ca issue: %w", err)
	}
	key, err := certs.GenerateKey()
	if err != nil {
		return fmt.Errorf("ca issue: %w", err)
	}
	svid, err := ca.Issue(key.Public(), id, ttl)
	if err != nil {
		return fmt.Errorf("ca issue: %w", err)
	}
	files, err := certs.SVIDFiles(svid, key, ca.Bundle())
	if err != nil {
		return fmt.Errorf("ca issue: %w", err)
	}
	if err := writeCAFiles(out, files, force, stdout); err != nil {
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
