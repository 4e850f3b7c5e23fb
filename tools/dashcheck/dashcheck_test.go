package dashcheck

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

var root = filepath.Join("..", "..")

func load(t *testing.T) ([]Dashboard, map[string]bool) {
	t.Helper()
	dashes, err := Load(filepath.Join(root, "dashboards"))
	if err != nil {
		t.Fatal(err)
	}
	known, sources, err := KnownMetrics(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("metric names from %s", strings.Join(sources, ", "))
	return dashes, known
}

func TestDashboards(t *testing.T) {
	dashes, known := load(t)
	for _, err := range Check(dashes, known) {
		t.Error(err)
	}
	uids := map[string]bool{}
	for _, d := range dashes {
		uids[d.JSON["uid"].(string)] = true
	}
	for _, want := range []string{"podflow-overview", "podflow-topology", "podflow-pair-explorer", "podflow-alerts", "podflow-exporter-health"} {
		if !uids[want] {
			t.Errorf("no dashboard with uid %s", want)
		}
	}
}

// TestClusterVariable: every dashboard offers a cluster variable whose All
// value also matches series without a cluster label.
func TestClusterVariable(t *testing.T) {
	dashes, _ := load(t)
	for _, d := range dashes {
		var found bool
		for _, v := range Variables(d.JSON) {
			if v["name"] == "cluster" {
				found = true
				if v["includeAll"] != true || v["allValue"] != ".*" {
					t.Errorf("%s: cluster variable needs includeAll with allValue .*", d.File)
				}
			}
		}
		if !found {
			t.Errorf("%s: no cluster variable", d.File)
		}
		for _, q := range Queries(d.JSON, false) {
			if strings.Contains(q.Expr, "podflow_") && !strings.Contains(q.Expr, `cluster=~"$cluster"`) {
				t.Errorf("%s: %q/%s ignores the cluster variable", d.File, q.Panel, q.RefID)
			}
		}
	}
}

func TestExpand(t *testing.T) {
	for in, want := range map[string]string{
		`rate(x{a=~"$ns"}[$__rate_interval])`:  `rate(x{a=~"v"}[5m])`,
		`rate(x{a=~"${ns}"}[$__range])`:        `rate(x{a=~"v"}[1h])`,
		`x{a=~"${ns:regex}", b=~"${ns:pipe}"}`: `x{a=~"v", b=~"v"}`,
		`topk($n, x) / $__range_s`:             `topk(5, x) / 3600`,
		`avg_over_time(x[$__interval])`:        `avg_over_time(x[1m])`,
	} {
		got, missing := Expand(in, map[string]string{"ns": "v", "n": "5"})
		if got != want || len(missing) > 0 {
			t.Errorf("Expand(%s) = %s, %v; want %s", in, got, missing, want)
		}
	}
	if _, missing := Expand(`x{a="$nope"}`, nil); len(missing) != 1 || missing[0] != "nope" {
		t.Errorf("undefined variable not reported: %v", missing)
	}
}

// TestCheckCatchesBadDashboards seeds faults into an in-memory copy of a
// real dashboard and expects Check to report each one.
func TestCheckCatchesBadDashboards(t *testing.T) {
	dashes, known := load(t)
	var base Dashboard
	for _, d := range dashes {
		if d.JSON["uid"] == "podflow-topology" {
			base = d
		}
	}
	if base.JSON == nil {
		t.Fatal("no topology dashboard")
	}
	firstTarget := func(j map[string]any) map[string]any {
		for _, p := range Panels(j) {
			if ts, ok := p["targets"].([]any); ok && len(ts) > 0 {
				return ts[0].(map[string]any)
			}
		}
		t.Fatal("no target")
		return nil
	}
	firstPanel := func(j map[string]any) map[string]any {
		for _, p := range Panels(j) {
			if p["type"] != "row" {
				return p
			}
		}
		t.Fatal("no panel")
		return nil
	}
	cases := []struct {
		name, want string
		seed       func(j map[string]any) []Dashboard
	}{
		{"syntax error", "parse error", func(j map[string]any) []Dashboard {
			firstTarget(j)["expr"] = `sum(rate(podflow_bytes_total[5m])`
			return nil
		}},
		{"unknown metric", "podflow_sent_bytes_total is neither", func(j map[string]any) []Dashboard {
			firstTarget(j)["expr"] = `rate(podflow_sent_bytes_total[$__rate_interval])`
			return nil
		}},
		{"undefined variable", "undefined variables [nosuch]", func(j map[string]any) []Dashboard {
			firstTarget(j)["expr"] = `podflow_series{instance=~"$nosuch"}`
			return nil
		}},
		{"fixed datasource", "target datasource is not ${datasource}", func(j map[string]any) []Dashboard {
			firstTarget(j)["datasource"] = map[string]any{"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}
			return nil
		}},
		{"panel datasource", "panel datasource is not ${datasource}", func(j map[string]any) []Dashboard {
			delete(firstPanel(j), "datasource")
			return nil
		}},
		{"no unit", "no unit", func(j map[string]any) []Dashboard {
			firstPanel(j)["fieldConfig"].(map[string]any)["defaults"].(map[string]any)["unit"] = ""
			return nil
		}},
		{"old schema", "schemaVersion 27", func(j map[string]any) []Dashboard {
			j["schemaVersion"] = 27
			return nil
		}},
		{"no datasource variable", `no variable "datasource"`, func(j map[string]any) []Dashboard {
			tl := j["templating"].(map[string]any)
			list := tl["list"].([]any)
			tl["list"] = list[1:]
			return nil
		}},
		{"node graph range query", "instant table queries", func(j map[string]any) []Dashboard {
			for _, p := range Panels(j) {
				if p["type"] == "nodeGraph" {
					p["targets"].([]any)[0].(map[string]any)["instant"] = false
				}
			}
			return nil
		}},
		{"duplicate uid", "already used", func(j map[string]any) []Dashboard {
			return []Dashboard{{File: "copy.json", JSON: copyJSON(t, j)}}
		}},
		{"bad variable query", "variable", func(j map[string]any) []Dashboard {
			for _, v := range Variables(j) {
				if v["name"] == "namespace" {
					v["query"].(map[string]any)["query"] = `label_values(podflow_bytes_total{, source_namespace)`
				}
			}
			return nil
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			j := copyJSON(t, base.JSON)
			extra := c.seed(j)
			errs := Check(append([]Dashboard{{File: base.File, JSON: j}}, extra...), known)
			var all []string
			for _, err := range errs {
				all = append(all, err.Error())
			}
			if !strings.Contains(strings.Join(all, "\n"), c.want) {
				t.Errorf("seeded fault not reported; want %q in:\n%s", c.want, strings.Join(all, "\n"))
			}
		})
	}
	// And the unmodified copy is clean.
	if errs := Check([]Dashboard{{File: base.File, JSON: copyJSON(t, base.JSON)}}, known); len(errs) > 0 {
		t.Errorf("clean copy reported: %v", errs)
	}
}

func copyJSON(t *testing.T, m map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
