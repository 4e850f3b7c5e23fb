package harness

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSplitGroupsWaves(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "r.yaml")
	if err := os.WriteFile(src, []byte(`groups:
  - name: fast
    interval: 1m
    rules:
      - record: a:x:present
        expr: group by (p) (x_total)
      - record: a:y:present
        expr: group by (q) (a:x:present)
      - record: a:x:present1h_like
        expr: present_over_time(a:x:present1h[1h])
      - alert: Ignored
        expr: a:y:present > 0
`), 0o644); err != nil {
		t.Fatal(err)
	}
	waves, err := splitGroups(dir, []string{src}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(waves) != 2 || waves[0].Interval != time.Minute || waves[0].Path != waves[1].Path {
		t.Fatalf("waves %+v, want 2 of one group at one path", waves)
	}
	w0, w1 := waves[0].Body, waves[1].Body
	if !strings.Contains(string(w1), "name: fast") {
		t.Errorf("wave 1 renamed the group:\n%s", w1)
	}
	if !strings.Contains(string(w0), "a:x:present\n") || !strings.Contains(string(w0), "present1h_like") || strings.Contains(string(w0), "a:y:present") {
		t.Errorf("wave 0:\n%s", w0)
	}
	if !strings.Contains(string(w1), "a:y:present") || strings.Contains(string(w1), "Ignored") {
		t.Errorf("wave 1:\n%s", w1)
	}
}
