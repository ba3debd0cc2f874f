package agent

import (
	"crypto"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/horizonmesh/horizon/certs"
)

// dataLink is the symlink the files point through; swapping it replaces all
// of them at once.
const dataLink = "..data"

// fileNames are the files a reader opens, each a symlink to dataLink/<name>.
var fileNames = []string{certs.SVIDFile, certs.SVIDKeyFile, certs.BundleFile, certs.BundleMapFile}

// writeDir writes svid and bundle into a new hidden directory under dir,
// points dataLink at it with one rename, makes sure each file is a symlink
// through dataLink, and removes the directory it replaced.
func writeDir(dir string, svid *x509svid.SVID, bundle *x509bundle.Bundle) error {
	key, ok := svid.PrivateKey.(crypto.Signer)
	if !ok {
		return fmt.Errorf("private key %T is not a crypto.Signer", svid.PrivateKey)
	}
	files, err := certs.SVIDFiles(&certs.SVID{ID: svid.ID, Certificates: svid.Certificates}, key, bundle)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	data, err := os.MkdirTemp(dir, "..svid-")
	if err != nil {
		return err
	}
	if err := os.Chmod(data, 0o755); err != nil {
		return err
	}
	if err := certs.WriteFiles(data, files, true); err != nil {
		os.RemoveAll(data)
		return err
	}
	old, _ := os.Readlink(filepath.Join(dir, dataLink))
	tmp := filepath.Join(dir, dataLink+".tmp")
	os.Remove(tmp)
	if err := os.Symlink(filepath.Base(data), tmp); err != nil {
		os.RemoveAll(data)
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, dataLink)); err != nil {
		os.RemoveAll(data)
		return err
	}
	for _, name := range fileNames {
		path := filepath.Join(dir, name)
		target := filepath.Join(dataLink, name)
		if got, err := os.Readlink(path); err == nil && got == target {
			continue
		}
		// A regular file (from `horizon ca issue`, say) or a wrong link:
		// replace it by a link, atomically.
		linkTmp := path + ".tmp"
		os.Remove(linkTmp)
		if err := os.Symlink(target, linkTmp); err != nil {
			return err
		}
		if err := os.Rename(linkTmp, path); err != nil {
			return err
		}
	}
	if old != "" && old != filepath.Base(data) {
		if err := os.RemoveAll(filepath.Join(dir, filepath.Base(old))); err != nil {
			return err
		}
	}
	return nil
}

// readDir reads the SVID, key and bundle files of dir.
func readDir(dir string, td spiffeid.TrustDomain) (*x509svid.SVID, *x509bundle.Bundle, error) {
	read := func(name string) ([]byte, error) { return os.ReadFile(filepath.Join(dir, name)) }
	certPEM, err := read(certs.SVIDFile)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := read(certs.SVIDKeyFile)
	if err != nil {
		return nil, nil, err
	}
	bundlePEM, err := read(certs.BundleFile)
	if err != nil {
		return nil, nil, err
	}
	svid, err := x509svid.Parse(certPEM, keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", dir, err)
	}
	roots, err := certs.ParseCertificates(bundlePEM)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", filepath.Join(dir, certs.BundleFile), err)
	}
	if len(roots) == 0 {
		return nil, nil, fmt.Errorf("%s: %w", filepath.Join(dir, certs.BundleFile), fs.ErrNotExist)
	}
	if svid.ID.TrustDomain() != td {
		return nil, nil, errors.New("SVID of another trust domain")
	}
	return svid, x509bundle.FromX509Authorities(td, roots), nil
}
