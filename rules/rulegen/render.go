package rulegen

import (
	"bytes"
	"embed"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"text/template"

	"go.yaml.in/yaml/v3"
)

// The rule files, in the order they are written.
const (
	RecordingFile = "podflow-recording.rules.yaml"
	AlertsFile    = "podflow-alerts.rules.yaml"
)

//go:embed templates/*.tmpl
var templates embed.FS

// Flow labels, in the exporter's order. The rules aggregate pods away and
// keep workloads.
var (
	sourceLabels      = []string{"source_namespace", "source_workload", "source_kind"}
	destinationLabels = []string{"destination_namespace", "destination_workload", "destination_kind"}
	portLabels        = []string{"destination_port", "protocol"}
	pairLabels        = append(append(append([]string{}, sourceLabels...), destinationLabels...), portLabels...)
)

// view is what the templates see: the values plus the label lists and
// PromQL fragments derived from them.
type view struct {
	Config
	Agg, Src, Pair, Port         string // comma-separated label lists
	Lookback                     string // range of every hourly read
	Window, KnownWindow, Offset1 string
	KnownOffset                  string
	SamplesPerHour               int64
	ClusterHours                 int64
	DenylistRegex                string
	Expected                     string // "unless on(pair) (...)" or ""
	Forbidden                    string // selector union, or a never-matching expression
	NamingNone                   string // nodes that cannot name Services, or a never-matching expression
	Seasonal                     []seasonalTerm
	SeasonalAhead                string
	Learned                      string // "the cluster's baseline is old enough" gate
	KnownSource, KnownDest       string // workloads past their learning period, keyed by side
	Scanning, FanningOut         string // sources whose spread of ports or destinations is far above their baseline
	NotSpreading                 string // "unless on(source) (scanning or fanning out)"
	SrcDisplay, DstDisplay       string // alert-template text naming each side
}

type seasonalTerm struct {
	Week   int
	Offset string
}

// Render returns the rule files for the values, keyed by file name.
func Render(c *Config) (map[string][]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	v := view{Config: *c}
	agg := c.AggregationLabels
	v.Agg = strings.Join(agg, ", ")
	v.Src = join(agg, sourceLabels)
	v.Pair = join(agg, sourceLabels, destinationLabels)
	v.Port = join(agg, sourceLabels, destinationLabels, portLabels)
	v.Lookback = c.HourlyLookback.String()
	v.Window = c.Baseline.Window.String()
	v.Offset1 = c.HourlyInterval.String()
	known := c.Learning.Workload
	if known.D < c.HourlyInterval.D {
		known = c.HourlyInterval // never count the hour being recorded
	}
	v.KnownOffset = known.String()
	v.KnownWindow = Duration{D: c.Baseline.Window.D - known.D}.String()
	v.SamplesPerHour = c.HourlyInterval.D / c.FastInterval.D
	v.ClusterHours = c.Learning.Cluster.Hours()
	v.DenylistRegex = strconv.Quote(regexp.QuoteMeta(c.Denylist.Prefix) + ".*")
	v.Expected = expectedClause(c.ExpectedPairs, v.Pair)
	v.Forbidden = forbiddenExpr(c.ForbiddenNamespacePairs)
	v.NamingNone = namingNoneExpr(c.DestinationService, c.JobSelector)
	v.Learned = fmt.Sprintf("on(%s) (last_over_time(cluster:podflow_up:hours_baseline[%s]) >= %d)", v.Agg, v.Lookback, v.ClusterHours)
	v.KnownSource = knownAs("source", v.Agg, v.Lookback)
	v.KnownDest = knownAs("destination", v.Agg, v.Lookback)
	v.Scanning = spreadAbove("source_workload:podflow_destination_ports", c.PortScan, v.Src, v.Lookback)
	v.FanningOut = spreadAbove("source_workload:podflow_destinations", c.FanOut, v.Src, v.Lookback)
	v.NotSpreading = fmt.Sprintf("unless on(%s) (\n  %s\n  or\n  %s\n)", v.Src, indent(2, v.Scanning), indent(2, v.FanningOut))
	v.SrcDisplay = display("source")
	v.DstDisplay = display("destination")
	week, hour := mustDuration("1w").D, mustDuration("1h").D
	v.SeasonalAhead = Duration{D: c.Baseline.SeasonalRange.D - hour}.String()
	for k := 1; k <= c.Baseline.SeasonalWeeks; k++ {
		// From an hour before this time k weeks ago to seasonal_range later.
		v.Seasonal = append(v.Seasonal, seasonalTerm{Week: k, Offset: Duration{D: int64(k)*week - (c.Baseline.SeasonalRange.D - hour)}.String()})
	}

	out := map[string][]byte{}
	for _, name := range []string{RecordingFile, AlertsFile} {
		t, err := template.New(name+".tmpl").Delims("<%", "%>").Funcs(template.FuncMap{
			"runbook": func(alert string) string { return c.RunbookBaseURL + alert + ".md" },
			"alert":   func(name string) Alert { return c.Alerts[name] },
			"indent":  indent,
			"seasonal": func(input string) string {
				return seasonalExpr(input, c.Baseline.SeasonalRange.String(), v.Seasonal)
			},
			"head": func(name, category string) string {
				a := c.Alerts[name]
				lines := []string{"- alert: " + name}
				if a.For.D > 0 {
					lines = append(lines, "  for: "+a.For.String())
				}
				if a.KeepFiringFor.D > 0 {
					lines = append(lines, "  keep_firing_for: "+a.KeepFiringFor.String())
				}
				lines = append(lines, "  labels:", "    severity: "+a.Severity, "    category: "+category)
				return strings.Join(lines, "\n      ")
			},
		}).ParseFS(templates, "templates/"+name+".tmpl")
		if err != nil {
			return nil, err
		}
		var b bytes.Buffer
		if err := t.Execute(&b, v); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		text := trimLines(b.String())
		var probe map[string]any
		if err := yaml.Unmarshal([]byte(text), &probe); err != nil {
			return nil, fmt.Errorf("%s: rendered YAML does not parse: %w", name, err)
		}
		out[name] = []byte(text)
	}
	return out, nil
}

