package rulescheck

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/alertmanager/config"
	"github.com/prometheus/alertmanager/dispatch"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"
)

const amDir = "rules/alertmanager"

func loadAM(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.LoadFile(filepath.Join(root, amDir, "alertmanager.yml"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func amtool(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("AMTOOL")
	if bin == "" {
		t.Skip("AMTOOL is not set: run through `make test-rules`")
	}
	return bin
}

func TestAmtoolCheckConfig(t *testing.T) {
	out, err := exec.Command(amtool(t), "check-config", filepath.Join(root, amDir, "alertmanager.yml")).CombinedOutput()
	if err != nil {
		t.Fatalf("amtool check-config: %v\n%s", err, out)
	}
}

// The example configuration embeds the two merge-ready files verbatim.
func TestExampleEmbedsTheSubtreeAndInhibitRules(t *testing.T) {
	read := func(name string) any {
		raw, err := os.ReadFile(filepath.Join(root, amDir, name))
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := yaml.Unmarshal(raw, &v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return v
	}
	full := read("alertmanager.yml").(map[string]any)
	routes := full["route"].(map[string]any)["routes"].([]any)
	if want := read("routes.yaml"); !reflect.DeepEqual(routes[:1], want) {
		t.Errorf("alertmanager.yml's first route differs from routes.yaml:\n got %v\nwant %v", routes[:1], want)
	}
	if want := read("inhibit_rules.yaml"); !reflect.DeepEqual(full["inhibit_rules"], want) {
		t.Errorf("alertmanager.yml's inhibit_rules differ from inhibit_rules.yaml")
	}
}

// pair is a representative pair for routing and inhibition cases.
func pair(src, dst string) model.LabelSet {
	return model.LabelSet{
		"cluster":               "prod",
		"source_namespace":      "shop",
		"source_workload":       model.LabelValue(src),
		"source_kind":           "Deployment",
		"destination_namespace": "shop",
		"destination_workload":  model.LabelValue(dst),
		"destination_kind":      "Deployment",
	}
}

func with(base model.LabelSet, kv ...string) model.LabelSet {
	out := base.Clone()
	for i := 0; i < len(kv); i += 2 {
		out[model.LabelName(kv[i])] = model.LabelValue(kv[i+1])
	}
	return out
}

func wantReceiver(severity, category string) string {
	switch {
	case severity == "info":
		return "podflow-null"
	case category == "health":
		return "podflow-platform"
	case severity == "critical":
		return "podflow-page"
	default:
		return "podflow-chat"
	}
}

type routeCase struct {
	labels model.LabelSet
	want   string
}

// routeCases covers every alert with its shipped severity, and every
// severity with every category.
func routeCases(t *testing.T) []routeCase {
	var cases []routeCase
	for _, r := range loadRules(t, ruleFiles[1]) {
		if r.Alert == "" {
			continue
		}
		sev, cat := r.Labels["severity"], r.Labels["category"]
		cases = append(cases, routeCase{with(pair("web", "db"), "alertname", r.Alert, "severity", sev, "category", cat), wantReceiver(sev, cat)})
		for _, s := range []string{"critical", "warning", "info"} {
			for _, c := range []string{"security", "health"} {
				cases = append(cases, routeCase{with(pair("web", "db"), "alertname", r.Alert, "severity", s, "category", c), wantReceiver(s, c)})
			}
		}
	}
	cases = append(cases, routeCase{model.LabelSet{"alertname": "KubePodCrashLooping", "severity": "critical"}, "default"})
	return cases
}

func TestRoutesInGo(t *testing.T) {
	tree := dispatch.NewRoute(loadAM(t).Route, nil)
	for _, c := range routeCases(t) {
		matched := tree.Match(c.labels)
		var got []string
		for _, m := range matched {
			got = append(got, m.RouteOpts.Receiver)
		}
		if !slices.Equal(got, []string{c.want}) {
			t.Errorf("%v: receivers %v, want [%s]", c.labels, got, c.want)
			continue
		}
		if c.want == "default" {
			continue
		}
		var groupBy []string
		for l := range matched[0].RouteOpts.GroupBy {
			groupBy = append(groupBy, string(l))
		}
		slices.Sort(groupBy)
		if want := []string{"alertname", "cluster", "source_namespace", "source_workload"}; !slices.Equal(groupBy, want) {
			t.Errorf("%v: group_by %v, want %v", c.labels, groupBy, want)
		}
	}
}

func TestRoutesWithAmtool(t *testing.T) {
	bin := amtool(t)
	cfg := filepath.Join(root, amDir, "alertmanager.yml")
	seen := map[string]bool{}
	for _, c := range routeCases(t) {
		args := []string{"config", "routes", "test", "--config.file=" + cfg, "--verify.receivers=" + c.want}
		var kv []string
		for k, v := range c.labels {
			kv = append(kv, string(k)+"="+string(v))
		}
		slices.Sort(kv)
		if key := strings.Join(kv, ","); seen[key] {
			continue
		} else {
			seen[key] = true
		}
		out, err := exec.Command(bin, append(args, kv...)...).CombinedOutput()
		if err != nil {
			t.Errorf("amtool routes test %v: want %s: %v\n%s", kv, c.want, err, out)
		}
	}
}

// inhibited reports whether an active source alert inhibits target under
// the configuration's rules, as Alertmanager evaluates them: both sides'
// matchers, equal labels (missing counts as empty), and never an alert
// by itself.
func inhibited(cfg *config.Config, source, target model.LabelSet) bool {
	if source.Equal(target) {
		return false
	}
	for _, r := range cfg.InhibitRules {
		if !matchers(r.SourceMatchers).Matches(source) || !matchers(r.TargetMatchers).Matches(target) {
			continue
		}
		equal := true
		for _, l := range r.Equal {
			if source[model.LabelName(l)] != target[model.LabelName(l)] {
				equal = false
			}
		}
		if equal {
			return true
		}
	}
	return false
}

func TestInhibition(t *testing.T) {
	cfg := loadAM(t)
	alert := func(name string, base model.LabelSet) model.LabelSet {
		for _, r := range loadRules(t, ruleFiles[1]) {
			if r.Alert == name {
				return with(base, "alertname", name, "severity", r.Labels["severity"], "category", r.Labels["category"])
			}
		}
		t.Fatalf("no alert %s", name)
		return nil
	}
	node := model.LabelSet{"cluster": "prod", "job": "podflow", "instance": "10.0.0.1:9810"}
	source := model.LabelSet{"cluster": "prod", "source_namespace": "shop", "source_workload": "web", "source_kind": "Deployment"}
	webDB, webTor := pair("web", "db"), with(pair("web", "denylist-tor"), "destination_namespace", "", "destination_kind", "Network")
	for _, c := range []struct {
		name           string
		source, target model.LabelSet
		want           bool
	}{
		{"exporter down holds back new pairs", alert("PodflowExporterDown", node), alert("PodflowNewCommunication", webDB), true},
		{"exporter down holds back new ports", alert("PodflowExporterDown", node), alert("PodflowNewDestinationPort", with(webDB, "destination_port", "5432", "protocol", "TCP")), true},
		{"exporter down holds back new networks", alert("PodflowExporterDown", node), alert("PodflowNewExternalNetwork", webTor), true},
		{"exporter down holds back volume anomalies", alert("PodflowExporterDown", node), alert("PodflowTrafficAnomaly", webDB), true},
		{"exporter down holds back port scans", alert("PodflowExporterDown", node), alert("PodflowPortScan", source), true},
		{"exporter down holds back fan-out", alert("PodflowExporterDown", node), alert("PodflowFanOut", source), true},
		{"exporter down holds back connection surges", alert("PodflowExporterDown", node), alert("PodflowConnectionSurge", webDB), true},
		{"exporter down holds back unanswered ports", alert("PodflowExporterDown", node), alert("PodflowUnansweredConnections", with(webDB, "destination_port", "5432", "protocol", "TCP")), true},
		{"exporter down holds back egress anomalies", alert("PodflowExporterDown", node), alert("PodflowEgressAnomaly", source), true},
		{"a port scan holds back the source's new ports", alert("PodflowPortScan", source), alert("PodflowNewDestinationPort", with(webDB, "destination_port", "6432", "protocol", "TCP")), true},
		{"a port scan holds back the source's new pairs", alert("PodflowPortScan", source), alert("PodflowNewCommunication", webDB), true},
		{"a fan-out holds back the source's new pairs", alert("PodflowFanOut", source), alert("PodflowNewCommunication", webDB), true},
		{"a fan-out holds back the source's unanswered ports", alert("PodflowFanOut", source), alert("PodflowUnansweredConnections", with(webDB, "destination_port", "5432", "protocol", "TCP")), true},
		{"a port scan does not hold back another source's new ports", alert("PodflowPortScan", with(source, "source_workload", "evil")), alert("PodflowNewDestinationPort", with(webDB, "destination_port", "6432", "protocol", "TCP")), false},
		{"a port scan does not hold back another cluster's new pairs", alert("PodflowPortScan", source), alert("PodflowNewCommunication", with(webDB, "cluster", "staging")), false},
		{"a port scan does not hold back a new external network", alert("PodflowPortScan", source), alert("PodflowNewExternalNetwork", webTor), false},
		{"a port scan does not hold back a volume anomaly", alert("PodflowPortScan", source), alert("PodflowTrafficAnomaly", webDB), false},
		{"a port scan does not hold back the fan-out of the same source", alert("PodflowPortScan", source), alert("PodflowFanOut", source), false},
		{"unsynced informers hold back new pairs", alert("PodflowKubernetesNotSynced", with(node, "resource", "pods")), alert("PodflowNewCommunication", webDB), true},
		{"the exporter's own absence (no cluster label) holds back a cluster without one", alert("PodflowExporterDown", model.LabelSet{"job": "podflow"}), alert("PodflowNewCommunication", with(webDB, "cluster", "")), true},
		{"another cluster's exporter does not", alert("PodflowExporterDown", with(node, "cluster", "staging")), alert("PodflowNewCommunication", webDB), false},
		{"denylisted traffic is never held back", alert("PodflowExporterDown", node), alert("PodflowDenylistedDestination", with(webTor, "destination_port", "9001", "protocol", "TCP")), false},
		{"forbidden traffic is never held back", alert("PodflowExporterDown", node), alert("PodflowForbiddenCommunication", webDB), false},
		{"capture loss does not hold back", alert("PodflowCaptureLoss", node), alert("PodflowNewCommunication", webDB), false},
		{"health alerts are not held back", alert("PodflowExporterDown", node), alert("PodflowCaptureLoss", with(node, "instance", "10.0.0.2:9810")), false},
		{"a node without Service naming does not hold back traffic alerts", alert("PodflowServiceNamingUnavailable", with(node, "method", "none")), alert("PodflowNewCommunication", webDB), false},
		{"nor is it held back by another node's absence", alert("PodflowExporterDown", node), alert("PodflowServiceNamingUnavailable", with(node, "instance", "10.0.0.2:9810", "method", "none")), false},
		{"a critical holds back a warning of the same pair", alert("PodflowDenylistedDestination", with(webTor, "destination_port", "9001", "protocol", "TCP")), alert("PodflowNewExternalNetwork", webTor), true},
		{"forbidden holds back new communication of the same pair", alert("PodflowForbiddenCommunication", with(webDB, "destination_port", "443", "protocol", "TCP")), alert("PodflowNewCommunication", webDB), true},
		{"not of another pair", alert("PodflowForbiddenCommunication", with(webDB, "destination_port", "443", "protocol", "TCP")), alert("PodflowNewCommunication", pair("web", "cache")), false},
		{"not of another cluster", alert("PodflowDenylistedDestination", webTor), alert("PodflowNewExternalNetwork", with(webTor, "cluster", "staging")), false},
		{"not a source-only warning", alert("PodflowDenylistedDestination", webTor), alert("PodflowPortScan", source), false},
		{"a warning does not hold back a critical", alert("PodflowNewExternalNetwork", webTor), alert("PodflowDenylistedDestination", webTor), false},
	} {
		if got := inhibited(cfg, c.source, c.target); got != c.want {
			t.Errorf("%s: inhibited(%v, %v) = %v, want %v", c.name, c.source, c.target, got, c.want)
		}
	}
}

// No podflow alert matches both sides of one inhibit rule: such an alert
// would hold back its own kind.
func TestNoAlertInhibitsItsOwnKind(t *testing.T) {
	cfg := loadAM(t)
	for _, r := range loadRules(t, ruleFiles[1]) {
		if r.Alert == "" {
			continue
		}
		ls := with(pair("web", "db"), "alertname", r.Alert, "severity", r.Labels["severity"], "category", r.Labels["category"])
		for i, ir := range cfg.InhibitRules {
			if matchers(ir.SourceMatchers).Matches(ls) && matchers(ir.TargetMatchers).Matches(ls) {
				t.Errorf("%s matches both sides of inhibit rule %d", r.Alert, i)
			}
		}
	}
}
