package dashcheck

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Builtin are the series Prometheus itself provides: alert state and the
// per-target scrape series.
var Builtin = []string{
	"ALERTS", "ALERTS_FOR_STATE", "up",
	"scrape_duration_seconds", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling",
	"scrape_series_added",
}

// Schema versions the dashboards may be written in.
const (
	MinSchemaVersion = 39
	MaxSchemaVersion = 42
)

var (
	backtickRe = regexp.MustCompile("`([a-zA-Z_:][a-zA-Z0-9_:]*)`")
	recordRe   = regexp.MustCompile(`(?m)^\s*-?\s*record:\s*['"]?([a-zA-Z_:][a-zA-Z0-9_:]*)`)
)

// KnownMetrics returns the names a dashboard may select: the metrics
// documented in docs/metrics.md (podflow_* names in backticks), the recording rules
// of rules/ (record: in any *.yaml below it) and Builtin. root is the
// repository root. sources names what was read.
func KnownMetrics(root string) (known map[string]bool, sources []string, err error) {
	known = map[string]bool{}
	for _, b := range Builtin {
		known[b] = true
	}
	doc := filepath.Join(root, "docs", "metrics.md")
	raw, err := os.ReadFile(doc)
	if err != nil {
		return nil, nil, fmt.Errorf("the metrics reference: %w", err)
	}
	for _, m := range backtickRe.FindAllStringSubmatch(string(raw), -1) {
		// Only metric names: label names and values sit in backticks too.
		if strings.HasPrefix(m[1], "podflow_") {
			known[m[1]] = true
		}
	}
	sources = append(sources, "docs/metrics.md")
	err = filepath.WalkDir(filepath.Join(root, "rules"), func(path string, de os.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return filepath.SkipDir
			}
			return err
		}
		if de.IsDir() || !(strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			return nil
		}
		// Rule tests hold input series, not rules.
		if strings.Contains(filepath.ToSlash(path), "/tests/") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		found := recordRe.FindAllStringSubmatch(string(b), -1)
		for _, m := range found {
			known[m[1]] = true
		}
		if len(found) > 0 {
			rel, _ := filepath.Rel(root, path)
			sources = append(sources, filepath.ToSlash(rel))
		}
		return nil
	})
	return known, sources, err
}

// Check runs every check over the dashboards and returns one error per
// problem found.
func Check(dashes []Dashboard, known map[string]bool) []error {
	var errs []error
	fail := func(file, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", file, fmt.Sprintf(format, args...)))
	}
	uids := map[string]string{}
	for _, d := range dashes {
		f, j := d.File, d.JSON
		uid, _ := j["uid"].(string)
		switch {
		case uid == "":
			fail(f, "no uid")
		case uids[uid] != "":
			fail(f, "uid %q already used by %s", uid, uids[uid])
		default:
			uids[uid] = f
		}
		if t, _ := j["title"].(string); t == "" {
			fail(f, "no title")
		}
		sv, _ := j["schemaVersion"].(float64)
		if sv < MinSchemaVersion || sv > MaxSchemaVersion {
			fail(f, "schemaVersion %v outside %d..%d", j["schemaVersion"], MinSchemaVersion, MaxSchemaVersion)
		}

		// Variables: a datasource variable, and every query variable on it.
		vars := map[string]map[string]any{}
		for _, v := range Variables(j) {
			name, _ := v["name"].(string)
			vars[name] = v
		}
		dsv := vars["datasource"]
		if dsv == nil || dsv["type"] != "datasource" || dsv["query"] != "prometheus" {
			fail(f, `no variable "datasource" of type datasource with query prometheus`)
		}
		for name, v := range vars {
			if v["type"] == "query" && !usesDatasourceVar(v["datasource"]) {
				fail(f, "variable %s: datasource is not ${datasource}", name)
			}
		}

		values := SampleValues(j)
		for _, p := range Panels(j) {
			typ, _ := p["type"].(string)
			title, _ := p["title"].(string)
			if typ == "row" {
				continue
			}
			where := fmt.Sprintf("panel %q", title)
			if title == "" {
				fail(f, "a %s panel has no title", typ)
			}
			if !usesDatasourceVar(p["datasource"]) {
				fail(f, "%s: panel datasource is not ${datasource}", where)
			}
			if unit := panelUnit(p); unit == "" {
				fail(f, "%s: no unit (fieldConfig.defaults.unit)", where)
			}
			if desc, _ := p["description"].(string); strings.TrimSpace(desc) == "" {
				fail(f, "%s: no description", where)
			}
			targets, _ := p["targets"].([]any)
			if len(targets) == 0 {
				fail(f, "%s: no targets", where)
			}
			refs := map[string]bool{}
			for _, t := range targets {
				tm, _ := t.(map[string]any)
				ref, _ := tm["refId"].(string)
				if refs[ref] {
					fail(f, "%s: refId %q twice", where, ref)
				}
				refs[ref] = true
				if !usesDatasourceVar(tm["datasource"]) {
					fail(f, "%s/%s: target datasource is not ${datasource}", where, ref)
				}
				if typ == "nodeGraph" {
					instant, _ := tm["instant"].(bool)
					if !instant || tm["format"] != "table" {
						fail(f, "%s/%s: node graph queries must be instant table queries", where, ref)
					}
				}
			}
			if typ == "nodeGraph" && (!refs["nodes"] || !refs["edges"]) {
				fail(f, "%s: node graph needs targets with refId nodes and edges", where)
			}
		}

		for _, q := range Queries(j, true) {
			where := fmt.Sprintf("%s %q/%s", q.PanelType, q.Panel, q.RefID)
			if strings.TrimSpace(q.Expr) == "" {
				fail(f, "%s: empty expr", where)
				continue
			}
			if strings.Contains(q.Expr, "[[") {
				fail(f, "%s: deprecated [[var]] syntax", where)
			}
			expanded, missing := Expand(q.Expr, values)
			if len(missing) > 0 {
				fail(f, "%s: undefined variables %v", where, missing)
				continue
			}
			e, err := Parse(expanded)
			if err != nil {
				fail(f, "%s: %v\n\t%s", where, err, expanded)
				continue
			}
			for _, name := range MetricNames(e) {
				if !known[name] {
					fail(f, "%s: %s is neither a documented metric (docs/metrics.md) nor a recording rule (rules/)", where, name)
				}
			}
		}
	}
	sort.Slice(errs, func(a, b int) bool { return errs[a].Error() < errs[b].Error() })
	return errs
}

// usesDatasourceVar reports whether a datasource reference is the
// ${datasource} variable, in either of Grafana's spellings.
func usesDatasourceVar(ds any) bool {
	switch v := ds.(type) {
	case string:
		return v == "$datasource" || v == "${datasource}"
	case map[string]any:
		uid, _ := v["uid"].(string)
		return uid == "$datasource" || uid == "${datasource}"
	}
	return false
}

func panelUnit(p map[string]any) string {
	fc, _ := p["fieldConfig"].(map[string]any)
	def, _ := fc["defaults"].(map[string]any)
	u, _ := def["unit"].(string)
	return u
}
