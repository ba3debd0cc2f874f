package certs

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Names of the PEM files (and Kubernetes Secret keys) of a CA and an SVID.
//
// A root CA made by `horizon ca init` is a directory with RootCertFile and
// RootKeyFile. Any other CA (an intermediate, or an operator's own CA) is
// CertFile (its certificate, then the intermediates above it; the root may
// follow), KeyFile, and RootCertFile (the trust bundle: one or more roots).
// A Kubernetes Secret always has the second form; for a root CA, CertFile is
// the root itself.
const (
	CertFile     = "ca.crt"
	KeyFile      = "ca.key"
	RootCertFile = "root.crt"
	RootKeyFile  = "root.key"
	SVIDFile     = "svid.crt"   // an SVID's certificates: leaf, then intermediates
	SVIDKeyFile  = "svid.key"   // its private key
	BundleFile   = "bundle.crt" // the roots that verify it
	// BundleMapFile holds the roots of BundleFile as a SPIFFE trust bundle
	// map (JSON): what gRPC's file_watcher certificate provider reads as
	// spiffe_trust_bundle_map_file (gRFC A87), to verify a peer by its
	// SPIFFE ID's trust domain instead of by a DNS name.
	BundleMapFile = "bundle.json"
)

// File is one file of a CA or SVID directory. Mode is 0600 for private keys.
type File struct {
	Name string
	Data []byte
	Mode fs.FileMode
}

// LoadCA loads a CA from PEM: certPEM holds its certificate (the one keyPEM's
// key belongs to) and any intermediates above it, rootPEM one or more roots.
// It refuses a key that matches no certificate, a certificate that is not a
// CA, a chain that does not reach a root (or is not valid at the CA's clock),
// and certificates that disagree about the trust domain; errors name the file
// (ca.crt, ca.key, root.crt) and the problem.
func LoadCA(certPEM, keyPEM, rootPEM []byte, opts ...Option) (*CA, error) {
	return load(pemFile{CertFile, certPEM}, pemFile{KeyFile, keyPEM}, pemFile{RootCertFile, rootPEM}, opts)
}

// LoadSecret loads a CA from the data of a Kubernetes Secret with the keys
// ca.crt, ca.key and root.crt (see LoadCA).
func LoadSecret(data map[string][]byte, opts ...Option) (*CA, error) {
	var files [3]pemFile
	for i, name := range []string{CertFile, KeyFile, RootCertFile} {
		b, ok := data[name]
		if !ok {
			return nil, fmt.Errorf("secret has no key %s", name)
		}
		files[i] = pemFile{"secret key " + name, b}
	}
	return load(files[0], files[1], files[2], opts)
}

// LoadDir loads a CA from a directory: ca.crt, ca.key and root.crt, or, for a
// root made by `horizon ca init`, root.crt and root.key.
func LoadDir(dir string, opts ...Option) (*CA, error) {
	exists := func(name string) bool {
		_, err := os.Stat(filepath.Join(dir, name))
		return !errors.Is(err, fs.ErrNotExist)
	}
	names := [3]string{CertFile, KeyFile, RootCertFile}
	switch {
	case exists(KeyFile):
	case exists(RootKeyFile):
		names = [3]string{RootCertFile, RootKeyFile, RootCertFile}
	default:
		return nil, fmt.Errorf("load CA: %s holds neither %s nor %s", dir, KeyFile, RootKeyFile)
	}
	var files [3]pemFile
	for i, name := range names {
		path := filepath.Join(dir, name)
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("load CA: %w", err)
		}
		files[i] = pemFile{path, b}
	}
	return load(files[0], files[1], files[2], opts)
}

type pemFile struct {
	name string
	data []byte
}

