package main

import (
	"strings"
)

// M is a JSON object. encoding/json sorts map keys, so a render is
// byte-for-byte stable.
type M = map[string]any

// schemaVersion is the dashboard schema the files are written in (Grafana 11
// and later load it without a migration).
const schemaVersion = 41

// ds is the data source reference every panel, target and query variable
// uses: the ${datasource} variable, never a fixed uid.
var ds = M{"type": "prometheus", "uid": "${datasource}"}

// dashboard collects panels and lays them out on the 24-column grid.
type dashboard struct {
	uid, title, description string
	tags                    []string
	vars                    []M
	panels                  []M
	links                   []M
	nextID                  int
	x, y, rowH              int
	timeFrom                string
}

func newDashboard(uid, title, description string) *dashboard {
	return &dashboard{
		uid:         uid,
		title:       title,
		description: description,
		tags:        []string{"podflow"},
		nextID:      1,
		timeFrom:    "now-6h",
		links: []M{{
			"type":        "dashboards",
			"tags":        []string{"podflow"},
			"asDropdown":  true,
			"includeVars": true,
			"keepTime":    true,
			"title":       "podflow",
			"icon":        "external link",
			"targetBlank": false,
			"tooltip":     "",
			"url":         "",
		}},
	}
}

// row starts a new row of panels with a collapsible header.
func (d *dashboard) row(title string) {
	d.newline()
	d.panels = append(d.panels, M{
		"type":      "row",
		"id":        d.id(),
		"title":     title,
		"collapsed": false,
		"panels":    []M{},
		"gridPos":   M{"x": 0, "y": d.y, "w": 24, "h": 1},
	})
	d.y++
}

func (d *dashboard) newline() {
	if d.x > 0 {
		d.x = 0
		d.y += d.rowH
		d.rowH = 0
	}
}

func (d *dashboard) id() int {
	id := d.nextID
	d.nextID++
	return id
}

// add places a panel of width w and height h after the previous one,
// wrapping to the next line when the row is full.
func (d *dashboard) add(p M, w, h int) {
	if d.x+w > 24 {
		d.newline()
	}
	p["id"] = d.id()
	p["gridPos"] = M{"x": d.x, "y": d.y, "w": w, "h": h}
	d.x += w
	if h > d.rowH {
		d.rowH = h
	}
	d.panels = append(d.panels, p)
}

func (d *dashboard) render() M {
	return M{
		"uid":                  d.uid,
		"title":                d.title,
		"description":          d.description,
		"tags":                 d.tags,
		"schemaVersion":        schemaVersion,
		"version":              1,
		"editable":             true,
		"graphTooltip":         1,
		"fiscalYearStartMonth": 0,
		"liveNow":              false,
		"refresh":              "1m",
		"time":                 M{"from": d.timeFrom, "to": "now"},
		"timepicker":           M{},
		"timezone":             "browser",
		"weekStart":            "",
		"links":                d.links,
		"annotations": M{"list": []M{{
			"builtIn":    1,
			"datasource": M{"type": "grafana", "uid": "-- Grafana --"},
			"enable":     true,
			"hide":       true,
			"iconColor":  "rgba(0, 211, 255, 1)",
			"name":       "Annotations & Alerts",
			"type":       "dashboard",
		}}},
		"templating": M{"list": d.vars},
		"panels":     d.panels,
	}
}

// ---- variables ----------------------------------------------------------

func datasourceVar() M {
	return M{
		"type":       "datasource",
		"name":       "datasource",
		"label":      "Data source",
		"query":      "prometheus",
		"regex":      "",
		"hide":       0,
		"refresh":    1,
		"multi":      false,
		"includeAll": false,
		"current":    M{},
		"options":    []M{},
	}
}

// queryVar is a Prometheus query variable. all adds an "All" option whose
// value is the regex ".*", which also matches series without the label.
func queryVar(name, label, query string, all, multi bool) M {
	v := M{
		"type":       "query",
		"name":       name,
		"label":      label,
		"datasource": ds,
		"definition": query,
		"query":      M{"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery", "qryType": 5},
		"refresh":    2,
		"sort":       1,
		"regex":      "",
		"hide":       0,
		"multi":      multi,
		"includeAll": all,
		"options":    []M{},
	}
	if all {
		v["allValue"] = ".*"
		v["current"] = M{"selected": true, "text": []string{"All"}, "value": []string{"$__all"}}
	} else {
		v["current"] = M{}
	}
	return v
}

