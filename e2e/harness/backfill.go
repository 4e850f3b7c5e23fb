package harness

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// BackfillPair is a "known" pair: traffic at a steady rate that the node of
// its initiator reported for the whole backfilled history.
type BackfillPair struct {
	Node   *Node
	Labels map[string]string // the pair labels, without direction
	// Per-second rates of the original direction; reply is half of it.
	BytesPerSecond   float64
	PacketsPerSecond float64
	ConnsPerSecond   float64
}

// PairLabels builds the pair labels of a flow series in the contract's order.
func PairLabels(srcNS, srcWorkload, srcKind, dstNS, dstWorkload, dstKind string, port int, proto string) map[string]string {
	return map[string]string{
		"source_namespace": srcNS, "source_workload": srcWorkload, "source_kind": srcKind,
		"destination_namespace": dstNS, "destination_workload": dstWorkload, "destination_kind": dstKind,
		"destination_port": fmt.Sprint(port), "protocol": proto,
	}
}

// Backfill holds the plan of a baseline backfill.
type Backfill struct {
	Start, End time.Time
	// Step between raw samples (the scrape interval the history pretends).
	Step  time.Duration
	Pairs []BackfillPair
	// RuleFiles are evaluated over the raw history, one group at a time and
	// in file order, so that each group reads what the groups before it
	// recorded (promtool evaluates every rule of one run against the server
	// alone, not against the other rules' output).
	RuleFiles []string
}