func load(certFile, keyFile, rootFile pemFile, opts []Option) (*CA, error) {
	o := newOptions(options{}, opts)
	certs, err := ParseCertificates(certFile.data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certFile.name, err)
	}
	key, err := ParseKey(keyFile.data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyFile.name, err)
	}
	roots, err := ParseCertificates(rootFile.data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", rootFile.name, err)
	}

	i := slices.IndexFunc(certs, func(c *x509.Certificate) bool { return publicKeyEqual(c.PublicKey, key.Public()) })
	if i < 0 {
		if len(certs) == 1 {
			return nil, fmt.Errorf("%s: the key does not match the certificate %q in %s", keyFile.name, certs[0].Subject, certFile.name)
		}
		return nil, fmt.Errorf("%s: the key matches none of the %d certificates in %s", keyFile.name, len(certs), certFile.name)
	}
	cert := certs[i]
	switch {
	case !cert.BasicConstraintsValid || !cert.IsCA:
		return nil, fmt.Errorf("%s: certificate %q is not a CA", certFile.name, cert.Subject)
	case cert.KeyUsage&x509.KeyUsageCertSign == 0:
		return nil, fmt.Errorf("%s: CA %q lacks the keyCertSign key usage", certFile.name, cert.Subject)
	}
	for _, root := range roots {
		if !root.BasicConstraintsValid || !root.IsCA {
			return nil, fmt.Errorf("%s: certificate %q is not a CA", rootFile.name, root.Subject)
		}
	}
	now := o.now()
	chains, err := cert.Verify(x509.VerifyOptions{
		Roots:         certPool(roots),
		Intermediates: certPool(certs),
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, fmt.Errorf("%s: CA %q does not chain to a root in %s: %w", certFile.name, cert.Subject, rootFile.name, err)
	}
	chain := chains[0]

	td, err := trustDomain(o.td, map[string][]*x509.Certificate{certFile.name: chain[:len(chain)-1], rootFile.name: roots})
	if err != nil {
		return nil, err
	}
	ca := &CA{cert: cert, key: key, chain: chain, roots: roots, td: td, now: o.now, metrics: o.metrics}
	if !ca.IsRoot() {
		ca.cluster = o.cluster
		if ou := cert.Subject.OrganizationalUnit; ca.cluster == "" && len(ou) == 1 {
			ca.cluster = ou[0]
		}
	}
	o.metrics.observeCA(ca)
	return ca, nil
}

// trustDomain is the one trust domain that the SPIFFE IDs of the CA
// certificates (by file) name, and want (if not zero).
func trustDomain(want spiffeid.TrustDomain, certsByFile map[string][]*x509.Certificate) (spiffeid.TrustDomain, error) {
	td, from := want, "the given trust domain"
	for _, file := range slices.Sorted(maps.Keys(certsByFile)) {
		for _, cert := range certsByFile[file] {
			for _, u := range cert.URIs {
				if u.Scheme != "spiffe" {
					continue
				}
				id, err := spiffeid.FromURI(u)
				if err != nil {
					return spiffeid.TrustDomain{}, fmt.Errorf("%s: CA %q: URI SAN %q: %w", file, cert.Subject, u, err)
				}
				switch {
				case td.IsZero():
					td, from = id.TrustDomain(), fmt.Sprintf("CA %q in %s", cert.Subject, file)
				case id.TrustDomain() != td:
					return spiffeid.TrustDomain{}, fmt.Errorf("%s: CA %q is in trust domain %s, but %s says %s", file, cert.Subject, id.TrustDomain(), from, td)
				}
			}
		}
	}
	if td.IsZero() {
		return spiffeid.TrustDomain{}, errors.New("no CA certificate carries a SPIFFE ID: name the trust domain")
	}
	return td, nil
}

// Files are the CA's files: root.crt and root.key for a root; ca.crt,
// ca.key and root.crt for an intermediate.
func (c *CA) Files() ([]File, error) {
	key, err := EncodeKey(c.key)
	if err != nil {
		return nil, err
	}
	roots := EncodeCertificates(c.roots...)
	if c.IsRoot() {
		return []File{{RootCertFile, roots, 0o644}, {RootKeyFile, key, 0o600}}, nil
	}
	return []File{{CertFile, EncodeCertificates(c.chain[:len(c.chain)-1]...), 0o644}, {KeyFile, key, 0o600}, {RootCertFile, roots, 0o644}}, nil
}

// SecretData is the CA as the data of a Kubernetes Secret (ca.crt, ca.key,
// root.crt), which LoadSecret loads.
func (c *CA) SecretData() (map[string][]byte, error) {
	key, err := EncodeKey(c.key)
	if err != nil {
		return nil, err
	}
	chain := c.chain[:max(1, len(c.chain)-1)]
	return map[string][]byte{CertFile: EncodeCertificates(chain...), KeyFile: key, RootCertFile: EncodeCertificates(c.roots...)}, nil
}

