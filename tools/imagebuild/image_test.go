package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// forbidden are files whose presence means the image grew a shell or a
// package manager.
var forbidden = []string{"sh", "bash", "ash", "busybox", "apt", "apt-get", "apk", "dpkg", "rpm", "yum", "dnf", "microdnf"}

// checkImage opens img as a runtime would and checks the podflow contract:
// the entrypoint is /podflow, the layers hold that one file and nothing
// else, and the file runs --version. It returns the --version output.
func checkImage(t *testing.T, img v1.Image) string {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{"/podflow"}) {
		t.Errorf("entrypoint %q, want [/podflow]", cf.Config.Entrypoint)
	}
	if len(cf.Config.Cmd) > 0 {
		t.Errorf("cmd %q would become podflow arguments", cf.Config.Cmd)
	}
	if cf.OS != "linux" || cf.Architecture == "" {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}
	if cf.Config.User != "0:0" {
		t.Errorf("user %q: docs/security.md documents 0:0", cf.Config.User)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	var bin []byte
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			p := path.Clean("/" + h.Name)
			files = append(files, p)
			if slices.Contains(forbidden, path.Base(p)) {
				t.Errorf("the image holds %s", p)
			}
			if p == "/podflow" {
				if h.Typeflag != tar.TypeReg || h.Mode&0o111 == 0 || h.Uid != 0 {
					t.Errorf("/podflow: type %c mode %o uid %d", h.Typeflag, h.Mode, h.Uid)
				}
				if bin, err = io.ReadAll(tr); err != nil {
					t.Fatal(err)
				}
			}
		}
		rc.Close()
	}
	if !slices.Equal(files, []string{"/podflow"}) {
		t.Errorf("the layers hold %q, want only /podflow", files)
	}
	if bin == nil {
		t.Fatal("no /podflow in the image")
	}

	exe := filepath.Join(t.TempDir(), "podflow")
	if err := os.WriteFile(exe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "--version")
	// No environment and an empty directory: what the image offers.
	cmd.Env = []string{}
	cmd.Dir = t.TempDir()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("/podflow --version: %v\n%s", err, out.String())
	}
	v := strings.TrimSpace(out.String())
	if !strings.Contains(v, "version") {
		t.Errorf("/podflow --version printed %q", v)
	}
	return v
}

// TestBuildAndOpen builds an image around a stand-in static binary and
// reads it back from both outputs.
func TestBuildAndOpen(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "podflow")
	build := exec.Command("go", "build", "-o", bin, "./testdata/fakepodflow")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	tarPath, layoutDir := filepath.Join(dir, "image.tar"), filepath.Join(dir, "layout")
	var stdout, stderr bytes.Buffer
	if rc := run([]string{"-binary", bin, "-version", "v1.2.3", "-revision", "abc",
		"-tarball", tarPath, "-layout", layoutDir}, &stdout, &stderr); rc != 0 {
		t.Fatalf("imagebuild exited %d: %s", rc, stderr.String())
	}

	img, err := tarball.ImageFromPath(tarPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, img)
	cf, _ := img.ConfigFile()
	if cf.Config.Labels["org.opencontainers.image.version"] != "v1.2.3" ||
		cf.Config.Labels["org.opencontainers.image.revision"] != "abc" {
		t.Errorf("labels %v", cf.Config.Labels)
	}
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(tarPath) })
	if err != nil || len(m) != 1 || !slices.Equal(m[0].RepoTags, []string{"ghcr.io/podflow/podflow:v1.2.3"}) {
		t.Errorf("tarball tags: %+v %v", m, err)
	}

	idx, err := layout.ImageIndexFromPath(layoutDir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 1 {
		t.Fatalf("layout index: %+v %v", im, err)
	}
	if im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "ghcr.io/podflow/podflow:v1.2.3" {
		t.Errorf("layout ref annotation %v", im.Manifests[0].Annotations)
	}
	limg, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, limg)

	// Reproducible: the same inputs give the same digest.
	opts := Options{Binary: bin, Repository: "ghcr.io/podflow/podflow", Version: "v1.2.3", Revision: "abc", Created: time.Unix(0, 0).UTC()}
	img1, _, err := Build(&opts)
	if err != nil {
		t.Fatal(err)
	}
	img2, _, err := Build(&opts)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := img1.Digest()
	if d2, _ := img2.Digest(); d1 != d2 || d1 != im.Manifests[0].Digest {
		t.Errorf("digests differ between builds: %s %s, layout %s", d1, d2, im.Manifests[0].Digest)
	}
}

func TestRefusesDynamicBinary(t *testing.T) {
	// /bin/true on Debian is dynamically linked.
	if _, err := staticArch("/bin/true"); err == nil {
		t.Error("a dynamically linked binary was accepted")
	}
}

// TestShippedImage checks the image `make image` built from bin/podflow
// (PODFLOW_IMAGE names its tarball; make test-kustomize sets it).
func TestShippedImage(t *testing.T) {
	p := os.Getenv("PODFLOW_IMAGE")
	if p == "" {
		t.Skip("PODFLOW_IMAGE is not set: run through `make test-kustomize`, which builds the image first")
	}
	img, err := tarball.ImageFromPath(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	v := checkImage(t, img)
	if !strings.HasPrefix(v, "podflow") {
		t.Errorf("--version printed %q, want the podflow version line", v)
	}
	t.Logf("%s: %s", p, v)
}
