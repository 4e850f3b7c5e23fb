// Package rulegen renders podflow's Prometheus recording and alerting rules
// from one file of values, so that thresholds, learning periods, the
// denylist convention and the forbidden pairs change without hand-written
// PromQL.
package rulegen

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Config holds every value the rule templates read. Its YAML form is
// rules/config.yaml.
type Config struct {
	JobSelector       string   `yaml:"job_selector"`
	AggregationLabels []string `yaml:"aggregation_labels"`
	RunbookBaseURL    string   `yaml:"runbook_base_url"`
	FastInterval      Duration `yaml:"fast_interval"`
	HourlyInterval    Duration `yaml:"hourly_interval"`
	HourlyLookback    Duration `yaml:"hourly_lookback"`

	Baseline struct {
		Window        Duration `yaml:"window"`
		SeasonalWeeks int      `yaml:"seasonal_weeks"`
		SeasonalRange Duration `yaml:"seasonal_range"`
	} `yaml:"baseline"`

	Learning struct {
		Cluster         Duration `yaml:"cluster"`
		Workload        Duration `yaml:"workload"`
		PairActiveHours int      `yaml:"pair_active_hours"`
	} `yaml:"learning"`

	TrafficAnomaly VolumeBand `yaml:"traffic_anomaly"`
	EgressAnomaly  VolumeBand `yaml:"egress_anomaly"`

	ConnectionSurge struct {
		Quantile       float64 `yaml:"quantile"`
		Factor         float64 `yaml:"factor"`
		FloorPerSecond float64 `yaml:"floor_per_second"`
	} `yaml:"connection_surge"`

	UnansweredConnections struct {
		MinAnsweredHours int `yaml:"min_answered_hours"`
	} `yaml:"unanswered_connections"`

	PortScan Spread `yaml:"port_scan"`
	FanOut   Spread `yaml:"fan_out"`

	Denylist struct {
		Prefix string `yaml:"prefix"`
	} `yaml:"denylist"`

	ForbiddenNamespacePairs []NamespacePair `yaml:"forbidden_namespace_pairs"`
	ExpectedPairs           []PairMatch     `yaml:"expected_pairs"`

	// DestinationService says that the exporters run with
	// --metrics.labels=destination_service: a node that cannot name
	// Services is then an alert (PodflowServiceNamingUnavailable).
	DestinationService bool `yaml:"destination_service"`

	Health struct {
		CaptureLossRatio   float64  `yaml:"capture_loss_ratio"`
		RuleFailuresWindow Duration `yaml:"rule_failures_window"`
	} `yaml:"health"`

	Alerts map[string]Alert `yaml:"alerts"`
}

// VolumeBand configures a byte-rate band: the largest of Quantile (of the
// hourly peak 5m rates over the baseline) x QuantileFactor, the seasonal
// prediction x SeasonalFactor, and FloorBytesPerSecond.
type VolumeBand struct {
	Quantile            float64 `yaml:"quantile"`
	QuantileFactor      float64 `yaml:"quantile_factor"`
	SeasonalFactor      float64 `yaml:"seasonal_factor"`
	FloorBytesPerSecond float64 `yaml:"floor_bytes_per_second"`
}

// Spread configures the port-scan and fan-out detections: a source's count
// of distinct ports or destinations within Window must reach Min and exceed
// Factor times its baseline maximum.
type Spread struct {
	Window Duration `yaml:"window"`
	Min    int      `yaml:"min"`
	Factor float64  `yaml:"factor"`
}

// NamespacePair is one forbidden direction of communication.
type NamespacePair struct {
	SourceNamespace      string `yaml:"source_namespace"`
	DestinationNamespace string `yaml:"destination_namespace"`
}

// PairMatch selects pairs by anchored regular expressions; empty fields
// match anything.
type PairMatch struct {
	SourceNamespace      string `yaml:"source_namespace"`
	SourceWorkload       string `yaml:"source_workload"`
	SourceKind           string `yaml:"source_kind"`
	DestinationNamespace string `yaml:"destination_namespace"`
	DestinationWorkload  string `yaml:"destination_workload"`
	DestinationKind      string `yaml:"destination_kind"`
}

// Alert holds the per-alert knobs.
type Alert struct {
	Severity      string   `yaml:"severity"`
	For           Duration `yaml:"for"`
	KeepFiringFor Duration `yaml:"keep_firing_for"`
}

