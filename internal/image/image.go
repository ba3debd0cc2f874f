// Package image builds Horizon's container image in Go, without a Docker
// engine, the way ko does: a static binary on a base made from scratch (a
// passwd and group entry for a non-root user and a CA bundle, nothing else),
// written as an OCI image layout (make image) or as a docker image tarball
// that `ctr images import` loads into a node's containerd (internal/nodetest).
// The same Build makes the test images (a pause image, a demo app) from any
// static Go binary, with its own path and arguments.
package image

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Paths inside the image.
const (
	BinaryPath   = "/horizon"
	CABundlePath = "/etc/ssl/certs/ca-certificates.crt"
)

// DefaultUID is the non-root user (and group) the image runs as, distroless's
// "nonroot".
const DefaultUID = 65532

// OCI annotation keys used as image labels.
const (
	LabelVersion  = "org.opencontainers.image.version"
	LabelRevision = "org.opencontainers.image.revision"
	LabelSource   = "org.opencontainers.image.source"
)

// Options describe one image.
type Options struct {
	Binary   string   // path of the static linux binary to put in the image
	Path     string   // where the binary goes in the image, its entrypoint; BinaryPath when ""
	Args     []string // the image's default arguments (its Cmd), after the entrypoint
	CABundle string   // path of a PEM CA bundle; it must exist
	UID      int      // user and group id; DefaultUID when 0 (root is refused)
	OS, Arch string   // platform; "linux" and the binary's GOARCH
	Version  string
	Revision string
	Source   string
}

// epoch is every timestamp in the image, so equal inputs give byte-equal images.
var epoch = time.Unix(0, 0).UTC()

// Build assembles the image from o. It reads the binary and the CA bundle and
// refuses a dynamically linked binary (it could not run on a scratch base) and a
// missing CA bundle (Horizon could not verify any TLS peer outside the mesh,
// such as a member cluster's apiserver).
func Build(o Options) (v1.Image, error) {
	if o.UID == 0 {
		o.UID = DefaultUID
	}
	if o.UID < 0 {
		return nil, fmt.Errorf("uid %d: must be a non-root user id", o.UID)
	}
	if o.OS == "" || o.Arch == "" {
		return nil, errors.New("os and arch are required")
	}
	if o.Path == "" {
		o.Path = BinaryPath
	}
	if o.Path == "/" || !path.IsAbs(o.Path) || path.Clean(o.Path) != o.Path || path.Dir(o.Path) != "/" {
		return nil, fmt.Errorf("path %q: must be a file in / (like %s)", o.Path, BinaryPath)
	}
	bin, err := os.ReadFile(o.Binary)
	if err != nil {
		return nil, fmt.Errorf("read binary: %w", err)
	}
	if err := checkStatic(bin, o.Arch); err != nil {
		return nil, fmt.Errorf("binary %s: %w", o.Binary, err)
	}
	ca, err := os.ReadFile(o.CABundle)
	if err != nil {
		return nil, fmt.Errorf("read CA bundle (the image needs one to verify TLS peers): %w", err)
	}
	if len(bytes.TrimSpace(ca)) == 0 {
		return nil, fmt.Errorf("CA bundle %s is empty", o.CABundle)
	}

	tarBytes, err := layerTar(o.UID, o.Path[1:], bin, ca)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(tarBytes)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}

	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "horizon image builder", Comment: "passwd, group, CA bundle, " + o.Path[1:]},
	})
	if err != nil {
		return nil, fmt.Errorf("append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = o.OS, o.Arch
	cf.Created = v1.Time{Time: epoch}
	user := strconv.Itoa(o.UID)
	cf.Config = v1.Config{
		Entrypoint: []string{o.Path},
		Cmd:        o.Args,
		User:       user + ":" + user,
		WorkingDir: "/",
		Env: []string{
			"PATH=/",
			"SSL_CERT_FILE=" + CABundlePath,
		},
		Labels: map[string]string{
			LabelVersion:  o.Version,
			LabelRevision: o.Revision,
			LabelSource:   o.Source,
		},
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("set config: %w", err)
	}
	return mutate.Annotations(img, cf.Config.Labels).(v1.Image), nil
}

// WriteLayout writes img as the only image of a fresh OCI image layout in dir,
// annotated with ref as its org.opencontainers.image.ref.name (what
// `ctr images import` tags it as).
func WriteLayout(dir string, img v1.Image, ref string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("clear %s: %w", dir, err)
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("layout %s: %w", dir, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	opts := []layout.Option{layout.WithPlatform(v1.Platform{OS: cf.OS, Architecture: cf.Architecture})}
	if ref != "" {
		opts = append(opts, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref}))
	}
	if err := p.AppendImage(img, opts...); err != nil {
		return fmt.Errorf("write image to %s: %w", dir, err)
	}
	return nil
}

// WriteTarball writes img to file as a docker image tarball (manifest.json
// with ref as its repository tag), the format `ctr images import` reads;
// containerd normalises a short ref such as "horizon:dev" the way the kubelet
// normalises a pod's image name, so a pod naming ref runs this image.
func WriteTarball(file string, img v1.Image, ref string) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("image ref %q: %w", ref, err)
	}
	if err := tarball.WriteToFile(file, tag, img); err != nil {
		return fmt.Errorf("write image %s to %s: %w", ref, file, err)
	}
	return nil
}

// checkStatic reports an error unless bin is an ELF executable for arch with no
// program interpreter (a statically linked binary, as CGO_ENABLED=0 builds).
func checkStatic(bin []byte, arch string) error {
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return fmt.Errorf("not an ELF executable: %w", err)
	}
	defer f.Close()
	want, ok := map[string]elf.Machine{
		"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "386": elf.EM_386,
		"arm": elf.EM_ARM, "ppc64le": elf.EM_PPC64, "s390x": elf.EM_S390, "riscv64": elf.EM_RISCV,
	}[arch]
	if ok && f.Machine != want {
		return fmt.Errorf("built for %v, image is %s", f.Machine, arch)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("dynamically linked (has a program interpreter); build it with CGO_ENABLED=0")
		}
	}
	return nil
}

// layerTar is the image's single layer: directories, /etc/passwd and
// /etc/group for root and the user, the CA bundle, and the binary at binName.
func layerTar(uid int, binName string, bin, ca []byte) ([]byte, error) {
	id := strconv.Itoa(uid)
	passwd := "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nonroot:x:" + id + ":" + id + ":nonroot:/home/nonroot:/sbin/nologin\n"
	group := "root:x:0:\nnonroot:x:" + id + ":\n"

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string, mode int64, owner int) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, Uid: owner, Gid: owner, ModTime: epoch, Format: tar.FormatPAX})
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	err := errors.Join(
		dir("etc/", 0o755, 0),
		dir("etc/ssl/", 0o755, 0),
		dir("etc/ssl/certs/", 0o755, 0),
		dir("home/", 0o755, 0),
		dir("home/nonroot/", 0o700, uid),
		dir("tmp/", 0o1777, 0),
		file("etc/passwd", 0o644, []byte(passwd)),
		file("etc/group", 0o644, []byte(group)),
		file("etc/ssl/certs/ca-certificates.crt", 0o644, ca),
		file(binName, 0o755, bin),
		tw.Close(),
	)
	if err != nil {
		return nil, fmt.Errorf("layer tar: %w", err)
	}
	return buf.Bytes(), nil
}
