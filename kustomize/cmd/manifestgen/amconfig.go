package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The Alertmanager side: rules/alertmanager/ holds podflow's route subtree
// (routes.yaml), its inhibit rules (inhibit_rules.yaml) and a complete
// example configuration (alertmanager.yml) that defines the receivers. The
// subtree, the receivers it names and the inhibit rules become one
// monitoring.coreos.com/v1alpha1 AlertmanagerConfig. The operator nests its
// route under the global root with a namespace="<its namespace>" matcher.

const (
	amRoutesFile  = "routes.yaml"
	amInhibitFile = "inhibit_rules.yaml"
)

// amConfigFiles are the names of the complete configuration, in order.
var amConfigFiles = []string{"alertmanager.yml", "alertmanager.yaml"}

// alertmanagerConfig returns nil when dir holds no route.
func alertmanagerConfig(dir, namespace string) (amc *yaml.Node, notes []string, src string, err error) {
	var c amConfig
	var srcs []string
	for _, name := range amConfigFiles {
		ok, err := readYAML(filepath.Join(dir, name), &c)
		if err != nil {
			return nil, nil, "", err
		}
		if ok {
			srcs = append(srcs, name)
			break
		}
	}
	var routes []*amRoute
	ok, err := readYAML(filepath.Join(dir, amRoutesFile), &routes)
	if err != nil {
		return nil, nil, "", err
	}
	if ok {
		if len(routes) != 1 {
			return nil, nil, "", fmt.Errorf("%s: want exactly one route (the subtree), got %d", amRoutesFile, len(routes))
		}
		c.Route = routes[0]
		srcs = append(srcs, amRoutesFile)
		// Only the receivers and time intervals the subtree uses.
		used := map[string]bool{}
		usedTI := map[string]bool{}
		walkRoutes(c.Route, func(r *amRoute) {
			used[r.Receiver] = true
			for _, ti := range append(r.MuteTimeIntervals, r.ActiveTimeIntervals...) {
				usedTI[ti] = true
			}
		})
		delete(used, "")
		var recv []amReceiver
		for _, r := range c.Receivers {
			if used[r.Name] {
				recv = append(recv, r)
				delete(used, r.Name)
			}
		}
		for _, n := range sortedKeys(used) {
			recv = append(recv, amReceiver{Name: n})
		}
		c.Receivers = recv
		var tis []amTimeInterval
		for _, ti := range append(c.TimeIntervals, c.MuteTimeIntervals...) {
			if usedTI[ti.Name] {
				tis = append(tis, ti)
			}
		}
		c.TimeIntervals, c.MuteTimeIntervals = tis, nil
	}
	var inhibit []amInhibitRule
	ok, err = readYAML(filepath.Join(dir, amInhibitFile), &inhibit)
	if err != nil {
		return nil, nil, "", err
	}
	if ok {
		c.InhibitRules = inhibit
		srcs = append(srcs, amInhibitFile)
	}
	if c.Route == nil {
		return nil, nil, "", nil
	}
	amc, notes, err = convertAlertmanager(&c, namespace)
	if err != nil {
		return nil, nil, "", fmt.Errorf("%s: %w", dir, err)
	}
	return amc, notes, filepath.ToSlash(dir) + "/{" + strings.Join(srcs, ",") + "}", nil
}

// readYAML decodes a file into v; a missing file is not an error.
func readYAML(path string, v any) (bool, error) {
	raw, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := yaml.Unmarshal(raw, v); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	return true, nil
}

func walkRoutes(r *amRoute, f func(*amRoute)) {
	f(r)
	for _, c := range r.Routes {
		walkRoutes(c, f)
	}
}

// amConfig is the part of an Alertmanager configuration that converts.
type amConfig struct {
	Route         *amRoute         `yaml:"route"`
	Receivers     []amReceiver     `yaml:"receivers"`
	InhibitRules  []amInhibitRule  `yaml:"inhibit_rules"`
	TimeIntervals []amTimeInterval `yaml:"time_intervals"`
	// The older spelling of time_intervals.
	MuteTimeIntervals []amTimeInterval `yaml:"mute_time_intervals"`
}

type amRoute struct {
	Receiver            string            `yaml:"receiver"`
	GroupBy             []string          `yaml:"group_by"`
	GroupWait           string            `yaml:"group_wait"`
	GroupInterval       string            `yaml:"group_interval"`
	RepeatInterval      string            `yaml:"repeat_interval"`
	Matchers            []string          `yaml:"matchers"`
	Match               map[string]string `yaml:"match"`
	MatchRE             map[string]string `yaml:"match_re"`
	Continue            bool              `yaml:"continue"`
	MuteTimeIntervals   []string          `yaml:"mute_time_intervals"`
	ActiveTimeIntervals []string          `yaml:"active_time_intervals"`
	Routes              []*amRoute        `yaml:"routes"`
}

type amReceiver struct {
	Name           string            `yaml:"name"`
	WebhookConfigs []amWebhookConfig `yaml:"webhook_configs"`
	Other          map[string]any    `yaml:",inline"`
}

