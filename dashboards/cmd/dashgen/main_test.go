package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// TestCommittedDashboardsAreCurrent fails when a committed dashboard differs
// from a fresh render: run `make dashboards` and commit the result.
func TestCommittedDashboardsAreCurrent(t *testing.T) {
	files, err := renderAll()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("..", "..")
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil {
			t.Errorf("%s: %v (run `make dashboards`)", name, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("dashboards/%s is stale: run `make dashboards` and commit the result", name)
		}
	}
	// No stray dashboards that the generator no longer writes.
	committed, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var stray []string
	for _, f := range committed {
		if _, ok := files[filepath.Base(f)]; !ok {
			stray = append(stray, filepath.Base(f))
		}
	}
	sort.Strings(stray)
	if len(stray) > 0 {
		t.Errorf("dashboards/ holds files the generator does not write: %v", stray)
	}
}

// TestSDKDefaultsOverridden guards what the generator sets against the
// SDK's own defaults, which may change with an SDK upgrade: links drawn
// above the panels (no placement), and the node graph's layered layout,
// an option the SDK's types lack.
func TestSDKDefaultsOverridden(t *testing.T) {
	files, err := renderAll()
	if err != nil {
		t.Fatal(err)
	}
	graphs := 0
	for name, content := range files {
		if filepath.Ext(name) != ".json" {
			continue
		}
		var d struct {
			Links  []map[string]any `json:"links"`
			Panels []map[string]any `json:"panels"`
		}
		if err := json.Unmarshal(content, &d); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(d.Links) == 0 {
			t.Errorf("%s: no links to the other podflow dashboards", name)
		}
		for _, l := range d.Links {
			if p, ok := l["placement"]; ok {
				t.Errorf("%s: link %v has placement %v: it would show only in the controls menu", name, l["title"], p)
			}
		}
		for _, p := range d.Panels {
			if p["type"] != "nodeGraph" {
				continue
			}
			graphs++
			opts, _ := p["options"].(map[string]any)
			if opts["layoutAlgorithm"] != "layered" {
				t.Errorf("%s: node graph %q: layoutAlgorithm %v, want layered", name, p["title"], opts["layoutAlgorithm"])
			}
			if nodes, _ := opts["nodes"].(map[string]any); len(nodes) == 0 {
				t.Errorf("%s: node graph %q: the SDK's node options were lost", name, p["title"])
			}
		}
	}
	if graphs == 0 {
		t.Error("no node graph panel rendered")
	}
}
