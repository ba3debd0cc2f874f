package image

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// standIn builds a tiny static Go program for the build's GOARCH: a real ELF
// executable like Horizon's, in a second instead of a minute.
func standIn(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() { println(\"stand-in\") }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module standin\n\ngo 1.21\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "standin")
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH, "GOFLAGS=-buildvcs=false")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build stand-in: %v\n%s", err, b)
	}
	return out
}

func TestBuildWritesLayout(t *testing.T) {
	bin := standIn(t)
	caPath := filepath.Join(t.TempDir(), "ca.crt")
	ca := []byte("-----BEGIN CERTIFICATE-----\nstand-in\n-----END CERTIFICATE-----\n")
	if err := os.WriteFile(caPath, ca, 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := Build(Options{
		Binary: bin, CABundle: caPath, OS: "linux", Arch: runtime.GOARCH,
		Version: "v1.2.3", Revision: "0123abcd", Source: "https://example.test/horizon",
	})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "image")
	if err := WriteLayout(out, img, "horizon:test"); err != nil {
		t.Fatal(err)
	}

	// Read it back from disk, as an importer would.
	p, err := layout.FromPath(out)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("layout holds %d manifests, want 1", len(im.Manifests))
	}
	desc := im.Manifests[0]
	if got := desc.Annotations["org.opencontainers.image.ref.name"]; got != "horizon:test" {
		t.Errorf("ref.name = %q", got)
	}
	if desc.Platform == nil || desc.Platform.OS != "linux" || desc.Platform.Architecture != runtime.GOARCH {
		t.Errorf("descriptor platform = %+v", desc.Platform)
	}
	if desc.MediaType != "application/vnd.oci.image.manifest.v1+json" {
		t.Errorf("manifest media type = %s", desc.MediaType)
	}
	got, err := p.Image(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}

	cf, err := got.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform = %s/%s", cf.OS, cf.Architecture)
	}
	if e := cf.Config.Entrypoint; len(e) != 1 || e[0] != "/horizon" {
		t.Errorf("entrypoint = %q", e)
	}
	if cf.Config.User != "65532:65532" {
		t.Errorf("user = %q, want 65532:65532", cf.Config.User)
	}
	for k, want := range map[string]string{
		"org.opencontainers.image.version":  "v1.2.3",
		"org.opencontainers.image.revision": "0123abcd",
		"org.opencontainers.image.source":   "https://example.test/horizon",
	} {
		if got := cf.Config.Labels[k]; got != want {
			t.Errorf("label %s = %q, want %q", k, got, want)
		}
	}

	layers, err := got.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1", len(layers))
	}
	files := layerFiles(t, layers[0])
	want := map[string]bool{"etc/passwd": true, "etc/group": true, "etc/ssl/certs/ca-certificates.crt": true, "horizon": true}
	for n := range files {
		if files[n].hdr.Typeflag == tar.TypeReg && !want[n] {
			t.Errorf("unexpected file %s in the layer", n)
		}
	}
	passwd := files["etc/passwd"]
	if !strings.Contains(string(passwd.data), "nonroot:x:65532:65532:") {
		t.Errorf("/etc/passwd has no entry for 65532:\n%s", passwd.data)
	}
	if !strings.Contains(string(files["etc/group"].data), "nonroot:x:65532:") {
		t.Errorf("/etc/group has no group 65532:\n%s", files["etc/group"].data)
	}
	if !bytes.Equal(files["etc/ssl/certs/ca-certificates.crt"].data, ca) {
		t.Errorf("CA bundle in the layer differs from the one given")
	}
	h := files["horizon"]
	if h.hdr == nil || h.hdr.Mode&0o111 != 0o111 || h.hdr.Typeflag != tar.TypeReg {
		t.Fatalf("/horizon missing or not executable by everyone: %+v", h.hdr)
	}
	want256, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(h.data) != sha256.Sum256(want256) {
		t.Errorf("/horizon in the layer is not the binary given")
	}
	if _, err := elf.NewFile(bytes.NewReader(h.data)); err != nil {
		t.Errorf("/horizon is not ELF: %v", err)
	}

	// Equal inputs give the same image (fixed timestamps), so a rebuild is no change.
	again, err := Build(Options{
		Binary: bin, CABundle: caPath, OS: "linux", Arch: runtime.GOARCH,
		Version: "v1.2.3", Revision: "0123abcd", Source: "https://example.test/horizon",
	})
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := got.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("rebuild digest %s != %s", d2, d1)
	}
}