type amWebhookConfig struct {
	URL          string         `yaml:"url"`
	SendResolved *bool          `yaml:"send_resolved"`
	MaxAlerts    int            `yaml:"max_alerts"`
	Other        map[string]any `yaml:",inline"`
}

type amInhibitRule struct {
	SourceMatchers []string          `yaml:"source_matchers"`
	TargetMatchers []string          `yaml:"target_matchers"`
	SourceMatch    map[string]string `yaml:"source_match"`
	SourceMatchRE  map[string]string `yaml:"source_match_re"`
	TargetMatch    map[string]string `yaml:"target_match"`
	TargetMatchRE  map[string]string `yaml:"target_match_re"`
	Equal          []string          `yaml:"equal"`
}

type amTimeInterval struct {
	Name          string `yaml:"name"`
	TimeIntervals []struct {
		Times []struct {
			StartTime string `yaml:"start_time"`
			EndTime   string `yaml:"end_time"`
		} `yaml:"times"`
		Weekdays    []string `yaml:"weekdays"`
		DaysOfMonth []string `yaml:"days_of_month"`
		Months      []string `yaml:"months"`
		Years       []string `yaml:"years"`
		Location    string   `yaml:"location"`
	} `yaml:"time_intervals"`
}

func convertAlertmanager(c *amConfig, namespace string) (*yaml.Node, []string, error) {
	if c.Route == nil || c.Route.Receiver == "" {
		return nil, nil, fmt.Errorf("no route with a receiver")
	}
	var notes []string

	route, err := convertRoute(c.Route)
	if err != nil {
		return nil, nil, err
	}

	receivers := seq()
	for _, r := range c.Receivers {
		rn := mapping("name", str(r.Name))
		if len(r.WebhookConfigs) > 0 {
			wcs := seq()
			for _, w := range r.WebhookConfigs {
				wc := mapping("url", str(w.URL))
				if w.SendResolved != nil {
					set(wc, "sendResolved", boolean(*w.SendResolved))
				}
				if w.MaxAlerts > 0 {
					set(wc, "maxAlerts", integer(w.MaxAlerts))
				}
				for _, k := range sortedKeys(w.Other) {
					notes = append(notes, fmt.Sprintf("  receiver %s: webhook_configs %s", r.Name, k))
				}
				wcs.Content = append(wcs.Content, wc)
			}
			set(rn, "webhookConfigs", wcs)
		}
		for _, k := range sortedKeys(r.Other) {
			notes = append(notes, fmt.Sprintf("  receiver %s: %s", r.Name, k))
		}
		receivers.Content = append(receivers.Content, rn)
	}

	inhibit := seq()
	for i, ir := range c.InhibitRules {
		src, err := convertMatchers(ir.SourceMatchers, ir.SourceMatch, ir.SourceMatchRE)
		if err != nil {
			return nil, nil, fmt.Errorf("inhibit rule %d: %w", i, err)
		}
		tgt, err := convertMatchers(ir.TargetMatchers, ir.TargetMatch, ir.TargetMatchRE)
		if err != nil {
			return nil, nil, fmt.Errorf("inhibit rule %d: %w", i, err)
		}
		inhibit.Content = append(inhibit.Content, mapping(
			"sourceMatch", src,
			"targetMatch", tgt,
			"equal", strSeq(ir.Equal),
		))
	}

	intervals := seq()
	for _, ti := range append(c.TimeIntervals, c.MuteTimeIntervals...) {
		tis := seq()
		for i := range ti.TimeIntervals {
			t := &ti.TimeIntervals[i]
			var times *yaml.Node
			if len(t.Times) > 0 {
				times = seq()
				for _, r := range t.Times {
					times.Content = append(times.Content, mapping("startTime", str(r.StartTime), "endTime", str(r.EndTime)))
				}
			}
			var dom *yaml.Node
			if len(t.DaysOfMonth) > 0 {
				dom = seq()
				for _, d := range t.DaysOfMonth {
					n, err := dayRange(d)
					if err != nil {
						return nil, nil, fmt.Errorf("time interval %s: %w", ti.Name, err)
					}
					dom.Content = append(dom.Content, n)
				}
			}
			if t.Location != "" && t.Location != "UTC" {
				notes = append(notes, fmt.Sprintf("  time interval %s: location %s (the operator's v1alpha1 intervals are UTC)", ti.Name, t.Location))
			}
			tis.Content = append(tis.Content, mapping(
				"times", times,
				"weekdays", strSeq(t.Weekdays),
				"daysOfMonth", dom,
				"months", strSeq(t.Months),
				"years", strSeq(t.Years),
			))
		}
		intervals.Content = append(intervals.Content, mapping("name", str(ti.Name), "timeIntervals", tis))
	}

	spec := mapping("route", route, "receivers", receivers)
	if len(inhibit.Content) > 0 {
		set(spec, "inhibitRules", inhibit)
	}
	if len(intervals.Content) > 0 {
		set(spec, "muteTimeIntervals", intervals)
	}
	labels := commonLabels()
	set(labels, "release", str(releaseLabel))
	return mapping(
		"apiVersion", str("monitoring.coreos.com/v1alpha1"),
		"kind", str("AlertmanagerConfig"),
		"metadata", mapping("name", str("podflow"), "namespace", str(namespace), "labels", labels),
		"spec", spec,
	), notes, nil
}

