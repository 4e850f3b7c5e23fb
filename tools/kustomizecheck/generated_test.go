package kustomizecheck

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amlabels "github.com/prometheus/alertmanager/pkg/labels"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
	promconfig "github.com/prometheus/prometheus/config"
	_ "github.com/prometheus/prometheus/discovery/kubernetes" // registers kubernetes_sd_configs
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
	sigsyaml "sigs.k8s.io/yaml"
)

// TestGeneratedManifestsUpToDate fails when rules/ or dashboards/ changed
// without `make manifests`.
func TestGeneratedManifestsUpToDate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "run", "./kustomize/cmd/manifestgen", "-check")
	cmd.Dir = repoRoot(t)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("generated manifests are out of date: %v\n%s", err, out.String())
	}
	t.Log(strings.TrimSpace(out.String()))
}

// prometheusRuleSpec is the part of monitoring.coreos.com/v1 PrometheusRule read here.
type prometheusRuleSpec struct {
	Metadata struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Groups []json.RawMessage `json:"groups"`
	} `json:"spec"`
}

// TestPrometheusRulesMatchRuleFiles: every rules/*.rules.yaml is installed
// by the operator overlay, parses as Prometheus parses it, and carries the
// labels the operator and kube-prometheus-stack need.
func TestPrometheusRulesMatchRuleFiles(t *testing.T) {
	ruleFiles, _ := filepath.Glob(filepath.Join(repoRoot(t), "rules", "*.rules.yaml"))
	b := buildWith(t, "overlays/prometheus-operator", nil)
	prs := b.find("PrometheusRule")
	if len(prs) != len(ruleFiles) {
		t.Fatalf("%d PrometheusRules for %d rule files %v", len(prs), len(ruleFiles), ruleFiles)
	}
	if len(ruleFiles) == 0 {
		t.Skip("rules/ holds no rule files yet")
	}
	wantAlerts := 0
	for _, f := range ruleFiles {
		rg, errs := rulefmt.ParseFile(f, false, model.UTF8Validation, parser.NewParser(parser.Options{}), promslog.NewNopLogger())
		if len(errs) > 0 {
			t.Fatalf("%s: %v", f, errs)
		}
		for _, g := range rg.Groups {
			for _, r := range g.Rules {
				if r.Alert != "" {
					wantAlerts++
				}
			}
		}
	}
	gotAlerts := 0
	for _, o := range prs {
		if o.APIVersion != "monitoring.coreos.com/v1" {
			t.Errorf("%s: apiVersion %s", o, o.APIVersion)
		}
		var pr prometheusRuleSpec
		decodeLoose(t, o, &pr)
		if pr.Metadata.Labels["release"] != "kube-prometheus-stack" {
			t.Errorf("%s: lacks release=kube-prometheus-stack", o)
		}
		spec, err := json.Marshal(map[string]any{"groups": pr.Spec.Groups})
		if err != nil {
			t.Fatal(err)
		}
		y, err := sigsyaml.JSONToYAML(spec)
		if err != nil {
			t.Fatal(err)
		}
		rg, errs := rulefmt.Parse(y, false, model.UTF8Validation, parser.NewParser(parser.Options{}), promslog.NewNopLogger())
		if len(errs) > 0 {
			t.Fatalf("%s: the groups do not parse as a rule file: %v", o, errs)
		}
		for _, g := range rg.Groups {
			for _, r := range g.Rules {
				if r.Alert == "" {
					continue
				}
				gotAlerts++
				if r.Labels["namespace"] != "podflow" {
					t.Errorf("%s: alert %s lacks namespace=podflow, the AlertmanagerConfig would never see it", o, r.Alert)
				}
			}
		}
	}
	if gotAlerts != wantAlerts {
		t.Errorf("%d alerts installed, the rule files hold %d", gotAlerts, wantAlerts)
	}

	// The plain Prometheus overlay ships the files byte for byte.
	pb := buildWith(t, "overlays/prometheus", nil)
	var cm struct {
		Data map[string]string `json:"data"`
	}
	found := false
	for _, o := range pb.find("ConfigMap") {
		if o.Name == "podflow-rules" {
			decodeLoose(t, o, &cm)
			found = true
		}
	}
	if !found {
		t.Fatal("overlays/prometheus has no podflow-rules ConfigMap")
	}
	for _, f := range ruleFiles {
		raw, _ := os.ReadFile(f)
		if cm.Data[filepath.Base(f)] != string(raw) {
			t.Errorf("podflow-rules[%s] differs from %s", filepath.Base(f), f)
		}
	}
	if len(cm.Data) != len(ruleFiles) {
		t.Errorf("podflow-rules has %d files, rules/ %d", len(cm.Data), len(ruleFiles))
	}
}

