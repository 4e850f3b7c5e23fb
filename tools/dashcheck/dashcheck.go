// Package dashcheck reads podflow's Grafana dashboards (dashboards/*.json)
// and checks them: valid JSON, unique uids, the ${datasource} variable on
// every panel, target and query variable, units, the schema version, and
// that every PromQL expression parses and names only metrics and recording
// rules that exist.
//
// Its exported helpers (Load, Queries, Expand) also let other tests run the
// dashboard queries against a real Prometheus.
package dashcheck

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/prometheus/prometheus/promql/parser"
)

// Dashboard is one dashboard file, decoded into generic JSON.
type Dashboard struct {
	File string
	JSON map[string]any
}

// Load reads every *.json file in dir.
func Load(dir string) ([]Dashboard, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no dashboards in %s", dir)
	}
	sort.Strings(files)
	var out []Dashboard
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("%s: invalid JSON: %w", f, err)
		}
		out = append(out, Dashboard{File: filepath.Base(f), JSON: m})
	}
	return out, nil
}

// Query is one PromQL expression of a dashboard: a panel target or a query
// variable.
type Query struct {
	Panel     string // panel title, or "variable <name>"
	PanelType string
	RefID     string
	Expr      string // as written, with Grafana variables
	Instant   bool
	Format    string
}

// Panels returns every panel of a dashboard, those nested in rows included.
func Panels(d map[string]any) []map[string]any {
	var out []map[string]any
	var walk func(list []any)
	walk = func(list []any) {
		for _, p := range list {
			pm, ok := p.(map[string]any)
			if !ok {
				continue
			}
			out = append(out, pm)
			if nested, ok := pm["panels"].([]any); ok {
				walk(nested)
			}
		}
	}
	panels, _ := d["panels"].([]any)
	walk(panels)
	return out
}

// Variables returns the template variables of a dashboard.
func Variables(d map[string]any) []map[string]any {
	var out []map[string]any
	t, _ := d["templating"].(map[string]any)
	list, _ := t["list"].([]any)
	for _, v := range list {
		if vm, ok := v.(map[string]any); ok {
			out = append(out, vm)
		}
	}
	return out
}

// Queries returns the panel target expressions of a dashboard; with
// variables set, also the expressions inside query variables
// (label_values(expr, label), query_result(expr)).
func Queries(d map[string]any, variables bool) []Query {
	var out []Query
	for _, p := range Panels(d) {
		targets, _ := p["targets"].([]any)
		for _, t := range targets {
			tm, _ := t.(map[string]any)
			expr, _ := tm["expr"].(string)
			ref, _ := tm["refId"].(string)
			instant, _ := tm["instant"].(bool)
			format, _ := tm["format"].(string)
			title, _ := p["title"].(string)
			typ, _ := p["type"].(string)
			out = append(out, Query{Panel: title, PanelType: typ, RefID: ref, Expr: expr, Instant: instant, Format: format})
		}
	}
	if !variables {
		return out
	}
	for _, v := range Variables(d) {
		if v["type"] != "query" {
			continue
		}
		name, _ := v["name"].(string)
		if e, ok := variableExpr(variableQuery(v)); ok {
			out = append(out, Query{Panel: "variable " + name, PanelType: "variable", Expr: e})
		}
	}
	return out
}

func variableQuery(v map[string]any) string {
	switch q := v["query"].(type) {
	case string:
		return q
	case map[string]any:
		s, _ := q["query"].(string)
		return s
	}
	return ""
}

var (
	labelValuesRe = regexp.MustCompile(`^\s*label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$`)
	queryResultRe = regexp.MustCompile(`^\s*query_result\((.*)\)\s*$`)
)

// variableExpr extracts the PromQL expression of a Prometheus variable
// query, if it has one.
func variableExpr(q string) (string, bool) {
	if m := labelValuesRe.FindStringSubmatch(q); m != nil {
		return m[1], true
	}
	if m := queryResultRe.FindStringSubmatch(q); m != nil {
		return m[1], true
	}
	return "", false
}

// Durations Expand substitutes for Grafana's interval and range variables.
var Durations = map[string]string{
	"__rate_interval": "5m",
	"__interval":      "1m",
	"__range":         "1h",
	"__range_s":       "3600",
	"__range_ms":      "3600000",
	"__interval_ms":   "60000",
}

// varRe matches $name, ${name} and ${name:format}.
var varRe = regexp.MustCompile(`\$(?:\{([a-zA-Z0-9_]+)(?::[a-zA-Z]+)?\}|([a-zA-Z0-9_]+))`)

// Expand replaces Grafana variables in expr: the interval and range
// variables by Durations, others by values[name]. It returns the names it
// could not resolve.
func Expand(expr string, values map[string]string) (string, []string) {
	var missing []string
	out := varRe.ReplaceAllStringFunc(expr, func(m string) string {
		sub := varRe.FindStringSubmatch(m)
		name := sub[1]
		if name == "" {
			name = sub[2]
		}
		if strings.Trim(name, "0123456789") == "" {
			return m // $1: a regex group in label_replace, not a variable
		}
		if v, ok := Durations[name]; ok {
			return v
		}
		if v, ok := values[name]; ok {
			return v
		}
		missing = append(missing, name)
		return m
	})
	return out, missing
}

// SampleValues gives each template variable of a dashboard a value that
// keeps a query valid: the first option of a custom variable, ".*" for a
// variable with an All option, else "x".
func SampleValues(d map[string]any) map[string]string {
	out := map[string]string{}
	for _, v := range Variables(d) {
		name, _ := v["name"].(string)
		val := "x"
		if all, _ := v["includeAll"].(bool); all {
			val = ".*"
		}
		if v["type"] == "custom" {
			if q, _ := v["query"].(string); q != "" {
				val = strings.TrimSpace(strings.Split(q, ",")[0])
			}
		}
		if v["type"] == "textbox" || v["type"] == "constant" {
			if q, _ := v["query"].(string); q != "" {
				val = q
			}
		}
		out[name] = val
	}
	return out
}

// Parse parses an expanded expression with the Prometheus parser.
func Parse(expr string) (parser.Expr, error) {
	return parser.NewParser(parser.Options{}).ParseExpr(expr)
}

// MetricNames returns the metric names an expression selects.
func MetricNames(e parser.Expr) []string {
	seen := map[string]bool{}
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			name := vs.Name
			if name == "" {
				for _, m := range vs.LabelMatchers {
					if m.Name == "__name__" {
						name = m.Value
					}
				}
			}
			if name != "" {
				seen[name] = true
			}
		}
		return nil
	})
	var out []string
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
