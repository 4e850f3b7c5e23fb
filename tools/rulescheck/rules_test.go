package rulescheck

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

// root is the repository root, seen from this package's directory.
const root = "../.."

// The rule files the checks cover: the shipped ones and the rendering of
// the test values.
var ruleFiles = []string{
	"rules/podflow-recording.rules.yaml",
	"rules/podflow-alerts.rules.yaml",
	"rules/tests/rendered/podflow-recording.rules.yaml",
	"rules/tests/rendered/podflow-alerts.rules.yaml",
}

// The alerts the rules must define, exactly.
var wantAlerts = []string{
	"PodflowNewCommunication",
	"PodflowNewDestinationPort",
	"PodflowNewExternalNetwork",
	"PodflowDenylistedDestination",
	"PodflowForbiddenCommunication",
	"PodflowPortScan",
	"PodflowFanOut",
	"PodflowTrafficAnomaly",
	"PodflowConnectionSurge",
	"PodflowUnansweredConnections",
	"PodflowEgressAnomaly",
	"PodflowBaselineLearning",
	"PodflowExporterDown",
	"PodflowCaptureLoss",
	"PodflowSeriesLimitReached",
	"PodflowKubernetesNotSynced",
	"PodflowServiceNamingUnavailable",
	"PodflowRuleEvaluationFailures",
}

// The raw flow counters: only the fast tier reads them.
var rawFlowMetrics = []string{"podflow_bytes_total", "podflow_packets_total", "podflow_connections_total"}

// Series podflow reads that are not the exporter's: the scrape's up and the
// ruler's own health.
var foreignMetrics = []string{
	"up",
	"prometheus_rule_evaluation_failures_total",
	"prometheus_rule_group_iterations_missed_total",
}

// The fast tier's groups share this name prefix.
const fastGroup = "podflow.workload-pair"

// Rules are loaded with every function enabled, so that checkFunctions can
// report the experimental ones by name.
var promqlParser = parser.NewParser(parser.Options{EnableExperimentalFunctions: true})

type rule struct {
	file, group string
	interval    time.Duration
	rulefmt.Rule
	expr parser.Expr
}

func (r rule) String() string {
	name := r.Record
	if name == "" {
		name = r.Alert
	}
	return fmt.Sprintf("%s: %s: %s", r.file, r.group, name)
}

func loadRules(t *testing.T, files ...string) []rule {
	t.Helper()
	var out []rule
	for _, f := range files {
		groups, errs := rulefmt.ParseFile(filepath.Join(root, f), false, model.UTF8Validation, promqlParser, slog.New(slog.DiscardHandler))
		if len(errs) > 0 {
			t.Fatalf("%s: %v", f, errs)
		}
		for _, g := range groups.Groups {
			for _, r := range g.Rules {
				expr, err := promqlParser.ParseExpr(r.Expr)
				if err != nil {
					t.Fatalf("%s: %s: %v", f, g.Name, err)
				}
				out = append(out, rule{file: f, group: g.Name, interval: time.Duration(g.Interval), Rule: r, expr: expr})
			}
		}
	}
	return out
}

// checkRecordingNames reports recording rules not named
// level:metric:operations.
func checkRecordingNames(rules []rule) []string {
	name := regexp.MustCompile(`^[a-z][a-z0-9_]*:(podflow_[a-z0-9_]+|up):[a-z0-9_]+$`)
	var out []string
	for _, r := range rules {
		if r.Record == "" {
			continue
		}
		if !name.MatchString(r.Record) {
			out = append(out, fmt.Sprintf("%s: not level:podflow_metric:operations", r))
		} else if strings.Contains(strings.Split(r.Record, ":")[1], "_total") {
			out = append(out, fmt.Sprintf("%s: the metric part keeps _total", r))
		}
		if len(r.Labels) > 0 {
			out = append(out, fmt.Sprintf("%s: recording rules add no labels", r))
		}
	}
	return out
}

func TestRecordingRuleNames(t *testing.T) {
	for _, p := range checkRecordingNames(loadRules(t, ruleFiles...)) {
		t.Error(p)
	}
}

