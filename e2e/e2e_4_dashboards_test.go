package e2e_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

type dashboard struct {
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Current    json.RawMessage `json:"current"`
			IncludeAll bool            `json:"includeAll"`
			AllValue   string          `json:"allValue"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	Title   string  `json:"title"`
	Type    string  `json:"type"`
	Panels  []panel `json:"panels"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
}

// variableValues resolves every dashboard variable the way Grafana would
// with its default selection: "All" becomes the regex ".*" (or the
// variable's allValue), a custom or textbox variable its current value.
func variableValues(d dashboard) map[string]string {
	vals := map[string]string{
		"__rate_interval": "1m", "__interval": "30s", "__range": "15m",
		"__range_s": "900", "__interval_ms": "30000", "__auto": "30s",
	}
	for _, v := range d.Templating.List {
		val := ".*"
		if v.AllValue != "" {
			val = v.AllValue
		}
		var cur struct {
			Value any `json:"value"`
		}
		_ = json.Unmarshal(v.Current, &cur)
		switch c := cur.Value.(type) {
		case string:
			if c != "$__all" && c != "" {
				val = c
			}
		case []any:
			if len(c) == 1 {
				if s, ok := c[0].(string); ok && s != "$__all" {
					val = s
				}
			}
		}
		if v.Type == "datasource" {
			val = "prometheus"
		}
		vals[v.Name] = val
	}
	return vals
}

var varRE = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)(?::[a-z]+)?\}|\[\[([A-Za-z0-9_]+)\]\]|\$([A-Za-z_][A-Za-z0-9_]*)`)

func substitute(expr string, vals map[string]string) string {
	return varRE.ReplaceAllStringFunc(expr, func(m string) string {
		sm := varRE.FindStringSubmatch(m)
		name := sm[1] + sm[2] + sm[3]
		if v, ok := vals[name]; ok {
			return v
		}
		return m
	})
}

func walkPanels(ps []panel, fn func(panel)) {
	for _, p := range ps {
		fn(p)
		walkPanels(p.Panels, fn)
	}
}

// TestDashboards runs every panel query of every shipped dashboard against
// the sandbox's Prometheus, after the other scenarios made traffic and
// alerts, and requires data from each.
func TestDashboards(t *testing.T) {
	s := sandbox(t)
	if !rulesLoaded {
		t.Skip("no rules loaded: the dashboards read recorded series")
	}
	files, _ := filepath.Glob(filepath.Join(repoRoot, "dashboards", "*.json"))
	if len(files) == 0 {
		t.Skip("no dashboards/*.json in the tree")
	}
	ctx := context.Background()
	end := time.Now()
	start := end.Add(-30 * time.Minute)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		if err := json.Unmarshal(data, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		vals := variableValues(d)
		walkPanels(d.Panels, func(p panel) {
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					continue
				}
				q := substitute(tg.Expr, vals)
				n, err := s.Env.QueryRangeSeries(ctx, q, start, end, 15*time.Second)
				if err != nil {
					t.Errorf("%s: panel %q (%s): %v", filepath.Base(f), p.Title, tg.RefID, err)
					continue
				}
				if n == 0 {
					t.Errorf("%s: panel %q (%s): no data for %s", filepath.Base(f), p.Title, tg.RefID, q)
				}
			}
		})
	}
}
