package rulescheck

import (
	"os"
	"path/filepath"
	"testing"

	"go.yaml.in/yaml/v3"
)

// Every alert has a promtool test in which it fires and one in which it
// does not.
func TestEveryAlertHasFiringAndQuietTests(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(root, "rules/tests/*.test.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no promtool tests: %v", err)
	}
	firing, quiet := map[string]bool{}, map[string]bool{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var file struct {
			Tests []struct {
				AlertRuleTest []struct {
					Alertname string `yaml:"alertname"`
					ExpAlerts []any  `yaml:"exp_alerts"`
				} `yaml:"alert_rule_test"`
			} `yaml:"tests"`
		}
		if err := yaml.Unmarshal(raw, &file); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, tg := range file.Tests {
			for _, a := range tg.AlertRuleTest {
				if len(a.ExpAlerts) > 0 {
					firing[a.Alertname] = true
				} else {
					quiet[a.Alertname] = true
				}
			}
		}
	}
	for _, a := range wantAlerts {
		if !firing[a] {
			t.Errorf("%s: no promtool test where it fires", a)
		}
		if !quiet[a] {
			t.Errorf("%s: no promtool test where it stays quiet", a)
		}
	}
}
