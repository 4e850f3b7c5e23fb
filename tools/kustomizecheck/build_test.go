package kustomizecheck

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Overlays and components as they sit under kustomize/.
var (
	overlays   = []string{"base", "overlays/prometheus-operator", "overlays/prometheus"}
	components = []string{"connection-mode", "pod-labels", "sampling", "tls"}
)

// object is one built manifest, kept both raw and by identity.
type object struct {
	APIVersion string
	Kind       string
	Namespace  string
	Name       string
	Raw        []byte // YAML of the object alone
	Map        map[string]any
}

func (o object) String() string {
	return fmt.Sprintf("%s %s/%s", o.Kind, o.Namespace, o.Name)
}

// build is the output of one kustomization.
type build struct {
	Name    string // "overlays/prometheus+tls+sampling"
	Overlay string
	Comps   []string
	Objects []object
}

func (b build) has(c string) bool {
	for _, x := range b.Comps {
		if x == c {
			return true
		}
	}
	return false
}

// find returns the objects of a kind.
func (b build) find(kind string) []object {
	var out []object
	for _, o := range b.Objects {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

// one returns the single object of a kind, failing the test otherwise.
func (b build) one(t *testing.T, kind string) object {
	t.Helper()
	objs := b.find(kind)
	if len(objs) != 1 {
		t.Fatalf("%s: want exactly one %s, got %d", b.Name, kind, len(objs))
	}
	return objs[0]
}

// decode unmarshals an object into a typed struct (k8s.io/api types).
func decode(t *testing.T, o object, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(o.Raw, into); err != nil {
		t.Fatalf("%s: %v", o, err)
	}
}

// repoRoot is the module root of the repository (two levels above this file).
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test source")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// kustomizeDir is <repo>/kustomize.
func kustomizeDir(t testing.TB) string {
	return filepath.Join(repoRoot(t), "kustomize")
}

// runKustomize builds the kustomization in dir, from disk.
func runKustomize(t testing.TB, dir string) []object {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var out []object
	for _, r := range m.Resources() {
		raw, err := r.AsYAML()
		if err != nil {
			t.Fatalf("%s: %v", r.CurId(), err)
		}
		mp, err := r.Map()
		if err != nil {
			t.Fatalf("%s: %v", r.CurId(), err)
		}
		out = append(out, object{
			APIVersion: r.GetApiVersion(),
			Kind:       r.GetKind(),
			Namespace:  r.GetNamespace(),
			Name:       r.GetName(),
			Raw:        raw,
			Map:        mp,
		})
	}
	return out
}

// buildWith builds an overlay with components through a throwaway
// kustomization that names both, as a user's own overlay would.
func buildWith(t testing.TB, overlay string, comps []string) build {
	t.Helper()
	root := kustomizeDir(t)
	name := overlay
	if len(comps) > 0 {
		name += "+" + strings.Join(comps, "+")
	}
	b := build{Name: name, Overlay: overlay, Comps: comps}
	if len(comps) == 0 {
		b.Objects = runKustomize(t, filepath.Join(root, overlay))
		return b
	}
	dir := t.TempDir()
	rel := func(p string) string {
		r, err := filepath.Rel(dir, filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	var sb strings.Builder
	sb.WriteString("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n")
	fmt.Fprintf(&sb, "  - %s\n", rel(overlay))
	sb.WriteString("components:\n")
	for _, c := range comps {
		fmt.Fprintf(&sb, "  - %s\n", rel(filepath.Join("components", c)))
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(sb.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	b.Objects = runKustomize(t, dir)
	return b
}

// subsets lists every subset of s, the empty one first.
func subsets(s []string) [][]string {
	out := [][]string{nil}
	for _, x := range s {
		n := len(out)
		for i := 0; i < n; i++ {
			c := append(append([]string(nil), out[i]...), x)
			out = append(out, c)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return len(out[i]) < len(out[j]) })
	return out
}

// builds caches allBuilds: every test reads the same objects.
var builds []build

// allBuilds builds every overlay with every subset of the components.
func allBuilds(t *testing.T) []build {
	t.Helper()
	if builds != nil {
		return builds
	}
	var out []build
	for _, o := range overlays {
		for _, c := range subsets(components) {
			out = append(out, buildWith(t, o, c))
		}
	}
	builds = out
	return out
}

func TestEveryCombinationBuilds(t *testing.T) {
	for _, b := range allBuilds(t) {
		seen := map[string]bool{}
		for _, o := range b.Objects {
			if o.APIVersion == "" || o.Kind == "" || o.Name == "" {
				t.Errorf("%s: object without apiVersion, kind or name: %s", b.Name, o.Raw)
			}
			id := o.APIVersion + "/" + o.String()
			if seen[id] {
				t.Errorf("%s: duplicate object %s", b.Name, id)
			}
			seen[id] = true
			if want, ok := apiVersions[o.Kind]; !ok || want != o.APIVersion {
				t.Errorf("%s: %s has apiVersion %s, want %q", b.Name, o, o.APIVersion, want)
			}
			if !clusterScoped[o.Kind] && o.Namespace != "podflow" {
				t.Errorf("%s: %s is not in namespace podflow", b.Name, o)
			}
			// kubectl apply (client side) keeps the whole object in an
			// annotation limited to 256 KiB.
			if len(o.Raw) > 256*1024-1024 {
				t.Errorf("%s: %s is %d bytes, too large for a client-side kubectl apply", b.Name, o, len(o.Raw))
			}
		}
		t.Logf("%s: %d objects", b.Name, len(b.Objects))
	}
}

// apiVersions are the current API versions of every kind the overlays may
// produce; anything else is unexpected.
var apiVersions = map[string]string{
	"Namespace":          "v1",
	"ServiceAccount":     "v1",
	"ConfigMap":          "v1",
	"Secret":             "v1",
	"Service":            "v1",
	"ResourceQuota":      "v1",
	"DaemonSet":          "apps/v1",
	"ClusterRole":        "rbac.authorization.k8s.io/v1",
	"ClusterRoleBinding": "rbac.authorization.k8s.io/v1",
	"PodMonitor":         "monitoring.coreos.com/v1",
	"PrometheusRule":     "monitoring.coreos.com/v1",
	"AlertmanagerConfig": "monitoring.coreos.com/v1alpha1",
}

var clusterScoped = map[string]bool{
	"Namespace":          true,
	"ClusterRole":        true,
	"ClusterRoleBinding": true,
}

// decodeLoose unmarshals into a partial struct, ignoring other fields.
func decodeLoose(t *testing.T, o object, into any) {
	t.Helper()
	if err := yaml.Unmarshal(o.Raw, into); err != nil {
		t.Fatalf("%s: %v", o, err)
	}
}
