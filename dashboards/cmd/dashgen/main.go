// Command dashgen renders podflow's Grafana dashboards to JSON with
// Grafana's Foundation SDK (github.com/grafana/grafana-foundation-sdk/go).
// It is a module of its own, so that the exporter's go.mod stays free of it:
//
//	cd dashboards && go run ./cmd/dashgen -out .
//
// Each file is a self-contained dashboard: provision it with Grafana's file
// provider or ship it in a ConfigMap for the Grafana sidecar.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// all returns every dashboard podflow ships.
func all() []*dashboard.DashboardBuilder {
	return []*dashboard.DashboardBuilder{
		overviewDashboard(),
		topologyDashboard(),
		pairDashboard(),
		alertsDashboard(),
		healthDashboard(),
	}
}

// renderAll returns the path (relative to dashboards/) and content of every
// generated file: the dashboards and the promtool test of the node graph.
func renderAll() (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, b := range all() {
		d, err := build(b)
		if err != nil {
			return nil, err
		}
		if d.Uid == nil || *d.Uid == "" {
			return nil, fmt.Errorf("dashboard %q has no uid", *d.Title)
		}
		uid := *d.Uid
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(d); err != nil {
			return nil, fmt.Errorf("%s: %w", uid, err)
		}
		name := uid + ".json"
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("duplicate dashboard uid %q", uid)
		}
		out[name] = buf.Bytes()
	}
	out[nodeGraphTestFile] = renderNodeGraphTest()
	return out, nil
}

func main() {
	dir := flag.String("out", "dashboards", "directory to write the dashboard JSON files to")
	flag.Parse()
	files, err := renderAll()
	if err != nil {
		fmt.Fprintln(os.Stderr, "dashgen:", err)
		os.Exit(1)
	}
	for name, content := range files {
		path := filepath.Join(*dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil { //nolint:gosec // a public source directory
			fmt.Fprintln(os.Stderr, "dashgen:", err)
			os.Exit(1)
		}
		if err := os.WriteFile(path, content, 0o644); err != nil { //nolint:gosec // dashboards are public, world-readable files
			fmt.Fprintln(os.Stderr, "dashgen:", err)
			os.Exit(1)
		}
	}
}