func TestBuildRefuses(t *testing.T) {
	bin := standIn(t)
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, []byte("pem"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := Options{Binary: bin, CABundle: ca, OS: "linux", Arch: runtime.GOARCH}

	t.Run("missing CA bundle", func(t *testing.T) {
		o := base
		o.CABundle = filepath.Join(t.TempDir(), "absent.crt")
		if _, err := Build(o); err == nil || !strings.Contains(err.Error(), "CA bundle") {
			t.Fatalf("err = %v, want a CA bundle error", err)
		}
	})
	t.Run("negative uid", func(t *testing.T) {
		o := base
		o.UID = -1
		if _, err := Build(o); err == nil {
			t.Fatal("negative uid accepted")
		}
	})
	t.Run("not ELF", func(t *testing.T) {
		o := base
		o.Binary = ca
		if _, err := Build(o); err == nil || !strings.Contains(err.Error(), "ELF") {
			t.Fatalf("err = %v, want not-ELF error", err)
		}
	})
	t.Run("wrong architecture", func(t *testing.T) {
		o := base
		o.Arch = map[string]string{"amd64": "arm64"}[runtime.GOARCH]
		if o.Arch == "" {
			o.Arch = "amd64"
		}
		if _, err := Build(o); err == nil {
			t.Fatal("binary for another architecture accepted")
		}
	})
	t.Run("path outside /", func(t *testing.T) {
		for _, p := range []string{"probe", "/bin/probe", "/", "/../probe"} {
			o := base
			o.Path = p
			if _, err := Build(o); err == nil || !strings.Contains(err.Error(), "path") {
				t.Errorf("path %q: err = %v, want a path error", p, err)
			}
		}
	})
	t.Run("dynamically linked", func(t *testing.T) {
		dyn := dynamicBinary(t)
		o := base
		o.Binary = dyn
		if _, err := Build(o); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
			t.Fatalf("err = %v, want dynamically linked error", err)
		}
	})
}

// dynamicBinary is a host executable with a program interpreter.
func dynamicBinary(t *testing.T) string {
	for _, p := range []string{"/bin/true", "/usr/bin/true", "/bin/sh"} {
		f, err := elf.Open(p)
		if err != nil {
			continue
		}
		dyn := false
		for _, pr := range f.Progs {
			dyn = dyn || pr.Type == elf.PT_INTERP
		}
		ok := dyn && f.Machine == map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[runtime.GOARCH]
		f.Close()
		if ok {
			return p
		}
	}
	t.Skip("no dynamically linked host executable for this architecture")
	return ""
}

type entry struct {
	hdr  *tar.Header
	data []byte
}

func layerFiles(t *testing.T, l v1.Layer) map[string]entry {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string]entry{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = entry{hdr: h, data: b}
	}
}

// TestWriteTarball: a test image (another binary path, default arguments)
// written as the docker tarball `ctr images import` reads, tagged with its ref.
func TestWriteTarball(t *testing.T) {
	bin := standIn(t)
	caPath := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caPath, []byte("pem"), 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := Build(Options{Binary: bin, Path: "/probe", Args: []string{"serve", ":8080"}, CABundle: caPath, OS: "linux", Arch: runtime.GOARCH})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "probe.tar")
	if err := WriteTarball(file, img, "probe:test"); err != nil {
		t.Fatal(err)
	}
	if err := WriteTarball(file, img, "Not A Ref"); err == nil || !strings.Contains(err.Error(), "Not A Ref") {
		t.Errorf("bad ref: err = %v, want one naming the ref", err)
	}

	manifest, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(file) })
	if err != nil {
		t.Fatal(err)
	}
	if len(manifest) != 1 || !slices.Equal(manifest[0].RepoTags, []string{"probe:test"}) {
		t.Fatalf("manifest.json = %+v, want one image tagged probe:test", manifest)
	}
	tag, _ := name.NewTag("probe:test")
	got, err := tarball.ImageFromPath(file, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := got.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{"/probe"}) || !slices.Equal(cf.Config.Cmd, []string{"serve", ":8080"}) {
		t.Errorf("entrypoint %q cmd %q, want [/probe] [serve :8080]", cf.Config.Entrypoint, cf.Config.Cmd)
	}
	layers, err := got.Layers()
	if err != nil {
		t.Fatal(err)
	}
	files := layerFiles(t, layers[0])
	if h := files["probe"].hdr; h == nil || h.Mode&0o111 != 0o111 {
		t.Errorf("/probe missing or not executable: %+v", h)
	}
	if _, ok := files["horizon"]; ok {
		t.Error("/horizon in an image whose binary is /probe")
	}
	// The tarball's manifest is docker's, so compare the configs.
	want, _ := img.ConfigName()
	if d, _ := got.ConfigName(); d != want {
		t.Errorf("image read back has config %s, want %s", d, want)
	}
}