func clusterVar() M {
	v := queryVar("cluster", "Cluster", "label_values(podflow_build_info, cluster)", true, false)
	v["description"] = "Cluster label of a multi-cluster Prometheus (Thanos, Mimir). All matches single-cluster setups without the label."
	v["current"] = M{"selected": true, "text": "All", "value": "$__all"}
	return v
}

func jobVar() M {
	v := queryVar("job", "Job", `label_values(podflow_build_info{cluster=~"$cluster"}, job)`, true, false)
	v["current"] = M{"selected": true, "text": "All", "value": "$__all"}
	return v
}

// customVar is a fixed list of values.
func customVar(name, label string, values []string, def string, all bool) M {
	opts := []M{}
	for _, v := range values {
		opts = append(opts, M{"text": v, "value": v, "selected": v == def})
	}
	v := M{
		"type":       "custom",
		"name":       name,
		"label":      label,
		"query":      strings.Join(values, ","),
		"hide":       0,
		"multi":      all,
		"includeAll": all,
		"options":    opts,
		"current":    M{"selected": true, "text": def, "value": def},
	}
	if all {
		v["allValue"] = ".*"
		v["current"] = M{"selected": true, "text": []string{"All"}, "value": []string{"$__all"}}
	}
	return v
}

func textVar(name, label, def, description string) M {
	return M{
		"type":        "textbox",
		"name":        name,
		"label":       label,
		"description": description,
		"query":       def,
		"hide":        0,
		"current":     M{"selected": false, "text": def, "value": def},
		"options":     []M{{"selected": true, "text": def, "value": def}},
	}
}

// ---- targets ------------------------------------------------------------

// rangeQ is a range query drawn over the dashboard's time range.
func rangeQ(ref, expr, legend string) M {
	return M{
		"datasource":   ds,
		"refId":        ref,
		"expr":         expr,
		"legendFormat": legend,
		"range":        true,
		"instant":      false,
		"editorMode":   "code",
	}
}

// instantQ is an instant query returned as a table.
func instantQ(ref, expr string) M {
	return M{
		"datasource": ds,
		"refId":      ref,
		"expr":       expr,
		"range":      false,
		"instant":    true,
		"format":     "table",
		"editorMode": "code",
	}
}

// ---- panels -------------------------------------------------------------

func fieldConfig(unit string, custom M, overrides []M) M {
	if overrides == nil {
		overrides = []M{}
	}
	defaults := M{
		"unit":  unit,
		"color": M{"mode": "palette-classic"},
		"thresholds": M{"mode": "absolute", "steps": []M{
			{"color": "green", "value": nil},
		}},
		"mappings": []M{},
	}
	if custom != nil {
		defaults["custom"] = custom
	}
	return M{"defaults": defaults, "overrides": overrides}
}

func timeseries(title, desc, unit string, stacked bool, targets ...M) M {
	stacking := "none"
	fill := 10
	if stacked {
		stacking = "normal"
		fill = 40
	}
	return M{
		"type":        "timeseries",
		"title":       title,
		"description": desc,
		"datasource":  ds,
		"targets":     targets,
		"fieldConfig": fieldConfig(unit, M{
			"drawStyle":         "line",
			"lineWidth":         1,
			"fillOpacity":       fill,
			"showPoints":        "never",
			"spanNulls":         false,
			"axisSoftMin":       0,
			"stacking":          M{"mode": stacking, "group": "A"},
			"lineInterpolation": "linear",
		}, nil),
		"options": M{
			"legend":  M{"displayMode": "table", "placement": "right", "showLegend": true, "calcs": []string{"mean", "max", "lastNotNull"}},
			"tooltip": M{"mode": "multi", "sort": "desc"},
		},
	}
}