func TestAlertNamesLabelsAnnotations(t *testing.T) {
	for _, files := range [][]string{ruleFiles[:2], ruleFiles[2:]} {
		var got []string
		for _, r := range loadRules(t, files...) {
			if r.Alert == "" {
				continue
			}
			got = append(got, r.Alert)
			if sev := r.Labels["severity"]; !slices.Contains([]string{"critical", "warning", "info"}, sev) {
				t.Errorf("%s: severity %q", r, sev)
			}
			cat := r.Labels["category"]
			if cat != "security" && cat != "health" {
				t.Errorf("%s: category %q, want security or health", r, cat)
			}
			if strings.HasPrefix(r.group, "podflow.security") != (cat == "security") {
				t.Errorf("%s: category %s in group %s", r, cat, r.group)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s: no %s annotation", r, a)
				}
			}
			if len(r.Annotations) != 3 {
				t.Errorf("%s: annotations %v, want summary, description, runbook_url", r, r.Annotations)
			}
			const base = "https://github.com/podflow/podflow/blob/main/"
			url := r.Annotations["runbook_url"]
			if want := base + "rules/runbooks/" + r.Alert + ".md"; url != want {
				t.Errorf("%s: runbook_url %q, want %q", r, url, want)
			} else if _, err := os.Stat(filepath.Join(root, strings.TrimPrefix(url, base))); err != nil {
				t.Errorf("%s: runbook does not resolve: %v", r, err)
			}
		}
		if !slices.Equal(got, wantAlerts) {
			t.Errorf("%v: alerts\n got %v\nwant %v", files, got, wantAlerts)
		}
	}
}

// Every runbook page belongs to an alert.
func TestRunbooksBelongToAlerts(t *testing.T) {
	pages, err := filepath.Glob(filepath.Join(root, "rules/runbooks/*.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pages {
		name := strings.TrimSuffix(filepath.Base(p), ".md")
		if name != "README" && !slices.Contains(wantAlerts, name) {
			t.Errorf("%s: no alert of that name", p)
		}
	}
}

// Pair alerts name both workloads in their description, source-only alerts
// the source (the labels themselves are asserted by the promtool tests).
func TestDescriptionsNameTheWorkloads(t *testing.T) {
	for _, r := range loadRules(t, ruleFiles[1]) {
		if r.Labels["category"] != "security" {
			continue
		}
		want := []string{"source_workload", "destination_workload"}
		if r.Alert == "PodflowPortScan" || r.Alert == "PodflowFanOut" || r.Alert == "PodflowEgressAnomaly" {
			want = want[:1]
		}
		for _, l := range want {
			if !strings.Contains(r.Annotations["description"], "$labels."+l) {
				t.Errorf("%s: description does not show %s", r, l)
			}
		}
	}
}

// documentedMetrics reads the metric names docs/metrics.md writes in
// backticks.
func documentedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root, "docs/metrics.md"))
	if err != nil {
		t.Fatalf("the metrics reference: %v", err)
	}
	out := map[string]bool{}
	for _, m := range regexp.MustCompile("`(podflow_[a-z0-9_]+)`").FindAllStringSubmatch(string(raw), -1) {
		out[m[1]] = true
	}
	return out
}

// selectors returns the metric names an expression reads, each with
// whether it sits inside a range (matrix) selector.
func selectors(e parser.Expr) (names map[string][]bool, subqueries int, calls []*parser.Call) {
	names = map[string][]bool{}
	parser.Inspect(e, func(n parser.Node, path []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			inRange := len(path) > 0
			if inRange {
				_, inRange = path[len(path)-1].(*parser.MatrixSelector)
			}
			names[n.Name] = append(names[n.Name], inRange)
		case *parser.SubqueryExpr:
			subqueries++
		case *parser.Call:
			calls = append(calls, n)
		}
		return nil
	})
	return names, subqueries, calls
}

// checkMetrics reports selectors of metrics that are neither recorded by
// the rules, nor documented by the exporter, nor the few foreign series.
func checkMetrics(rules []rule, docs map[string]bool) []string {
	recorded := map[string]bool{}
	for _, r := range rules {
		recorded[r.Record] = true
	}
	var out []string
	for _, r := range rules {
		names, _, _ := selectors(r.expr)
		for name := range names {
			switch {
			case name == "":
				out = append(out, fmt.Sprintf("%s: a selector without a metric name", r))
			case recorded[name], docs[name], slices.Contains(foreignMetrics, name):
			default:
				out = append(out, fmt.Sprintf("%s: reads %s, neither a podflow recording rule nor a metric in docs/metrics.md", r, name))
			}
		}
	}
	return out
}

func TestEveryMetricReadExists(t *testing.T) {
	for _, p := range checkMetrics(loadRules(t, ruleFiles...), documentedMetrics(t)) {
		t.Error(p)
	}
}

