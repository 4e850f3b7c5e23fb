package rulescheck

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
)

// BenchmarkHourlyGroups times one evaluation of each hourly rule group (and,
// for scale, of the per-minute security alert groups that read them) over
// synthetic data shaped like a cluster after 35 days: N workload pairs
// (N/10 sources with 10 destinations each, one port per pair), one hourly
// sample per pair series for 35 days and a day, and the last hour of the
// fast tier at one-minute resolution. BenchmarkFastGroups times the
// per-minute groups over raw counters. Run with `make bench-rules`; it
// writes a TSDB block of its own in a temporary directory.
func BenchmarkHourlyGroups(b *testing.B) {
	for _, pairs := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("pairs=%d", pairs), func(b *testing.B) { benchHourly(b, pairs) })
	}
}

const (
	benchHours = 36*24 + 1
	hourMs     = int64(time.Hour / time.Millisecond)
	minuteMs   = int64(time.Minute / time.Millisecond)
)

func benchHourly(b *testing.B, pairs int) {
	ctx := context.Background()
	dir := b.TempDir()
	logger := slog.New(slog.DiscardHandler)
	end := int64(benchHours) * hourMs // the evaluation time, 36 days in

	start := time.Now()
	samples, err := writeSynthetic(ctx, dir, logger, pairs, end)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("%d pairs: wrote %d samples in %s", pairs, samples, time.Since(start).Round(time.Second))

	db, err := tsdb.Open(dir, logger, nil, tsdb.DefaultOptions(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	engine := promql.NewEngine(promql.EngineOpts{
		Logger: logger, MaxSamples: 50_000_000, Timeout: 30 * time.Minute,
		LookbackDelta: 5 * time.Minute, EnableAtModifier: true, EnableNegativeOffset: true,
	})
	m := rules.NewManager(&rules.ManagerOptions{
		QueryFunc:    rules.EngineQueryFunc(engine, db),
		AppendableV2: db,
		Queryable:    db,
		Context:      ctx,
		Logger:       logger,
		NotifyFunc:   func(context.Context, string, ...*rules.Alert) {},
		Parser:       promqlParser,
	})
	groups, errs := m.LoadGroups(time.Hour, labels.EmptyLabels(), "", nil, false, filepath.Join(root, ruleFiles[0]), filepath.Join(root, ruleFiles[1]))
	if errs != nil {
		b.Fatal(errs)
	}
	ts := time.UnixMilli(end)
	for _, name := range []string{"podflow.hourly-downsample", "podflow.hourly-baseline", "podflow.security-alerts", "podflow.security-anomaly-alerts"} {
		var g *rules.Group
		for _, candidate := range groups {
			if candidate.Name() == name {
				g = candidate
			}
		}
		if g == nil {
			b.Fatalf("no group %s", name)
		}
		b.Run(name, func(b *testing.B) {
			for i := range b.N {
				t := ts.Add(time.Duration(i) * time.Millisecond)
				began := time.Now()
				g.Eval(ctx, t)
				elapsed := time.Since(began)
				b.ReportMetric(elapsed.Seconds(), "s/eval")
				for _, r := range g.Rules() {
					if err := r.LastError(); err != nil {
						b.Fatalf("%s: %v", r.Name(), err)
					}
				}
				if i == 0 {
					var series int
					for _, r := range g.Rules() {
						if _, ok := r.(*rules.RecordingRule); !ok {
							b.Logf("%d pairs: %-55s %s", pairs, r.Name(), r.GetEvaluationDuration().Round(time.Millisecond))
							continue
						}
						n := countSeries(b, engine, db, r.Name(), t)
						series += n
						b.Logf("%d pairs: %-55s %7d series  %6.2f per pair  %s", pairs, r.Name(), n, float64(n)/float64(pairs), r.GetEvaluationDuration().Round(time.Millisecond))
					}
					b.Logf("%d pairs (%d input samples): group %s: %s, %d series recorded (%.2f per pair)", pairs, samples, name, elapsed.Round(time.Millisecond), series, float64(series)/float64(pairs))
				}
			}
		})
	}
}

func countSeries(b *testing.B, engine *promql.Engine, db *tsdb.DB, name string, t time.Time) int {
	q, err := engine.NewInstantQuery(context.Background(), db, nil, name, t)
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	res := q.Exec(context.Background())
	if res.Err != nil {
		b.Fatal(res.Err)
	}
	v, err := res.Vector()
	if err != nil {
		b.Fatal(err)
	}
	return len(v)
}

// writeSynthetic writes the hourly tier for 36 days and the fast tier for
// the last hour into one block under dir.
func writeSynthetic(ctx context.Context, dir string, logger *slog.Logger, pairs int, end int64) (int, error) {
	w, err := tsdb.NewBlockWriter(logger, dir, end+hourMs)
	if err != nil {
		return 0, err
	}
	defer w.Close()
	// The head only accepts samples near its newest one: append time-major.
	type spec struct {
		ls         labels.Labels
		from, step int64
		value      func(int64) float64
		ref        storage.SeriesRef
	}
	var specs []*spec
	samples := 0
	write := func(ls labels.Labels, from, step int64, value func(int64) float64) error {
		specs = append(specs, &spec{ls: ls, from: from, step: step, value: value})
		return nil
	}
	one := func(int64) float64 { return 1 }
	sources := max(pairs/10, 1)
	workloads := map[string]bool{}
	for p := range pairs {
		src := "src-" + strconv.Itoa(p%sources)
		dst := "dst-" + strconv.Itoa((p/sources)*7+p%sources) // 10 distinct destinations per source
		workloads[src], workloads[dst] = true, true
		pair := []string{
			"source_namespace", "ns", "source_workload", src, "source_kind", "Deployment",
			"destination_namespace", "ns", "destination_workload", dst, "destination_kind", "Deployment",
		}
		port := append(append([]string{}, pair...), "destination_port", strconv.Itoa(8000+p%50), "protocol", "TCP")
		base := float64(1000 + p%100)
		rate := func(t int64) float64 { // a daily cycle and a weekly peak
			h := (t / hourMs) % 168
			v := base * (1 + float64(h%24)/24)
			if h == 10 {
				v *= 5
			}
			return v
		}
		hourly := []struct {
			name  string
			ls    []string
			value func(int64) float64
		}{
			{"workload_pair:podflow_packets:present1h", pair, one},
			{"workload_pair_port:podflow_packets:present1h", port, one},
			{"workload_pair:podflow_bytes:rate1h", pair, rate},
			{"workload_pair:podflow_bytes:max1h_rate5m", pair, func(t int64) float64 { return 1.2 * rate(t) }},
			{"workload_pair:podflow_connections:max1h_rate5m", pair, func(t int64) float64 { return rate(t) / 5000 }},
			{"workload_pair_port:podflow_packets:reply_present1h", port, one},
		}
		for _, s := range hourly {
			if err := write(labels.FromStrings(append([]string{"__name__", s.name}, s.ls...)...), 0, hourMs, s.value); err != nil {
				return samples, err
			}
		}
		last := end - hourMs
		for _, dir := range []string{"original", "reply"} {
			ls := labels.FromStrings(append([]string{"__name__", "workload_pair:podflow_bytes:rate5m", "direction", dir}, pair...)...)
			if err := write(ls, last, minuteMs, rate); err != nil {
				return samples, err
			}
			ls = labels.FromStrings(append([]string{"__name__", "workload_pair_port:podflow_packets:rate5m", "direction", dir}, port...)...)
			if err := write(ls, last, minuteMs, func(t int64) float64 { return rate(t) / 500 }); err != nil {
				return samples, err
			}
		}
		ls := labels.FromStrings(append([]string{"__name__", "workload_pair:podflow_connections:rate5m"}, pair...)...)
		if err := write(ls, last, minuteMs, func(t int64) float64 { return rate(t) / 5000 }); err != nil {
			return samples, err
		}
		for _, s := range []struct {
			name string
			ls   []string
		}{{"workload_pair:podflow_packets:present", pair}, {"workload_pair_port:podflow_packets:present", port}} {
			if err := write(labels.FromStrings(append([]string{"__name__", s.name}, s.ls...)...), last, minuteMs, one); err != nil {
				return samples, err
			}
		}
	}
	for wl := range workloads {
		ls := labels.FromStrings("__name__", "workload:podflow_packets:present1h", "namespace", "ns", "workload", wl, "kind", "Deployment")
		if err := write(ls, 0, hourMs, one); err != nil {
			return samples, err
		}
	}
	for s := range sources {
		src := []string{"source_namespace", "ns", "source_workload", "src-" + strconv.Itoa(s), "source_kind", "Deployment"}
		for _, name := range []string{"source_workload:podflow_destination_ports:max1h", "source_workload:podflow_destinations:max1h"} {
			if err := write(labels.FromStrings(append([]string{"__name__", name}, src...)...), 0, hourMs, func(int64) float64 { return 10 }); err != nil {
				return samples, err
			}
		}
		for _, name := range []string{"source_workload:podflow_destination_ports:count", "source_workload:podflow_destinations:count"} {
			if err := write(labels.FromStrings(append([]string{"__name__", name}, src...)...), end-hourMs, minuteMs, func(int64) float64 { return 10 }); err != nil {
				return samples, err
			}
		}
		// Every source sends to the outside a little, with a daily cycle.
		egress := func(t int64) float64 { return float64(500 + 100*((t/hourMs)%24)) }
		if err := write(labels.FromStrings(append([]string{"__name__", "source_workload:podflow_bytes:egress_max1h_rate5m"}, src...)...), 0, hourMs, egress); err != nil {
			return samples, err
		}
		if err := write(labels.FromStrings(append([]string{"__name__", "source_workload:podflow_bytes:egress_rate5m"}, src...)...), end-hourMs, minuteMs, egress); err != nil {
			return samples, err
		}
	}
	if err := write(labels.FromStrings("__name__", "cluster:podflow_up:present1h"), 0, hourMs, one); err != nil {
		return samples, err
	}
	if err := write(labels.FromStrings("__name__", "up", "job", "podflow", "instance", "n1:9810"), end-hourMs, minuteMs, one); err != nil {
		return samples, err
	}
	for t := int64(0); t < end; {
		app := w.Appender(ctx)
		for _, sp := range specs {
			if t < sp.from || (t-sp.from)%sp.step != 0 {
				continue
			}
			ref, err := app.Append(sp.ref, sp.ls, t, sp.value(t))
			if err != nil {
				return samples, err
			}
			sp.ref = ref
			samples++
		}
		if err := app.Commit(); err != nil {
			return samples, err
		}
		if t < end-hourMs {
			t += hourMs // only hourly series before the last hour
		} else {
			t += minuteMs
		}
	}
	_, err = w.Flush(ctx)
	return samples, err
}