// stat is a single-value panel. thresholds are (value, color) pairs above the
// green base.
func stat(title, desc, unit string, target M, steps ...any) M {
	th := []M{{"color": "green", "value": nil}}
	for i := 0; i+1 < len(steps); i += 2 {
		th = append(th, M{"value": steps[i], "color": steps[i+1]})
	}
	fc := fieldConfig(unit, nil, nil)
	fc["defaults"].(M)["thresholds"] = M{"mode": "absolute", "steps": th}
	fc["defaults"].(M)["color"] = M{"mode": "thresholds"}
	return M{
		"type":        "stat",
		"title":       title,
		"description": desc,
		"datasource":  ds,
		"targets":     []M{target},
		"fieldConfig": fc,
		"options": M{
			"reduceOptions": M{"calcs": []string{"lastNotNull"}, "fields": "", "values": false},
			"colorMode":     "value",
			"graphMode":     "area",
			"justifyMode":   "auto",
			"textMode":      "auto",
			"orientation":   "auto",
			"wideLayout":    true,
		},
	}
}

// table shows instant table queries. hide lists columns to drop, rename maps
// label columns to headers, valueUnit sets the unit of value columns.
func table(title, desc, unit string, targets []M, hide []string, rename M, overrides []M) M {
	exclude := M{"Time": true, "__name__": true}
	for _, h := range hide {
		exclude[h] = true
	}
	if rename == nil {
		rename = M{}
	}
	transforms := []M{}
	if len(targets) > 1 {
		transforms = append(transforms, M{"id": "merge", "options": M{}})
	}
	transforms = append(transforms, M{"id": "organize", "options": M{
		"excludeByName": exclude, "renameByName": rename, "indexByName": M{},
	}})
	return M{
		"type":            "table",
		"title":           title,
		"description":     desc,
		"datasource":      ds,
		"targets":         targets,
		"transformations": transforms,
		"fieldConfig":     fieldConfig(unit, M{"align": "auto", "filterable": true}, overrides),
		"options": M{
			"showHeader": true,
			"cellHeight": "sm",
			"footer":     M{"show": false, "reducer": []string{"sum"}, "countRows": false, "fields": ""},
		},
	}
}

// stateTimeline draws discrete states (alert firing, informer synced).
func stateTimeline(title, desc, unit string, mappings []M, targets ...M) M {
	fc := fieldConfig(unit, M{"fillOpacity": 80, "lineWidth": 0}, nil)
	fc["defaults"].(M)["mappings"] = mappings
	fc["defaults"].(M)["color"] = M{"mode": "thresholds"}
	return M{
		"type":        "state-timeline",
		"title":       title,
		"description": desc,
		"datasource":  ds,
		"targets":     targets,
		"fieldConfig": fc,
		"options": M{
			"showValue":   "never",
			"mergeValues": true,
			"rowHeight":   0.9,
			"alignValue":  "left",
			"legend":      M{"displayMode": "list", "placement": "bottom", "showLegend": true},
			"tooltip":     M{"mode": "single", "sort": "none"},
		},
	}
}

func valueMap(pairs ...string) []M {
	opts := M{}
	for i := 0; i+2 < len(pairs); i += 3 {
		opts[pairs[i]] = M{"text": pairs[i+1], "color": pairs[i+2], "index": i / 3}
	}
	return []M{{"type": "value", "options": opts}}
}

func byName(name string, props ...M) M {
	return M{"matcher": M{"id": "byName", "options": name}, "properties": props}
}

func prop(id string, value any) M { return M{"id": id, "value": value} }

func link(title, url string) M {
	return M{"title": title, "url": url, "targetBlank": true}
}

// sel renders a selector body from matchers, skipping empty ones.
func sel(matchers ...string) string {
	out := []string{}
	for _, m := range matchers {
		if m != "" {
			out = append(out, m)
		}
	}
	return "{" + strings.Join(out, ", ") + "}"
}

func metric(name string, matchers ...string) string { return name + sel(matchers...) }

var cluster = `cluster=~"$cluster"`

func re(label, v string) string { return label + `=~"` + v + `"` }
func eq(label, v string) string { return label + `="` + v + `"` }
