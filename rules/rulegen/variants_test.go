package rulegen

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Values far from the defaults still render rules that promtool accepts.
func TestVariantsPassPromtool(t *testing.T) {
	promtool := os.Getenv("PROMTOOL")
	if promtool == "" {
		t.Skip("PROMTOOL is not set: run through `make test-rules`")
	}
	if _, err := os.Stat(promtool); err != nil {
		t.Skipf("promtool not built yet: %v", err)
	}
	for name, values := range map[string]string{
		"no aggregation labels":  "aggregation_labels: []\n",
		"two aggregation labels": "aggregation_labels: [cluster, region]\n",
		"short and slow": "fast_interval: 2m\nbaseline:\n  window: 28d\n  seasonal_weeks: 4\n  seasonal_range: 2h\n" +
			"learning:\n  cluster: 3d\n  workload: 0s\n  pair_active_hours: 24\nhourly_lookback: 3h\n",
		"awkward names": "job_selector: 'job=~\"podflow|podflow-canary\", namespace=\"kube-system\"'\n" +
			"denylist:\n  prefix: \"deny.list's\"\n" +
			"forbidden_namespace_pairs:\n  - {source_namespace: 'team-(a|b)', destination_namespace: 'pay\"ments'}\n" +
			"expected_pairs:\n  - {source_workload: 'a\\\\.b', destination_kind: Network}\n",
	} {
		t.Run(name, func(t *testing.T) {
			c, err := Parse([]byte(values))
			if err != nil {
				t.Fatal(err)
			}
			files, err := Render(&c)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			var paths []string
			for f, content := range files {
				p := filepath.Join(dir, f)
				if err := os.WriteFile(p, content, 0o600); err != nil {
					t.Fatal(err)
				}
				paths = append(paths, p)
			}
			out, err := exec.Command(promtool, append([]string{"check", "rules"}, paths...)...).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "SUCCESS") {
				t.Errorf("promtool check rules: %v\n%s", err, out)
			}
		})
	}
}