func labelString(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k, v := range m {
		if v != "" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%q", k, m[k])
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// WriteOpenMetrics writes the raw history: the flow counters of every pair,
// and up and podflow_build_info of every node, as one OpenMetrics file.
func (b *Backfill) WriteOpenMetrics(path string, nodes []*Node) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	type series struct {
		labels map[string]string
		value  func(t float64) float64
	}
	families := []struct {
		name, typ string
		series    []series
	}{
		{"podflow_bytes", "counter", nil},
		{"podflow_packets", "counter", nil},
		{"podflow_connections", "counter", nil},
		{"up", "gauge", nil},
		{"podflow_build_info", "gauge", nil},
	}
	base := func(n *Node) map[string]string {
		return map[string]string{"job": "podflow", "instance": n.MetricsAddr(), "node": n.Name}
	}
	with := func(a, c map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range a {
			out[k] = v
		}
		for k, v := range c {
			out[k] = v
		}
		return out
	}
	for _, p := range b.Pairs {
		p := p
		l := with(base(p.Node), p.Labels)
		for _, dir := range []struct {
			name string
			f    float64
		}{{"original", 1}, {"reply", 0.5}} {
			dir := dir
			families[0].series = append(families[0].series, series{with(l, map[string]string{"direction": dir.name}), func(t float64) float64 { return float64(int64(t * p.BytesPerSecond * dir.f)) }})
			families[1].series = append(families[1].series, series{with(l, map[string]string{"direction": dir.name}), func(t float64) float64 { return float64(int64(t * p.PacketsPerSecond * dir.f)) }})
		}
		families[2].series = append(families[2].series, series{l, func(t float64) float64 { return float64(int64(t * p.ConnsPerSecond)) }})
	}
	for _, n := range nodes {
		families[3].series = append(families[3].series, series{base(n), func(float64) float64 { return 1 }})
		families[4].series = append(families[4].series, series{with(base(n), map[string]string{"version": "backfill"}), func(float64) float64 { return 1 }})
	}
	for _, fam := range families {
		if len(fam.series) == 0 {
			continue
		}
		fmt.Fprintf(w, "# TYPE %s %s\n", fam.name, fam.typ)
		name := fam.name
		if fam.typ == "counter" {
			name += "_total"
		}
		for _, s := range fam.series {
			ls := labelString(s.labels)
			for t := b.Start; !t.After(b.End); t = t.Add(b.Step) {
				el := t.Sub(b.Start).Seconds()
				fmt.Fprintf(w, "%s%s %g %d\n", name, ls, s.value(el), t.Unix())
			}
		}
	}
	fmt.Fprintln(w, "# EOF")
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// ruleGroup is the part of a rule file the backfill needs to split it.
type ruleFile struct {
	Groups []yaml.Node `yaml:"groups"`
}

// ruleWave is one promtool pass: rule file contents and where to write them.
type ruleWave struct {
	Path     string
	Body     []byte
	Interval time.Duration
}

// splitGroups splits the recording rules of files into dependency waves:
// promtool evaluates every rule against the server alone, so a rule that
// reads another rule's output (of an earlier group, or of its own group)
// must run after that output is loaded. Every wave of a group keeps the
// group's name and is written to the same path, because promtool aligns the
// evaluation times with a hash of both: a later wave must see its inputs at
// its own evaluation times.
func splitGroups(dir string, files []string, defaultInterval time.Duration) ([]ruleWave, error) {
	var out []ruleWave
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var rf ruleFile
		if err := yaml.Unmarshal(data, &rf); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for _, g := range rf.Groups {
			var meta struct {
				Name     string      `yaml:"name"`
				Interval string      `yaml:"interval"`
				Rules    []yaml.Node `yaml:"rules"`
			}
			if err := g.Decode(&meta); err != nil {
				return nil, err
			}
			type rule struct {
				node   yaml.Node
				record string
				expr   string
			}
			var rules []rule
			for _, rn := range meta.Rules {
				var r struct {
					Record string `yaml:"record"`
					Expr   string `yaml:"expr"`
				}
				if err := rn.Decode(&r); err != nil {
					return nil, err
				}
				if r.Record != "" {
					rules = append(rules, rule{rn, r.Record, r.Expr})
				}
			}
			if len(rules) == 0 {
				continue
			}
			iv := defaultInterval
			if meta.Interval != "" {
				d, err := parsePromDuration(meta.Interval)
				if err != nil {
					return nil, fmt.Errorf("%s: group %s: %w", f, meta.Name, err)
				}
				iv = d
			}
			// wave[i]: 1 + the highest wave of an in-group rule that rule
			// i reads.
			wave := make([]int, len(rules))
			for changed := true; changed; {
				changed = false
				for i, r := range rules {
					for j, d := range rules {
						if i != j && reads(r.expr, d.record) && wave[i] < wave[j]+1 {
							wave[i] = wave[j] + 1
							changed = true
						}
					}
					if wave[i] > len(rules) {
						return nil, fmt.Errorf("%s: group %s: circular rules", f, meta.Name)
					}
				}
			}
			for w := 0; ; w++ {
				var nodes []*yaml.Node
				for i := range rules {
					if wave[i] == w {
						nodes = append(nodes, &rules[i].node)
					}
				}
				if len(nodes) == 0 {
					break
				}
				grp := map[string]any{"name": meta.Name, "interval": promDuration(iv), "rules": nodes}
				body, err := yaml.Marshal(map[string]any{"groups": []any{grp}})
				if err != nil {
					return nil, err
				}
				out = append(out, ruleWave{Path: filepath.Join(dir, sanitize(meta.Name)+".rules.yaml"), Body: body, Interval: iv})
			}
		}
	}
	return out, nil
}

// reads reports whether expr names the metric name (as a whole name).
func reads(expr, name string) bool {
	for i := 0; ; {
		k := strings.Index(expr[i:], name)
		if k < 0 {
			return false
		}
		start, end := i+k, i+k+len(name)
		if (start == 0 || !nameChar(expr[start-1])) && (end == len(expr) || !nameChar(expr[end])) {
			return true
		}
		i = end
	}
}

func nameChar(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

func parsePromDuration(s string) (time.Duration, error) {
	units := []struct {
		suffix string
		d      time.Duration
	}{{"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}, {"d", 24 * time.Hour}, {"w", 7 * 24 * time.Hour}, {"y", 365 * 24 * time.Hour}}
	var total time.Duration
	rest := s
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 {
			return 0, fmt.Errorf("bad duration %q", s)
		}
		var n int64
		fmt.Sscan(rest[:i], &n)
		rest = rest[i:]
		matched := false
		for _, u := range units {
			if strings.HasPrefix(rest, u.suffix) && !(u.suffix == "m" && strings.HasPrefix(rest, "ms")) {
				total += time.Duration(n) * u.d
				rest = rest[len(u.suffix):]
				matched = true
				break
			}
		}
		if !matched {
			return 0, fmt.Errorf("bad duration %q", s)
		}
	}
	return total, nil
}

// RunBackfill writes the raw history into a fresh TSDB, starts Prometheus on
// it without rules, evaluates the recording rules over the history group by
// group with promtool (restarting Prometheus to load each group's blocks),
// and leaves Prometheus running on the result. The caller then restarts it
// with its real configuration (ApplyPrometheusOptions).
func (e *Env) RunBackfill(ctx context.Context, b *Backfill, o PrometheusOptions) error {
	dir := filepath.Join(e.Dir, "backfill")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	om := filepath.Join(dir, "history.om")
	e.logf("backfill: writing %s of raw history for %d pairs", b.End.Sub(b.Start).Round(time.Hour), len(b.Pairs))
	if err := b.WriteOpenMetrics(om, e.Nodes); err != nil {
		return err
	}
	if o.DataDir == "" {
		o.DataDir = filepath.Join(e.Dir, "prometheus", "data")
	}
	if err := os.MkdirAll(o.DataDir, 0o755); err != nil {
		return err
	}
	t0 := time.Now()
	if out, err := e.runTool(ctx, nil, e.Bins.Promtool, "tsdb", "create-blocks-from", "openmetrics", om, o.DataDir); err != nil {
		return fmt.Errorf("promtool create-blocks-from openmetrics: %w: %s", err, out)
	}
	e.logf("backfill: raw blocks written in %v", time.Since(t0).Round(time.Millisecond))
	waves, err := splitGroups(dir, b.RuleFiles, time.Minute)
	if err != nil {
		return err
	}
	bare := o
	bare.RuleFiles = nil
	if _, err := e.StartPrometheus(ctx, bare); err != nil {
		return err
	}
	// promtool walks the range in 2h blocks and stops at the first block
	// that holds no evaluation time of the group; a start inside a block
	// can make that the first one (for a 1h group), and nothing is written.
	// Starting on a block boundary avoids it.
	ruleStart := b.Start.Truncate(2 * time.Hour).Add(2 * time.Hour)
	for i, w := range waves {
		t0 := time.Now()
		if err := os.WriteFile(w.Path, w.Body, 0o644); err != nil {
			return err
		}
		g := w.Path
		outDir := filepath.Join(dir, fmt.Sprintf("blocks-%02d", i))
		out, err := e.runTool(ctx, e.CPNS, e.Bins.Promtool, "tsdb", "create-blocks-from", "rules",
			"--start="+fmt.Sprint(ruleStart.Unix()), "--end="+fmt.Sprint(b.End.Unix()),
			"--eval-interval="+promDuration(w.Interval),
			"--output-dir="+outDir,
			"--url=http://"+e.Prom.Addr, g)
		if err != nil {
			return fmt.Errorf("promtool create-blocks-from rules %s: %w: %s", filepath.Base(g), err, out)
		}
		moved, err := moveBlocks(outDir, o.DataDir)
		if err != nil {
			return err
		}
		if moved == 0 {
			// promtool reports success when a pass wrote nothing; the
			// baseline would silently be missing.
			return fmt.Errorf("promtool create-blocks-from rules %s (pass %d) wrote no blocks: %s", filepath.Base(g), i+1, out)
		}
		e.logf("backfill: pass %d/%d (%s): %d blocks in %v", i+1, len(waves), filepath.Base(g), moved, time.Since(t0).Round(time.Millisecond))
		if err := e.RestartPrometheus(ctx); err != nil {
			return err
		}
	}
	return nil
}

func moveBlocks(from, to string) (int, error) {
	ents, err := os.ReadDir(from)
	if err != nil {
		if os.IsNotExist(err) {
			return 0, nil
		}
		return 0, err
	}
	n := 0
	for _, ent := range ents {
		if !ent.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join(from, ent.Name(), "meta.json")); err != nil {
			continue
		}
		if err := os.Rename(filepath.Join(from, ent.Name()), filepath.Join(to, ent.Name())); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// runTool runs a command (in ns when not nil) with its output captured.
func (e *Env) runTool(ctx context.Context, ns *NetNS, bin string, args ...string) (string, error) {
	if ns != nil {
		return ns.Exec(bin, args...)
	}
	out, err := execCombined(ctx, bin, args...)
	return out, err
}