func convertRoute(r *amRoute) (*yaml.Node, error) {
	m, err := convertMatchers(r.Matchers, r.Match, r.MatchRE)
	if err != nil {
		return nil, fmt.Errorf("route to %s: %w", r.Receiver, err)
	}
	n := mapping(
		"receiver", optStr(r.Receiver),
		"groupBy", strSeq(r.GroupBy),
		"groupWait", optStr(r.GroupWait),
		"groupInterval", optStr(r.GroupInterval),
		"repeatInterval", optStr(r.RepeatInterval),
		"matchers", m,
		"muteTimeIntervals", strSeq(r.MuteTimeIntervals),
		"activeTimeIntervals", strSeq(r.ActiveTimeIntervals),
	)
	if r.Continue {
		set(n, "continue", boolean(true))
	}
	if len(r.Routes) > 0 {
		children := seq()
		for _, c := range r.Routes {
			cn, err := convertRoute(c)
			if err != nil {
				return nil, err
			}
			children.Content = append(children.Content, cn)
		}
		set(n, "routes", children)
	}
	return n, nil
}

func optStr(s string) *yaml.Node {
	if s == "" {
		return nil
	}
	return str(s)
}

// convertMatchers turns matcher strings and the older match/match_re maps
// into the operator's {name, value, matchType} list.
func convertMatchers(matchers []string, eq, re map[string]string) (*yaml.Node, error) {
	out := seq()
	add := func(name, op, value string) {
		out.Content = append(out.Content, mapping("name", str(name), "value", str(value), "matchType", str(op)))
	}
	for _, s := range matchers {
		ms, err := parseMatchers(s)
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			add(m.Name, m.Op, m.Value)
		}
	}
	for _, k := range sortedKeys(eq) {
		add(k, "=", eq[k])
	}
	for _, k := range sortedKeys(re) {
		add(k, "=~", re[k])
	}
	if len(out.Content) == 0 {
		return nil, nil
	}
	return out, nil
}

// matcher is one label matcher.
type matcher struct{ Name, Op, Value string }

// parseMatchers parses one matchers entry: a single `name op value` or a
// braced, comma-separated list, as Alertmanager accepts them.
func parseMatchers(s string) ([]matcher, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") {
		s = s[1 : len(s)-1]
	}
	var out []matcher
	for s = strings.TrimSpace(s); s != ""; {
		m, rest, err := parseMatcher(s)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
		rest = strings.TrimSpace(rest)
		if rest != "" && rest[0] != ',' {
			return nil, fmt.Errorf("matcher %q: unexpected %q", s, rest)
		}
		s = strings.TrimSpace(strings.TrimPrefix(rest, ","))
	}
	return out, nil
}

func parseMatcher(s string) (matcher, string, error) {
	i := 0
	for i < len(s) && (s[i] == '_' || s[i] >= 'a' && s[i] <= 'z' || s[i] >= 'A' && s[i] <= 'Z' || i > 0 && s[i] >= '0' && s[i] <= '9') {
		i++
	}
	name := s[:i]
	rest := strings.TrimLeft(s[i:], " ")
	var op string
	for _, o := range []string{"=~", "!~", "!=", "="} {
		if strings.HasPrefix(rest, o) {
			op = o
			break
		}
	}
	if name == "" || op == "" {
		return matcher{}, "", fmt.Errorf("matcher %q: want name, one of = != =~ !~, value", s)
	}
	rest = strings.TrimLeft(rest[len(op):], " ")
	if strings.HasPrefix(rest, `"`) {
		q, err := strconv.QuotedPrefix(rest)
		if err != nil {
			return matcher{}, "", fmt.Errorf("matcher %q: %w", s, err)
		}
		v, err := strconv.Unquote(q)
		if err != nil {
			return matcher{}, "", fmt.Errorf("matcher %q: %w", s, err)
		}
		return matcher{name, op, v}, rest[len(q):], nil
	}
	end := strings.IndexByte(rest, ',')
	if end < 0 {
		end = len(rest)
	}
	return matcher{name, op, strings.TrimSpace(rest[:end])}, rest[end:], nil
}

// dayRange converts "1:7", "-1" or "15" to {start, end}.
func dayRange(s string) (*yaml.Node, error) {
	a, b, found := strings.Cut(s, ":")
	if !found {
		b = a
	}
	start, err1 := strconv.Atoi(strings.TrimSpace(a))
	end, err2 := strconv.Atoi(strings.TrimSpace(b))
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("days_of_month %q", s)
	}
	return mapping("start", integer(start), "end", integer(end)), nil
}