// TestDashboardConfigMaps: one ConfigMap per dashboard, labelled for the
// Grafana sidecar, holding the JSON unchanged.
func TestDashboardConfigMaps(t *testing.T) {
	dashboards, _ := filepath.Glob(filepath.Join(repoRoot(t), "dashboards", "*.json"))
	b := buildWith(t, "overlays/prometheus-operator", nil)
	byFile := map[string]string{}
	for _, o := range b.find("ConfigMap") {
		var cm struct {
			Metadata struct {
				Labels map[string]string `json:"labels"`
			} `json:"metadata"`
			Data map[string]string `json:"data"`
		}
		decodeLoose(t, o, &cm)
		if cm.Metadata.Labels["grafana_dashboard"] != "1" {
			continue
		}
		if len(cm.Data) != 1 {
			t.Errorf("%s: want one dashboard per ConfigMap, got %d keys", o, len(cm.Data))
		}
		for k, v := range cm.Data {
			byFile[k] = v
			var d struct {
				UID   string `json:"uid"`
				Title string `json:"title"`
			}
			if err := json.Unmarshal([]byte(v), &d); err != nil || d.UID == "" {
				t.Errorf("%s: %s is not a dashboard with a uid: %v", o, k, err)
			}
		}
	}
	if len(byFile) != len(dashboards) {
		t.Errorf("%d dashboard ConfigMaps for %d dashboards", len(byFile), len(dashboards))
	}
	for _, f := range dashboards {
		raw, _ := os.ReadFile(f)
		if byFile[filepath.Base(f)] != string(raw) {
			t.Errorf("the ConfigMap of %s differs from the file", f)
		}
	}
}

