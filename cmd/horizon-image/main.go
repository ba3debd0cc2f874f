// Command horizon-image builds Horizon's container image from a static binary
// without a Docker engine and writes it as an OCI image layout (make image),
// and optionally as a docker image tarball that `ctr images import` loads.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"

	"github.com/horizonmesh/horizon/internal/image"
)

func main() {
	var o image.Options
	flag.StringVar(&o.Binary, "binary", "", "static linux binary to put at "+image.BinaryPath)
	flag.StringVar(&o.CABundle, "ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "PEM CA bundle to copy to "+image.CABundlePath+" (required)")
	flag.IntVar(&o.UID, "uid", image.DefaultUID, "non-root user and group id the image runs as")
	flag.StringVar(&o.OS, "os", "linux", "image OS")
	flag.StringVar(&o.Arch, "arch", runtime.GOARCH, "image architecture (the binary's GOARCH)")
	flag.StringVar(&o.Version, "version", "dev", "org.opencontainers.image.version")
	flag.StringVar(&o.Revision, "revision", "", "org.opencontainers.image.revision (git commit)")
	flag.StringVar(&o.Source, "source", "", "org.opencontainers.image.source")
	out := flag.String("out", "bin/image", "OCI image layout directory to (re)write")
	ref := flag.String("ref", "horizon:dev", "image name annotated in the layout (org.opencontainers.image.ref.name)")
	tar := flag.String("tarball", "", "also write the image to this docker image tarball, tagged ref (for `ctr images import`)")
	flag.Parse()

	img, err := image.Build(o)
	if err == nil {
		err = image.WriteLayout(*out, img, *ref)
	}
	if err == nil && *tar != "" {
		err = image.WriteTarball(*tar, img, *ref)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "horizon-image:", err)
		os.Exit(1)
	}
	d, _ := img.Digest()
	fmt.Printf("wrote %s (%s) to %s\n", *ref, d, *out)
}
