package main

import (
	"bytes"
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
