package nodetest

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/horizonmesh/horizon/internal/image"
)

// PauseImage is the sandbox image every node's containerd uses; StartNode
// imports it, built from ./pause.
const PauseImage = "hznt-pause:1"

// hostCABundle goes into test images (image.Build wants a CA bundle).
const hostCABundle = "/etc/ssl/certs/ca-certificates.crt"

// ImageSpec is a test image: one static Go binary on image.Build's base.
type ImageSpec struct {
	Ref     string   // the name pods use, like "horizon:dev" (pull policy Never)
	Package string   // Go package to build, like "github.com/horizonmesh/horizon/cmd/horizon"
	Path    string   // the binary's path in the image; "/" + the package's last element when ""
	Args    []string // the image's default arguments
	LDFlags string   // extra -ldflags for go build
}

// BuildImage builds s's package as a static linux binary for this machine
// (CGO_ENABLED=0, through the Go build cache) and writes its image as a docker
// tarball in a test folder, for Node.ImportImage. It returns the tarball's path.
func BuildImage(t testing.TB, s ImageSpec) string {
	t.Helper()
	file, err := buildImage(t.TempDir(), s)
	if err != nil {
		t.Fatal(err)
	}
	return file
}

func buildImage(dir string, s ImageSpec) (string, error) {
	if s.Path == "" {
		s.Path = "/" + path.Base(s.Package)
	}
	bin := filepath.Join(dir, path.Base(s.Package))
	args := []string{"build", "-trimpath", "-o", bin}
	if s.LDFlags != "" {
		args = append(args, "-ldflags", s.LDFlags)
	}
	cmd := exec.Command("go", append(args, s.Package)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH, "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("image %s: go build %s: %w\n%s", s.Ref, s.Package, err, out)
	}
	img, err := image.Build(image.Options{
		Binary: bin, Path: s.Path, Args: s.Args, CABundle: hostCABundle,
		OS: "linux", Arch: runtime.GOARCH, Version: "test",
	})
	if err != nil {
		return "", fmt.Errorf("image %s: %w", s.Ref, err)
	}
	file := filepath.Join(dir, path.Base(s.Package)+".tar")
	if err := image.WriteTarball(file, img, s.Ref); err != nil {
		return "", err
	}
	return file, nil
}

// pauseImage builds PauseImage into dir.
func pauseImage(dir string) (string, error) {
	_, self, _, _ := runtime.Caller(0)
	return buildImage(dir, ImageSpec{Ref: PauseImage, Package: filepath.Join(filepath.Dir(self), "pause"), Path: "/pause"})
}
