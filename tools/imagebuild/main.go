// Command imagebuild packs the static podflow binary into an OCI image
// without a container engine: one layer holding /podflow and nothing else
// (no shell, no libc, no package manager), written as an OCI image layout
// and as a tarball that `docker load`, `podman load`, `ctr import` or
// `crane push` take.
//
//	go run ./imagebuild -binary ../bin/podflow -version v0.1.0 \
//	    -layout ../bin/image -tarball ../bin/podflow-image.tar
package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"flag"
	"fmt"
	"io"
	"os"
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

// Options describe the image.
type Options struct {
	Binary     string // the static podflow binary
	Repository string // image name without tag
	Version    string // tag and org.opencontainers.image.version
	Revision   string // org.opencontainers.image.revision
	Created    time.Time
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("imagebuild", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o Options
	fs.StringVar(&o.Binary, "binary", "bin/podflow", "the static podflow binary (make build)")
	fs.StringVar(&o.Repository, "repository", "ghcr.io/podflow/podflow", "image repository")
	fs.StringVar(&o.Version, "version", "dev", "image tag and version label")
	fs.StringVar(&o.Revision, "revision", "unknown", "source revision label")
	layoutDir := fs.String("layout", "", "write an OCI image layout to this directory (replaced)")
	tarPath := fs.String("tarball", "", "write an image tarball to this file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	// Reproducible by default: the creation time comes from
	// SOURCE_DATE_EPOCH when set, else the Unix epoch.
	o.Created = time.Unix(0, 0).UTC()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			fmt.Fprintf(stderr, "imagebuild: SOURCE_DATE_EPOCH=%q: %v\n", s, err)
			return 2
		}
		o.Created = time.Unix(sec, 0).UTC()
	}
	if *layoutDir == "" && *tarPath == "" {
		fmt.Fprintln(stderr, "imagebuild: give -layout, -tarball or both")
		return 2
	}
	img, ref, err := Build(&o)
	if err != nil {
		fmt.Fprintf(stderr, "imagebuild: %v\n", err)
		return 1
	}
	if *tarPath != "" {
		if err := tarball.WriteToFile(*tarPath, ref, img); err != nil {
			fmt.Fprintf(stderr, "imagebuild: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "imagebuild: %s -> %s\n", ref, *tarPath)
	}
	if *layoutDir != "" {
		if err := WriteLayout(*layoutDir, ref, img); err != nil {
			fmt.Fprintf(stderr, "imagebuild: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "imagebuild: %s -> %s (OCI layout)\n", ref, *layoutDir)
	}
	d, err := img.Digest()
	if err != nil {
		fmt.Fprintf(stderr, "imagebuild: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "imagebuild: digest %s\n", d)
	return 0
}

// Build assembles the image and its tag.
func Build(o *Options) (v1.Image, name.Tag, error) {
	ref, err := name.NewTag(o.Repository + ":" + o.Version)
	if err != nil {
		return nil, name.Tag{}, err
	}
	bin, err := os.ReadFile(o.Binary)
	if err != nil {
		return nil, name.Tag{}, err
	}
	arch, err := staticArch(o.Binary)
	if err != nil {
		return nil, name.Tag{}, err
	}
	layerTar, err := binaryLayer(bin, o.Created)
	if err != nil {
		return nil, name.Tag{}, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, name.Tag{}, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: o.Created},
			CreatedBy: "imagebuild: /podflow",
			Comment:   "the static podflow binary",
		},
	})
	if err != nil {
		return nil, name.Tag{}, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, name.Tag{}, err
	}
	cf = cf.DeepCopy()
	cf.Architecture = arch
	cf.OS = "linux"
	cf.Created = v1.Time{Time: o.Created}
	cf.Config.Entrypoint = []string{"/podflow"}
	cf.Config.Cmd = nil
	cf.Config.WorkingDir = "/"
	// uid 0: the exporter needs CAP_NET_ADMIN, which a container runtime
	// grants a non-root process only through ambient capabilities that
	// Kubernetes does not set. The DaemonSet drops every other capability
	// (docs/security.md).
	cf.Config.User = "0:0"
	cf.Config.ExposedPorts = map[string]struct{}{"9810/tcp": {}}
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.title":       "podflow",
		"org.opencontainers.image.description": "Pod-to-pod traffic counters for Prometheus, from netfilter NFLOG",
		"org.opencontainers.image.source":      "https://github.com/podflow/podflow",
		"org.opencontainers.image.version":     o.Version,
		"org.opencontainers.image.revision":    o.Revision,
		"org.opencontainers.image.created":     o.Created.Format(time.RFC3339),
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, name.Tag{}, err
	}
	img = mutate.Annotations(img, map[string]string{
		"org.opencontainers.image.version":  o.Version,
		"org.opencontainers.image.revision": o.Revision,
		"org.opencontainers.image.source":   "https://github.com/podflow/podflow",
	}).(v1.Image)
	return img, ref, nil
}

// binaryLayer is a tar stream with the one file /podflow, owned by root,
// mode 0755, with a fixed modification time.
func binaryLayer(bin []byte, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg,
		Name:     "podflow",
		Mode:     0o755,
		Size:     int64(len(bin)),
		ModTime:  mtime,
		Format:   tar.FormatPAX,
	}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(bin); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// staticArch returns the OCI architecture of an ELF binary and refuses one
// that needs a dynamic loader: the image has no libc.
func staticArch(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", fmt.Errorf("%s: not an ELF binary: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "", fmt.Errorf("%s is dynamically linked; build it with CGO_ENABLED=0 (make build)", path)
		}
	}
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64", nil
	case elf.EM_AARCH64:
		return "arm64", nil
	case elf.EM_RISCV:
		return "riscv64", nil
	case elf.EM_PPC64:
		return "ppc64le", nil
	case elf.EM_S390:
		return "s390x", nil
	}
	return "", fmt.Errorf("%s: unsupported machine %s", path, f.Machine)
}

// WriteLayout replaces dir with an OCI image layout holding img, tagged
// with ref through the org.opencontainers.image.ref.name annotation.
func WriteLayout(dir string, ref name.Tag, img v1.Image) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	return p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": ref.String(),
	}))
}