func experimentalFunctions() []string {
	var out []string
	for name, f := range parser.Functions {
		if f.Experimental {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// checkFunctions reports what Thanos and Mimir rulers reject (functions
// behind a feature flag) and subqueries (too costly over long ranges).
func checkFunctions(rules []rule) []string {
	var out []string
	strict := parser.NewParser(parser.Options{})
	for _, r := range rules {
		if _, err := strict.ParseExpr(r.Expr); err != nil {
			out = append(out, fmt.Sprintf("%s: needs a feature flag: %v", r, err))
		}
		_, subqueries, calls := selectors(r.expr)
		if subqueries > 0 {
			out = append(out, fmt.Sprintf("%s: %d subqueries", r, subqueries))
		}
		for _, c := range calls {
			if c.Func.Experimental || slices.Contains(experimentalFunctions(), c.Func.Name) {
				out = append(out, fmt.Sprintf("%s: experimental function %s", r, c.Func.Name))
			}
		}
	}
	return out
}

func TestNoExperimentalFunctionsNoSubqueries(t *testing.T) {
	experimental := experimentalFunctions()
	if len(experimental) == 0 {
		t.Fatal("the parser lists no experimental functions: the check would prove nothing")
	}
	t.Logf("experimental functions: %v", experimental)
	for _, p := range checkFunctions(loadRules(t, ruleFiles...)) {
		t.Error(p)
	}
}

// checkTiering reports raw flow counters read outside the fast tier, hourly
// series read with an instant selector (which sees an hourly sample for 5
// minutes an hour) outside their own group (whose rules run at the same
// timestamp), and ranges beyond two hours outside hourly groups.
func checkTiering(rules []rule) []string {
	hourlyGroup := map[string]string{}
	for _, r := range rules {
		if r.Record != "" && r.interval >= time.Hour {
			hourlyGroup[r.Record] = r.group
		}
	}
	var out []string
	for _, r := range rules {
		names, _, _ := selectors(r.expr)
		for name, inRange := range names {
			if slices.Contains(rawFlowMetrics, name) && !strings.HasPrefix(r.group, fastGroup) {
				out = append(out, fmt.Sprintf("%s: reads the raw counter %s outside %s*", r, name, fastGroup))
			}
			if g, ok := hourlyGroup[name]; ok && g != r.group && slices.Contains(inRange, false) {
				out = append(out, fmt.Sprintf("%s: reads the hourly series %s with an instant selector", r, name))
			}
		}
		parser.Inspect(r.expr, func(n parser.Node, _ []parser.Node) error {
			if m, ok := n.(*parser.MatrixSelector); ok && m.Range > 2*time.Hour && r.interval < time.Hour {
				out = append(out, fmt.Sprintf("%s: a %s range in a group evaluated every %s", r, m.Range, r.interval))
			}
			return nil
		})
	}
	return out
}

func TestTiering(t *testing.T) {
	rules := loadRules(t, ruleFiles...)
	var hourly int
	for _, r := range rules {
		if r.Record != "" && r.interval >= time.Hour {
			hourly++
		}
	}
	if hourly == 0 {
		t.Fatal("no hourly recording rules")
	}
	for _, p := range checkTiering(rules) {
		t.Error(p)
	}
}

// The checks above find what they look for: a rule file with one violation
// per rule.
func TestChecksCatchViolations(t *testing.T) {
	bad := loadRules(t, "tools/rulescheck/testdata/violations.rules.yaml")
	problems := strings.Join(append(append(append(checkMetrics(bad, documentedMetrics(t)), checkFunctions(bad)...), checkTiering(bad)...), checkRecordingNames(bad)...), "\n")
	for _, want := range []string{
		"raw_outside_fast:podflow_bytes:rate1h: reads the raw counter podflow_bytes_total outside podflow.workload-pair",
		"InstantHourlyRead: reads the hourly series hourly:podflow_packets:present1h with an instant selector",
		"a 840h0m0s range in a group evaluated every 1m0s",
		"with_subquery:podflow_bytes:max1h: 1 subqueries",
		"ExperimentalFunction: experimental function mad_over_time",
		"ExperimentalFunction: needs a feature flag",
		"ExperimentalAggregation: needs a feature flag",
		"reads podflow_not_documented_total, neither",
		"badname: not level:podflow_metric:operations",
		"level:podflow_bytes_total:rate5m: the metric part keeps _total",
	} {
		if !strings.Contains(problems, want) {
			t.Errorf("no problem reported containing %q; reported:\n%s", want, problems)
		}
	}
}

// The job selector reaches every raw podflow series.
func TestRawSeriesUseTheJobSelector(t *testing.T) {
	for _, r := range loadRules(t, ruleFiles[:2]...) {
		parser.Inspect(r.expr, func(n parser.Node, _ []parser.Node) error {
			vs, ok := n.(*parser.VectorSelector)
			if !ok || strings.Contains(vs.Name, ":") || strings.HasPrefix(vs.Name, "prometheus_") {
				return nil
			}
			for _, m := range vs.LabelMatchers {
				if m.Name == "job" && m.Value == "podflow" {
					return nil
				}
			}
			t.Errorf("%s: %s read without job=\"podflow\"", r, vs)
			return nil
		})
	}
}