func join(lists ...[]string) string {
	var all []string
	for _, l := range lists {
		all = append(all, l...)
	}
	return strings.Join(all, ", ")
}

func selector(metric string, matchers []string) string {
	return metric + "{" + strings.Join(matchers, ", ") + "}"
}

func expectedClause(pairs []PairMatch, on string) string {
	if len(pairs) == 0 {
		return ""
	}
	var alts []string
	for i := range pairs {
		p := &pairs[i]
		var m []string
		for _, f := range p.fields() {
			if f.value != "" {
				m = append(m, f.label+"=~"+strconv.Quote(f.value))
			}
		}
		alts = append(alts, selector("workload_pair:podflow_packets:present", m))
	}
	return "unless on(" + on + ") (\n  " + strings.Join(alts, "\n  or ") + "\n)"
}

func forbiddenExpr(pairs []NamespacePair) string {
	if len(pairs) == 0 {
		return "# No forbidden_namespace_pairs are configured: this never fires.\nvector(1) < 0"
	}
	var alts []string
	for _, p := range pairs {
		alts = append(alts, selector("workload_pair_port:podflow_packets:present", []string{
			"source_namespace=~" + strconv.Quote(p.SourceNamespace),
			"destination_namespace=~" + strconv.Quote(p.DestinationNamespace),
		}))
	}
	return strings.Join(alts, "\nor ")
}

// namingNoneExpr selects the exporters that cannot name the Services
// clients dial, when the exporters are meant to (destination_service).
// Without the label every exporter reports method "none", as it should.
func namingNoneExpr(enabled bool, job string) string {
	if !enabled {
		return "# destination_service is not enabled (destination_service: false): this never fires.\nvector(1) < 0"
	}
	return fmt.Sprintf(`podflow_service_naming{%s, method="none"} == 1`, job)
}

// indent prefixes every line but the first with n spaces, for multi-line
// fragments inside YAML block scalars.
func indent(n int, s string) string {
	return strings.ReplaceAll(s, "\n", "\n"+strings.Repeat(" ", n))
}

// knownAs joins on the workloads past their learning period, renamed to one
// side of a pair.
func knownAs(side, agg, lookback string) string {
	on := side + "_namespace, " + side + "_workload, " + side + "_kind"
	if agg != "" {
		on = agg + ", " + on
	}
	return fmt.Sprintf(`on(%s)
  label_replace(label_replace(label_replace(
    last_over_time(workload:podflow_packets:present_baseline[%s]),
    "%s_namespace", "$1", "namespace", "(.*)"),
    "%s_workload", "$1", "workload", "(.*)"),
    "%s_kind", "$1", "kind", "(.*)")`, on, lookback, side, side, side)
}

// seasonalExpr is the seasonal prediction of an hourly peak series: the
// median over the seasonal weeks of its highest value from an hour before
// to seasonal_range after the same time of the week; weeks without data
// drop out of the median.
func seasonalExpr(input, span string, terms []seasonalTerm) string {
	var b strings.Builder
	b.WriteString("quantile without (week) (0.5,")
	for i, t := range terms {
		sep := "   "
		if i > 0 {
			sep = "or "
		}
		fmt.Fprintf(&b, "\n  %slabel_replace(max_over_time(%s[%s] offset %s), \"week\", \"%d\", \"\", \"\")", sep, input, span, t.Offset, t.Week)
	}
	b.WriteString("\n)")
	return b.String()
}

// spreadAbove selects the sources whose count (prefix:count) reaches the
// spread's minimum and exceeds its factor times the source's highest count
// in the baseline (prefix:max_baseline). A source without a baseline has
// no upper limit but the minimum.
func spreadAbove(prefix string, s Spread, src, lookback string) string {
	return fmt.Sprintf(`(
  %[1]s:count >= %[2]d
  unless on(%[3]s) (
    %[1]s:count
      <= on(%[3]s)
    last_over_time(%[1]s:max_baseline[%[4]s]) * %[5]g
  )
)`, prefix, s.Min, src, lookback, s.Factor)
}

// display is the alert template naming one side: namespace/workload (kind),
// or workload (kind) for nodes and networks.
func display(side string) string {
	return fmt.Sprintf("{{ with $labels.%[1]s_namespace }}{{ . }}/{{ end }}{{ $labels.%[1]s_workload }} ({{ $labels.%[1]s_kind }})", side)
}

// trimLines drops trailing blanks and the empty lines that optional
// fragments leave behind, keeping single blank lines between blocks.
func trimLines(s string) string {
	lines := strings.Split(s, "\n")
	out := lines[:0]
	for _, l := range lines {
		raw := l
		l = strings.TrimRight(l, " \t")
		if l == "" && raw != "" {
			continue // a line that held only an empty fragment
		}
		out = append(out, l)
	}
	return strings.TrimRight(strings.Join(out, "\n"), "\n") + "\n"
}
