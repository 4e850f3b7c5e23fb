// Command manifestgen writes the kustomize manifests that wrap files owned
// elsewhere in the repository, so that the overlays install exactly what
// rules/ and dashboards/ hold:
//
//   - overlays/prometheus-operator/generated: one PrometheusRule per
//     rules/*.rules.yaml, an AlertmanagerConfig converted from the route
//     tree and inhibit rules in rules/alertmanager/, and one ConfigMap per
//     dashboards/*.json labelled for the Grafana sidecar;
//   - overlays/prometheus/generated: the rule files in one ConfigMap.
//
// kustomize cannot read files outside a kustomization's root, hence copies.
// With -check it writes nothing and fails when the committed files differ
// from what it would write (the drift test runs it that way).
//
//	go run ./kustomize/cmd/manifestgen            # from the repository root
//	go run ./kustomize/cmd/manifestgen -check
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("manifestgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var in Inputs
	fs.StringVar(&in.RulesDir, "rules", "rules", "directory of the Prometheus rule files (*.rules.yaml)")
	fs.StringVar(&in.AlertmanagerDir, "alertmanager", "rules/alertmanager", "directory of the Alertmanager route tree and inhibit rules")
	fs.StringVar(&in.DashboardsDir, "dashboards", "dashboards", "directory of the Grafana dashboards (*.json)")
	fs.StringVar(&in.Namespace, "namespace", "podflow", "namespace podflow is installed in")
	out := fs.String("out", "kustomize", "the kustomize directory (holds overlays/)")
	check := fs.Bool("check", false, "write nothing; fail if the files on disk differ from the generated ones")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	files, err := Generate(in)
	if err != nil {
		fmt.Fprintf(stderr, "manifestgen: %v\n", err)
		return 1
	}
	if *check {
		diffs, err := Check(*out, files)
		if err != nil {
			fmt.Fprintf(stderr, "manifestgen: %v\n", err)
			return 1
		}
		if len(diffs) > 0 {
			fmt.Fprintf(stderr, "manifestgen: generated manifests are out of date (run `make manifests`):\n  %s\n", strings.Join(diffs, "\n  "))
			return 1
		}
		fmt.Fprintf(stdout, "manifestgen: %d generated files up to date\n", len(files))
		return 0
	}
	if err := Write(*out, files); err != nil {
		fmt.Fprintf(stderr, "manifestgen: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "manifestgen: wrote %d files under %s\n", len(files), *out)
	return 0
}

// generatedDirs are the directories manifestgen owns entirely, relative to
// the kustomize directory.
var generatedDirs = []string{
	"overlays/prometheus-operator/generated",
	"overlays/prometheus/generated",
}

// Write replaces the generated directories' contents with files (paths
// relative to root).
func Write(root string, files map[string][]byte) error {
	for _, d := range generatedDirs {
		entries, err := os.ReadDir(filepath.Join(root, d))
		if err != nil && !os.IsNotExist(err) {
			return err
		}
		for _, e := range entries {
			p := filepath.ToSlash(filepath.Join(d, e.Name()))
			if _, keep := files[p]; !keep && !e.IsDir() {
				if err := os.Remove(filepath.Join(root, p)); err != nil {
					return err
				}
			}
		}
	}
	for _, p := range sortedKeys(files) {
		full := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil { //nolint:gosec // part of the checkout, readable like the rest of it
			return err
		}
		if old, err := os.ReadFile(full); err == nil && bytes.Equal(old, files[p]) {
			continue
		}
		if err := os.WriteFile(full, files[p], 0o644); err != nil { //nolint:gosec // part of the checkout, readable like the rest of it
			return err
		}
	}
	return nil
}

// Check lists the differences between files and the disk under root:
// changed, missing and stale files.
func Check(root string, files map[string][]byte) ([]string, error) {
	var diffs []string
	for _, p := range sortedKeys(files) {
		old, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(p)))
		switch {
		case os.IsNotExist(err):
			diffs = append(diffs, "missing: "+p)
		case err != nil:
			return nil, err
		case !bytes.Equal(old, files[p]):
			diffs = append(diffs, "differs: "+p)
		}
	}
	for _, d := range generatedDirs {
		entries, err := os.ReadDir(filepath.Join(root, d))
		if err != nil && !os.IsNotExist(err) {
			return nil, err
		}
		for _, e := range entries {
			p := filepath.ToSlash(filepath.Join(d, e.Name()))
			if _, ok := files[p]; !ok {
				diffs = append(diffs, "stale: "+p)
			}
		}
	}
	return diffs, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
