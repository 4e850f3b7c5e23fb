package e2e_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// kustomizations lists every overlay, the base, and every component applied
// on the base.
func kustomizations(t *testing.T) map[string]string {
	t.Helper()
	root := filepath.Join(repoRoot, "kustomize")
	out := map[string]string{}
	if exists(filepath.Join(root, "base", "kustomization.yaml")) {
		out["base"] = filepath.Join(root, "base")
	}
	overlays, _ := filepath.Glob(filepath.Join(root, "overlays", "*", "kustomization.yaml"))
	for _, k := range overlays {
		dir := filepath.Dir(k)
		out["overlays/"+filepath.Base(dir)] = dir
	}
	components, _ := filepath.Glob(filepath.Join(root, "components", "*", "kustomization.yaml"))
	for _, k := range components {
		comp := filepath.Dir(k)
		dir := t.TempDir()
		relBase, _ := filepath.Rel(dir, filepath.Join(root, "base"))
		relComp, _ := filepath.Rel(dir, comp)
		body := fmt.Sprintf("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - %s\ncomponents:\n  - %s\n", relBase, relComp)
		if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		out["base+components/"+filepath.Base(comp)] = dir
	}
	return out
}

func build(dir string) ([]*unstructured.Unstructured, error) {
	opts := krusty.MakeDefaultOptions()
	opts.LoadRestrictions = 0 // components outside a temporary root
	k := krusty.MakeKustomizer(opts)
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, err
	}
	var objs []*unstructured.Unstructured
	for _, r := range rm.Resources() {
		m, err := r.Map()
		if err != nil {
			return nil, err
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
	return objs, nil
}

// installCRDs creates the Prometheus Operator CRDs from the pinned module's
// example/prometheus-operator-crd directory and waits until they are served.
func installCRDs(ctx context.Context, t *testing.T, dyn dynamic.Interface, dir string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if len(files) == 0 {
		t.Fatalf("no CRDs in %s", dir)
	}
	crdGVR := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	var names []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var obj unstructured.Unstructured
		if err := yaml.Unmarshal(data, &obj.Object); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if _, err := dyn.Resource(crdGVR).Create(ctx, &obj, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("CRD %s: %v", filepath.Base(f), err)
		}
		names = append(names, obj.GetName())
	}
	deadline := time.Now().Add(time.Minute)
	for _, n := range names {
		for {
			obj, err := dyn.Resource(crdGVR).Get(ctx, n, metav1.GetOptions{})
			established := false
			if err == nil {
				conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
				for _, c := range conds {
					m, _ := c.(map[string]any)
					if m["type"] == "Established" && m["status"] == "True" {
						established = true
					}
				}
			}
			if established {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("CRD %s not established: %v", n, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// TestManifests builds every overlay and component with the kustomize API
// and applies the result to the API server with server-side dry-run, the
// Prometheus Operator CRDs installed first.
func TestManifests(t *testing.T) {
	env := controlPlane(t)
	ks := kustomizations(t)
	if len(ks) == 0 {
		t.Skip("no kustomize/ in the tree")
	}
	crds := os.Getenv("PROMETHEUS_OPERATOR_CRDS")
	if crds == "" {
		t.Skip("PROMETHEUS_OPERATOR_CRDS unset: run through `make e2e`")
	}
	ctx := context.Background()
	cfg := env.CP.RESTConfig
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	installCRDs(ctx, t, dyn, crds)
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	names := make([]string, 0, len(ks))
	for n := range ks {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(strings.ReplaceAll(name, "/", "_"), func(t *testing.T) {
			objs, err := build(ks[name])
			if err != nil {
				t.Fatalf("kustomize build %s: %v", name, err)
			}
			if len(objs) == 0 {
				t.Fatalf("kustomize build %s: no objects", name)
			}
			// Namespaces first, and for real: a dry-run namespace does not
			// exist for the dry-run objects that live in it.
			sort.SliceStable(objs, func(i, j int) bool { return objs[i].GetKind() == "Namespace" && objs[j].GetKind() != "Namespace" })
			for _, o := range objs {
				gvk := o.GroupVersionKind()
				m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
				if err != nil {
					t.Errorf("%s %s: %v", gvk, o.GetName(), err)
					continue
				}
				var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
				if m.Scope.Name() == meta.RESTScopeNameNamespace {
					ns := o.GetNamespace()
					if ns == "" {
						ns = "default"
					}
					ri = dyn.Resource(m.Resource).Namespace(ns)
				}
				data, err := o.MarshalJSON()
				if err != nil {
					t.Fatal(err)
				}
				po := metav1.PatchOptions{FieldManager: "podflow-e2e", Force: ptrTrue()}
				if o.GetKind() != "Namespace" {
					po.DryRun = []string{metav1.DryRunAll}
				}
				if _, err := ri.Patch(ctx, o.GetName(), types.ApplyPatchType, data, po); err != nil {
					t.Errorf("apply --server-side --dry-run %s %s/%s: %v", gvk.Kind, o.GetNamespace(), o.GetName(), err)
				}
			}
			t.Logf("%s: %d objects accepted", name, len(objs))
		})
	}
}

func ptrTrue() *bool { b := true; return &b }