// AlertNames lists every alert the rules define, in file order.
var AlertNames = []string{
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

// Default returns the shipped values; rules/config.yaml spells them out.
func Default() Config {
	var c Config
	c.JobSelector = `job="podflow"`
	c.AggregationLabels = []string{"cluster"}
	c.RunbookBaseURL = "https://github.com/podflow/podflow/blob/main/rules/runbooks/"
	c.FastInterval = mustDuration("1m")
	c.HourlyInterval = mustDuration("1h")
	c.HourlyLookback = mustDuration("2h")
	c.Baseline.Window = mustDuration("35d")
	c.Baseline.SeasonalWeeks = 5
	c.Baseline.SeasonalRange = mustDuration("4h")
	c.Learning.Cluster = mustDuration("7d")
	c.Learning.Workload = mustDuration("1d")
	c.Learning.PairActiveHours = 72
	c.TrafficAnomaly = VolumeBand{Quantile: 0.99, QuantileFactor: 2, SeasonalFactor: 1.5, FloorBytesPerSecond: 1024}
	c.EgressAnomaly = VolumeBand{Quantile: 0.99, QuantileFactor: 2, SeasonalFactor: 1.5, FloorBytesPerSecond: 10240}
	c.ConnectionSurge.Quantile = 0.99
	c.ConnectionSurge.Factor = 5
	c.ConnectionSurge.FloorPerSecond = 1
	c.UnansweredConnections.MinAnsweredHours = 24
	c.PortScan = Spread{Window: mustDuration("15m"), Min: 20, Factor: 2}
	c.FanOut = Spread{Window: mustDuration("15m"), Min: 20, Factor: 2}
	c.Denylist.Prefix = "denylist"
	c.ForbiddenNamespacePairs = []NamespacePair{}
	c.ExpectedPairs = []PairMatch{}
	c.Health.CaptureLossRatio = 0.01
	c.Health.RuleFailuresWindow = mustDuration("30m")
	c.Alerts = map[string]Alert{
		"PodflowNewCommunication":         {Severity: "warning", For: mustDuration("2m")},
		"PodflowNewDestinationPort":       {Severity: "warning", For: mustDuration("2m")},
		"PodflowNewExternalNetwork":       {Severity: "warning", For: mustDuration("2m")},
		"PodflowTrafficAnomaly":           {Severity: "warning", For: mustDuration("5m")},
		"PodflowDenylistedDestination":    {Severity: "critical", KeepFiringFor: mustDuration("30m")},
		"PodflowForbiddenCommunication":   {Severity: "critical", KeepFiringFor: mustDuration("30m")},
		"PodflowPortScan":                 {Severity: "warning", For: mustDuration("2m")},
		"PodflowFanOut":                   {Severity: "warning", For: mustDuration("2m")},
		"PodflowConnectionSurge":          {Severity: "warning", For: mustDuration("5m")},
		"PodflowUnansweredConnections":    {Severity: "warning", For: mustDuration("5m")},
		"PodflowEgressAnomaly":            {Severity: "warning", For: mustDuration("10m")},
		"PodflowBaselineLearning":         {Severity: "info"},
		"PodflowExporterDown":             {Severity: "warning", For: mustDuration("5m")},
		"PodflowCaptureLoss":              {Severity: "warning", For: mustDuration("15m")},
		"PodflowSeriesLimitReached":       {Severity: "warning", For: mustDuration("5m")},
		"PodflowKubernetesNotSynced":      {Severity: "warning", For: mustDuration("10m")},
		"PodflowServiceNamingUnavailable": {Severity: "warning", For: mustDuration("15m")},
		"PodflowRuleEvaluationFailures":   {Severity: "warning", For: mustDuration("15m")},
	}
	return c
}

// Load reads a values file over the defaults: keys it leaves out keep their
// default. An alert entry replaces the whole default entry of that alert.
func Load(path string) (Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	return Parse(raw)
}

// Parse decodes values over the defaults and validates the result.
func Parse(raw []byte) (Config, error) {
	c := Default()
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("values: %w", err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

var labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// Validate reports the first value the templates cannot render correctly.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if strings.TrimSpace(c.JobSelector) == "" || strings.ContainsAny(c.JobSelector, "{}") {
		bad("job_selector: want label matchers without braces, such as job=\"podflow\", got %q", c.JobSelector)
	}
	for _, l := range c.AggregationLabels {
		if !labelName.MatchString(l) || slices.Contains(pairLabels, l) {
			bad("aggregation_labels: %q is not a label name podflow can keep", l)
		}
	}
	if c.RunbookBaseURL == "" {
		bad("runbook_base_url: empty")
	}
	if c.FastInterval.D <= 0 || c.HourlyInterval.D < c.FastInterval.D {
		bad("fast_interval and hourly_interval: want 0 < fast <= hourly")
	}
	if hour := mustDuration("1h").D; c.HourlyInterval.D != hour {
		bad("hourly_interval: the hourly tiers count hours; want 1h, got %s", c.HourlyInterval)
	}
	if c.HourlyLookback.D <= c.HourlyInterval.D {
		bad("hourly_lookback: must exceed hourly_interval (%s), got %s", c.HourlyInterval, c.HourlyLookback)
	}
	week := mustDuration("1w").D
	if c.Baseline.Window.D < week {
		bad("baseline.window: want at least 1w, got %s", c.Baseline.Window)
	}
	if c.Baseline.SeasonalWeeks < 1 {
		bad("baseline.seasonal_weeks: want at least 1")
	}
	if c.Baseline.SeasonalRange.D <= mustDuration("1h").D || c.Baseline.SeasonalRange.D >= week {
		bad("baseline.seasonal_range: want more than 1h and less than a week, got %s", c.Baseline.SeasonalRange)
	}
	if int64(c.Baseline.SeasonalWeeks)*week > c.Baseline.Window.D {
		bad("baseline: %d seasonal weeks reach back further than the %s window", c.Baseline.SeasonalWeeks, c.Baseline.Window)
	}
	if c.Learning.Cluster.D < c.HourlyInterval.D || c.Learning.Cluster.D > c.Baseline.Window.D {
		bad("learning.cluster: want between 1h and the baseline window, got %s", c.Learning.Cluster)
	}
	if c.Learning.Workload.D < 0 || c.Learning.Workload.D >= c.Baseline.Window.D {
		bad("learning.workload: want between 0 and the baseline window, got %s", c.Learning.Workload)
	}
	if c.Learning.PairActiveHours < 1 {
		bad("learning.pair_active_hours: want at least 1")
	}
	for name, b := range map[string]VolumeBand{"traffic_anomaly": c.TrafficAnomaly, "egress_anomaly": c.EgressAnomaly} {
		if q := b.Quantile; q <= 0 || q > 1 {
			bad("%s.quantile: want in (0, 1], got %v", name, q)
		}
		if b.QuantileFactor <= 0 || b.SeasonalFactor <= 0 || b.FloorBytesPerSecond < 0 {
			bad("%s: factors must be positive and the floor not negative", name)
		}
	}
	if q := c.ConnectionSurge.Quantile; q <= 0 || q > 1 {
		bad("connection_surge.quantile: want in (0, 1], got %v", q)
	}
	if c.ConnectionSurge.Factor <= 0 || c.ConnectionSurge.FloorPerSecond < 0 {
		bad("connection_surge: the factor must be positive and the floor not negative")
	}
	if h := c.UnansweredConnections.MinAnsweredHours; h < 1 || int64(h) > c.Baseline.Window.Hours() {
		bad("unanswered_connections.min_answered_hours: want between 1 and the hours of the baseline window, got %d", h)
	}
	for name, s := range map[string]Spread{"port_scan": c.PortScan, "fan_out": c.FanOut} {
		if s.Window.D < c.FastInterval.D || s.Min < 1 || s.Factor <= 0 {
			bad("%s: want window >= fast_interval, min >= 1, factor > 0", name)
		}
	}
	if c.Denylist.Prefix == "" {
		bad("denylist.prefix: empty (it would denylist every network)")
	}
	for i, p := range c.ForbiddenNamespacePairs {
		for field, re := range map[string]string{"source_namespace": p.SourceNamespace, "destination_namespace": p.DestinationNamespace} {
			if re == "" {
				bad("forbidden_namespace_pairs[%d].%s: empty", i, field)
			} else if _, err := regexp.Compile("^(?:" + re + ")$"); err != nil {
				bad("forbidden_namespace_pairs[%d].%s: %v", i, field, err)
			}
		}
	}
	for i := range c.ExpectedPairs {
		fields := c.ExpectedPairs[i].fields()
		empty := true
		for _, f := range fields {
			if f.value != "" {
				empty = false
				if _, err := regexp.Compile("^(?:" + f.value + ")$"); err != nil {
					bad("expected_pairs[%d].%s: %v", i, f.label, err)
				}
			}
		}
		if empty {
			bad("expected_pairs[%d]: no field set (it would silence every pair)", i)
		}
	}
	if r := c.Health.CaptureLossRatio; r <= 0 || r >= 1 {
		bad("health.capture_loss_ratio: want in (0, 1), got %v", r)
	}
	if c.Health.RuleFailuresWindow.D < c.FastInterval.D {
		bad("health.rule_failures_window: too short")
	}
	for _, name := range AlertNames {
		a, ok := c.Alerts[name]
		if !ok {
			bad("alerts.%s: missing", name)
			continue
		}
		if !slices.Contains([]string{"critical", "warning", "info"}, a.Severity) {
			bad("alerts.%s.severity: want critical, warning or info, got %q", name, a.Severity)
		}
		if a.For.D < 0 || a.KeepFiringFor.D < 0 {
			bad("alerts.%s: negative duration", name)
		}
	}
	for name := range c.Alerts {
		if !slices.Contains(AlertNames, name) {
			bad("alerts.%s: no such alert (known: %s)", name, strings.Join(AlertNames, ", "))
		}
	}
	return errors.Join(errs...)
}

type matchField struct{ label, value string }

func (p *PairMatch) fields() []matchField {
	return []matchField{
		{"source_namespace", p.SourceNamespace},
		{"source_workload", p.SourceWorkload},
		{"source_kind", p.SourceKind},
		{"destination_namespace", p.DestinationNamespace},
		{"destination_workload", p.DestinationWorkload},
		{"destination_kind", p.DestinationKind},
	}
}
