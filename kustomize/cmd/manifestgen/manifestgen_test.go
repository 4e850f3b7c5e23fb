package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestParseMatchers(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []matcher
	}{
		{`severity="critical"`, []matcher{{"severity", "=", "critical"}}},
		{`severity = critical`, []matcher{{"severity", "=", "critical"}}},
		{`a=~"x|y", b!="z"`, []matcher{{"a", "=~", "x|y"}, {"b", "!=", "z"}}},
		{`{a!~"q\"r"}`, []matcher{{"a", "!~", `q"r`}}},
	} {
		got, err := parseMatchers(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if len(got) != len(tc.want) {
			t.Errorf("%s: got %v, want %v", tc.in, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%s: got %v, want %v", tc.in, got, tc.want)
			}
		}
	}
	for _, bad := range []string{`=x`, `a`, `a~"x"`, `a="x" b="y"`, `a="unterminated`} {
		if _, err := parseMatchers(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

type amMatcher struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	MatchType string `yaml:"matchType"`
}

func TestConvertAlertmanager(t *testing.T) {
	var c amConfig
	if ok, err := readYAML("testdata/alertmanager.yml", &c); !ok || err != nil {
		t.Fatal(err)
	}
	n, notes, err := convertAlertmanager(&c, "podflow")
	if err != nil {
		t.Fatal(err)
	}
	b, err := encode("test", n)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		APIVersion string `yaml:"apiVersion"`
		Spec       struct {
			Route struct {
				Receiver string   `yaml:"receiver"`
				GroupBy  []string `yaml:"groupBy"`
				Routes   []struct {
					Receiver            string      `yaml:"receiver"`
					Continue            bool        `yaml:"continue"`
					Matchers            []amMatcher `yaml:"matchers"`
					ActiveTimeIntervals []string    `yaml:"activeTimeIntervals"`
				} `yaml:"routes"`
			} `yaml:"route"`
			Receivers []struct {
				Name           string `yaml:"name"`
				WebhookConfigs []struct {
					URL          string `yaml:"url"`
					SendResolved *bool  `yaml:"sendResolved"`
				} `yaml:"webhookConfigs"`
			} `yaml:"receivers"`
			InhibitRules []struct {
				SourceMatch []amMatcher `yaml:"sourceMatch"`
				TargetMatch []amMatcher `yaml:"targetMatch"`
				Equal       []string    `yaml:"equal"`
			} `yaml:"inhibitRules"`
			MuteTimeIntervals []struct {
				Name          string `yaml:"name"`
				TimeIntervals []struct {
					DaysOfMonth []struct{ Start, End int } `yaml:"daysOfMonth"`
				} `yaml:"timeIntervals"`
			} `yaml:"muteTimeIntervals"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(b, &got); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	s := got.Spec
	if got.APIVersion != "monitoring.coreos.com/v1alpha1" || s.Route.Receiver != "default" || len(s.Route.GroupBy) != 2 {
		t.Errorf("root route: %+v", s.Route)
	}
	if len(s.Route.Routes) != 3 {
		t.Fatalf("routes: %+v", s.Route.Routes)
	}
	sec := s.Route.Routes[1]
	if sec.Receiver != "pager" || !sec.Continue || len(sec.Matchers) != 2 ||
		sec.Matchers[1].Name != "severity" || sec.Matchers[1].MatchType != "=~" || sec.Matchers[1].Value != "critical|page" {
		t.Errorf("security route: %+v", sec)
	}
	if h := s.Route.Routes[2]; len(h.Matchers) != 1 || h.Matchers[0].MatchType != "=" || h.ActiveTimeIntervals[0] != "business-hours" {
		t.Errorf("health route: %+v", h)
	}
	if len(s.Receivers) != 4 || s.Receivers[2].WebhookConfigs[0].URL != "http://pager.example/hook" ||
		*s.Receivers[2].WebhookConfigs[0].SendResolved {
		t.Errorf("receivers: %+v", s.Receivers)
	}
	if len(s.InhibitRules) != 1 || len(s.InhibitRules[0].TargetMatch) != 2 || s.InhibitRules[0].TargetMatch[1].MatchType != "!=" {
		t.Errorf("inhibit rules: %+v", s.InhibitRules)
	}
	if d := s.MuteTimeIntervals[0].TimeIntervals[0].DaysOfMonth; len(d) != 2 || d[0].End != 7 || d[1].Start != -1 {
		t.Errorf("days of month: %+v", d)
	}
	joined := strings.Join(notes, "\n")
	if !strings.Contains(joined, "platform: slack_configs") || !strings.Contains(joined, "http_config") {
		t.Errorf("notes do not name the unconverted settings:\n%s", joined)
	}
}

func TestPrometheusRuleAddsNamespaceToAlerts(t *testing.T) {
	raw := []byte(`groups:
  - name: g
    rules:
      - record: a:b:c
        expr: sum(x)
      - alert: A
        expr: up == 0
      - alert: B
        expr: up == 0
        labels: {namespace: other, severity: warning}
`)
	n, err := prometheusRule("rules/x.rules.yaml", raw, "podflow")
	if err != nil {
		t.Fatal(err)
	}
	b, err := encode("t", n)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"name: podflow-x", "release: kube-prometheus-stack", "namespace: podflow\n", "namespace: other"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("missing %q in\n%s", want, b)
		}
	}
	if bytes.Count(b, []byte("namespace: podflow\n")) != 2 { // metadata and alert A
		t.Errorf("namespace label added to the wrong rules:\n%s", b)
	}
	for _, bad := range []string{"groups: []\n", "rules: {}\n", "groups:\n  - rules: []\n", "groups: [{name: g, rules: []}]\nextra: 1\n"} {
		if _, err := prometheusRule("bad.rules.yaml", []byte(bad), "podflow"); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestWriteAndCheck(t *testing.T) {
	root := t.TempDir()
	in := Inputs{RulesDir: t.TempDir(), AlertmanagerDir: "testdata", DashboardsDir: t.TempDir(), Namespace: "podflow"}
	if err := os.WriteFile(filepath.Join(in.RulesDir, "a.rules.yaml"), []byte("groups:\n  - name: g\n    rules:\n      - record: a:b:c\n        expr: sum(x)\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(in.DashboardsDir, "podflow-overview.json"), []byte("{\"uid\": \"x\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	files, err := Generate(in)
	if err != nil {
		t.Fatal(err)
	}
	if diffs, _ := Check(root, files); len(diffs) != len(files) {
		t.Errorf("empty directory: %v", diffs)
	}
	if err := Write(root, files); err != nil {
		t.Fatal(err)
	}
	if diffs, err := Check(root, files); err != nil || len(diffs) != 0 {
		t.Errorf("after Write: %v %v", diffs, err)
	}
	stale := filepath.Join(root, operatorDir, "old.yaml")
	if err := os.WriteFile(stale, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	changed := filepath.Join(root, operatorDir, "dashboards.yaml")
	if err := os.WriteFile(changed, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	diffs, _ := Check(root, files)
	if got := strings.Join(diffs, ","); got != "differs: "+operatorDir+"/dashboards.yaml,stale: "+operatorDir+"/old.yaml" {
		t.Errorf("diffs: %s", got)
	}
	if err := Write(root, files); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("Write kept the stale file")
	}
	for _, want := range []string{"podflow-dashboard-overview", "grafana_dashboard: \"1\"", "AlertmanagerConfig", "PrometheusRule"} {
		all := string(files[operatorDir+"/dashboards.yaml"]) + string(files[operatorDir+"/alertmanagerconfig.yaml"]) + string(files[operatorDir+"/prometheusrules.yaml"])
		if !strings.Contains(all, want) {
			t.Errorf("generated files lack %q", want)
		}
	}
}