// SVIDFiles are an SVID's files: svid.crt, svid.key, bundle.crt and
// bundle.json.
func SVIDFiles(svid *SVID, key crypto.Signer, bundle *x509bundle.Bundle) ([]File, error) {
	keyPEM, err := EncodeKey(key)
	if err != nil {
		return nil, err
	}
	bundleMap, err := EncodeBundleMap(bundle)
	if err != nil {
		return nil, err
	}
	return []File{
		{SVIDFile, EncodeCertificates(svid.Certificates...), 0o644},
		{SVIDKeyFile, keyPEM, 0o600},
		{BundleFile, EncodeCertificates(bundle.X509Authorities()...), 0o644},
		{BundleMapFile, bundleMap, 0o644},
	}, nil
}

// EncodeBundleMap is bundle as a SPIFFE trust bundle map of its one trust
// domain: {"trust_domains": {"<td>": <SPIFFE bundle>}}, the X.509
// authorities as JWKs with use x509-svid (SPIFFE Trust Domain and Bundle,
// section 4).
func EncodeBundleMap(bundle *x509bundle.Bundle) ([]byte, error) {
	doc, err := spiffebundle.FromX509Bundle(bundle).Marshal()
	if err != nil {
		return nil, fmt.Errorf("encode bundle map: %w", err)
	}
	out, err := json.Marshal(map[string]map[string]json.RawMessage{
		"trust_domains": {bundle.TrustDomain().Name(): doc},
	})
	if err != nil {
		return nil, fmt.Errorf("encode bundle map: %w", err)
	}
	return append(out, '\n'), nil
}

// WriteFiles writes files into dir, creating it if need be. Unless force is
// set it overwrites nothing: if any of the files exists it writes none and
// returns an error that wraps fs.ErrExist. Each file is written to a
// temporary file and renamed, so a reader sees the old or the new content,
// and a key is never readable by others, even for a moment.
func WriteFiles(dir string, files []File, force bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if !force {
		var exist []string
		for _, f := range files {
			path := filepath.Join(dir, f.Name)
			if _, err := os.Lstat(path); err == nil {
				exist = append(exist, path)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		if len(exist) > 0 {
			return fmt.Errorf("%s: %w", strings.Join(exist, ", "), fs.ErrExist)
		}
	}
	for _, f := range files {
		if err := writeFile(filepath.Join(dir, f.Name), f.Data, f.Mode); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(path string, data []byte, mode fs.FileMode) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(mode); err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// EncodeCertificates is certs as PEM CERTIFICATE blocks, in order.
func EncodeCertificates(certs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, cert := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	}
	return b.Bytes()
}

// EncodeKey is key as a PEM PKCS #8 PRIVATE KEY block.
func EncodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseCertificates parses one or more PEM CERTIFICATE blocks; anything else
// in data is an error.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			if len(bytes.TrimSpace(rest)) > 0 {
				return nil, fmt.Errorf("not PEM after certificate %d", len(certs))
			}
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is %q, want CERTIFICATE", len(certs)+1, block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return certs, nil
}

// ParseKey parses one PEM private key: PKCS #8 (PRIVATE KEY), SEC 1 (EC
// PRIVATE KEY) or PKCS #1 (RSA PRIVATE KEY). EC PARAMETERS blocks, which
// openssl writes before an EC key, are skipped.
func ParseKey(data []byte) (crypto.Signer, error) {
	var key any
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			if len(bytes.TrimSpace(rest)) > 0 {
				return nil, errors.New("not PEM")
			}
			break
		}
		if block.Type == "EC PARAMETERS" {
			continue
		}
		if key != nil {
			return nil, errors.New("more than one private key")
		}
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			return nil, fmt.Errorf("PEM block %q is not a private key", block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", block.Type, err)
		}
	}
	if key == nil {
		return nil, errors.New("no PEM private key")
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%T is not a signing key", key)
	}
	return signer, nil
}

func certPool(certs []*x509.Certificate) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, cert := range certs {
		pool.AddCert(cert)
	}
	return pool
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}