// TestAlertmanagerConfig: the converted routes keep every matcher exactly as
// Alertmanager parses the original.
func TestAlertmanagerConfig(t *testing.T) {
	src := filepath.Join(repoRoot(t), "rules", "alertmanager", "routes.yaml")
	raw, err := os.ReadFile(src)
	if os.IsNotExist(err) {
		t.Skipf("%s does not exist yet", src)
	}
	if err != nil {
		t.Fatal(err)
	}
	b := buildWith(t, "overlays/prometheus-operator", nil)
	amc := b.one(t, "AlertmanagerConfig")
	if amc.APIVersion != "monitoring.coreos.com/v1alpha1" {
		t.Errorf("apiVersion %s", amc.APIVersion)
	}

	type route struct {
		Receiver       string   `yaml:"receiver" json:"receiver"`
		GroupBy        []string `yaml:"group_by" json:"groupBy"`
		GroupWait      string   `yaml:"group_wait" json:"groupWait"`
		GroupInterval  string   `yaml:"group_interval" json:"groupInterval"`
		RepeatInterval string   `yaml:"repeat_interval" json:"repeatInterval"`
		Continue       bool     `yaml:"continue" json:"continue"`
		Matchers       []string `yaml:"matchers"`
		Match          map[string]string
		MatchRE        map[string]string `yaml:"match_re"`
		Routes         []*route          `yaml:"routes" json:"routes"`
		// The converted side.
		OpMatchers []struct {
			Name      string `json:"name"`
			Value     string `json:"value"`
			MatchType string `json:"matchType"`
		} `yaml:"-" json:"matchers"`
	}
	var subtree []*route
	if err := yaml.Unmarshal(raw, &subtree); err != nil {
		t.Fatal(err)
	}
	if len(subtree) != 1 {
		t.Fatalf("%s: want one route, got %d", src, len(subtree))
	}
	var conv struct {
		Spec struct {
			Route     *route `json:"route"`
			Receivers []struct {
				Name string `json:"name"`
			} `json:"receivers"`
		} `json:"spec"`
	}
	decodeLoose(t, amc, &conv)
	// Every receiver the subtree names is defined, and no other.
	names := map[string]bool{}
	var collect func(r *route)
	collect = func(r *route) {
		names[r.Receiver] = true
		for _, c := range r.Routes {
			collect(c)
		}
	}
	collect(subtree[0])
	for _, r := range conv.Spec.Receivers {
		if !names[r.Name] {
			t.Errorf("receiver %s is not used by the routes", r.Name)
		}
		delete(names, r.Name)
	}
	if len(names) > 0 {
		t.Errorf("receivers used but not defined: %v", names)
	}
	var walk func(path string, o, c *route)
	walk = func(path string, o, c *route) {
		if c == nil {
			t.Errorf("%s: route missing", path)
			return
		}
		if o.Receiver != c.Receiver {
			t.Errorf("%s: receiver %q, want %q", path, c.Receiver, o.Receiver)
		}
		if strings.Join(o.GroupBy, ",") != strings.Join(c.GroupBy, ",") || o.GroupWait != c.GroupWait ||
			o.GroupInterval != c.GroupInterval || o.RepeatInterval != c.RepeatInterval || o.Continue != c.Continue {
			t.Errorf("%s: grouping, timing or continue differ: %+v, want %+v", path, c, o)
		}
		var want []string
		for _, s := range o.Matchers {
			ms, err := amlabels.ParseMatchers(s)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			for _, m := range ms {
				want = append(want, m.Name+m.Type.String()+m.Value)
			}
		}
		for k, v := range o.Match {
			want = append(want, k+"="+v)
		}
		for k, v := range o.MatchRE {
			want = append(want, k+"=~"+v)
		}
		var got []string
		for _, m := range c.OpMatchers {
			got = append(got, m.Name+m.MatchType+m.Value)
		}
		if strings.Join(sorted(got), "\n") != strings.Join(sorted(want), "\n") {
			t.Errorf("%s: matchers %q, want %q", path, got, want)
		}
		if len(o.Routes) != len(c.Routes) {
			t.Errorf("%s: %d child routes, want %d", path, len(c.Routes), len(o.Routes))
			return
		}
		for i := range o.Routes {
			walk(path+"/"+o.Routes[i].Receiver, o.Routes[i], c.Routes[i])
		}
	}
	walk("root", subtree[0], conv.Spec.Route)

	// The inhibit rules, matcher for matcher.
	type inhibit struct {
		SourceMatchers []string `yaml:"source_matchers"`
		TargetMatchers []string `yaml:"target_matchers"`
		Equal          []string `yaml:"equal"`
	}
	type opMatcher struct {
		Name      string `json:"name"`
		Value     string `json:"value"`
		MatchType string `json:"matchType"`
	}
	var origInhibit []inhibit
	ir, err := os.ReadFile(filepath.Join(filepath.Dir(src), "inhibit_rules.yaml"))
	if err == nil {
		if err := yaml.Unmarshal(ir, &origInhibit); err != nil {
			t.Fatal(err)
		}
	}
	var convInhibit struct {
		Spec struct {
			InhibitRules []struct {
				SourceMatch []opMatcher `json:"sourceMatch"`
				TargetMatch []opMatcher `json:"targetMatch"`
				Equal       []string    `json:"equal"`
			} `json:"inhibitRules"`
		} `json:"spec"`
	}
	decodeLoose(t, amc, &convInhibit)
	if len(convInhibit.Spec.InhibitRules) != len(origInhibit) {
		t.Fatalf("%d inhibit rules, inhibit_rules.yaml has %d", len(convInhibit.Spec.InhibitRules), len(origInhibit))
	}
	flat := func(ss []string) string {
		var out []string
		for _, s := range ss {
			ms, err := amlabels.ParseMatchers(s)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ms {
				out = append(out, m.Name+m.Type.String()+m.Value)
			}
		}
		return strings.Join(sorted(out), ",")
	}
	flatOp := func(ms []opMatcher) string {
		var out []string
		for _, m := range ms {
			out = append(out, m.Name+m.MatchType+m.Value)
		}
		return strings.Join(sorted(out), ",")
	}
	for i, o := range origInhibit {
		c := convInhibit.Spec.InhibitRules[i]
		if flat(o.SourceMatchers) != flatOp(c.SourceMatch) || flat(o.TargetMatchers) != flatOp(c.TargetMatch) ||
			strings.Join(o.Equal, ",") != strings.Join(c.Equal, ",") {
			t.Errorf("inhibit rule %d differs from inhibit_rules.yaml", i)
		}
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// TestScrapeConfig: the plain Prometheus overlay's scrape job loads in
// Prometheus, finds the DaemonSet's pods and keeps the metrics port.
func TestScrapeConfig(t *testing.T) {
	b := buildWith(t, "overlays/prometheus", nil)
	var cm struct {
		Data map[string]string `json:"data"`
	}
	for _, o := range b.find("ConfigMap") {
		if o.Name == "podflow-scrape-config" {
			decodeLoose(t, o, &cm)
		}
	}
	sc, ok := cm.Data["scrape-config.yaml"]
	if !ok {
		t.Fatal("no podflow-scrape-config ConfigMap with scrape-config.yaml")
	}
	var jobs []yaml.Node
	if err := yaml.Unmarshal([]byte(sc), &jobs); err != nil {
		t.Fatal(err)
	}
	full := "scrape_configs:\n"
	for _, line := range strings.Split(sc, "\n") {
		full += "  " + line + "\n"
	}
	cfg, err := promconfig.Load(full, promslog.NewNopLogger())
	if err != nil {
		t.Fatalf("Prometheus rejects the scrape configuration: %v\n%s", err, full)
	}
	if len(cfg.ScrapeConfigs) != 1 || cfg.ScrapeConfigs[0].JobName != "podflow" {
		t.Fatalf("want one job named podflow, got %d", len(cfg.ScrapeConfigs))
	}
	// Protobuf carries the flow counters' created timestamps.
	if sp := cfg.ScrapeConfigs[0].ScrapeProtocols; len(sp) == 0 || sp[0] != promconfig.PrometheusProto {
		t.Errorf("the scrape job's protocols %v do not prefer PrometheusProto", sp)
	}
	ds, _ := daemonSet(t, b)
	for k, v := range ds.Spec.Template.Labels {
		if strings.HasPrefix(k, "app.kubernetes.io/") && !strings.Contains(sc, k+"="+v) && k != "app.kubernetes.io/part-of" {
			t.Errorf("the pod selector does not name the pod label %s=%s", k, v)
		}
	}
	if !strings.Contains(sc, "names: [podflow]") || !strings.Contains(sc, "regex: metrics") {
		t.Errorf("the scrape job must look in namespace podflow and keep the metrics port")
	}
}
