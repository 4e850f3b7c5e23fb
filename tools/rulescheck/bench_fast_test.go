package rulescheck

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
)

// BenchmarkFastGroups times the groups evaluated every minute: the fast
// tier (the only one that reads the raw counters) and the alert groups.
// The data is scraped as a live Prometheus would see it: N workload pairs
// alive at any time, four in five of them steady and one in five
// short-lived (a cohort of new pairs starts every minute and is gone ten
// minutes later, its series ended by stale markers), one port per pair, a
// scrape every 30s, and the hourly baseline series the alerts read. The
// groups are evaluated every minute as the data arrives, so the 15m
// presence windows and the 5m rates see realistic history and churn; the
// last evaluations are timed. Run with `make bench-rules`.
func BenchmarkFastGroups(b *testing.B) {
	for _, pairs := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("pairs=%d", pairs), func(b *testing.B) { benchFast(b, pairs) })
	}
}

const (
	fastScrapeMs  = 30 * 1000
	fastEndMs     = 60 * minuteMs // the last scrape and evaluation
	fastEvalFrom  = 30 * minuteMs // the first evaluation
	fastTimed     = 5             // the last evaluations of each group are timed
	churnLifeMs   = 10 * minuteMs
	churnPerMille = 200 // short-lived pairs among the live ones
)

var fastGroups = []string{
	"podflow.workload-pair", "podflow.workload-pair-packets", "podflow.workload-pair-presence",
	"podflow.security-alerts", "podflow.security-anomaly-alerts", "podflow.health-alerts",
}

// rawSeries is one series the synthetic scrape writes, with the counter
// value at a time (seconds since the series started).
type rawSeries struct {
	ls       labels.Labels
	from, to int64 // alive in [from, to); to < 0: until the end
	value    func(sec float64) float64
	ref      storage.SeriesRef
	stale    bool
}

func benchFast(b *testing.B, pairs int) {
	ctx := context.Background()
	logger := slog.New(slog.DiscardHandler)
	db, err := tsdb.Open(b.TempDir(), logger, nil, tsdb.DefaultOptions(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	engine := promql.NewEngine(promql.EngineOpts{
		Logger: logger, MaxSamples: 50_000_000, Timeout: 10 * time.Minute,
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
	loaded, errs := m.LoadGroups(time.Minute, labels.EmptyLabels(), "", nil, false, filepath.Join(root, ruleFiles[0]), filepath.Join(root, ruleFiles[1]))
	if errs != nil {
		b.Fatal(errs)
	}
	var groups []*rules.Group
	for _, name := range fastGroups {
		var found *rules.Group
		for _, g := range loaded {
			if g.Name() == name {
				found = g
			}
		}
		if found == nil {
			b.Fatalf("no group %s", name)
		}
		groups = append(groups, found)
	}

	raw, hourly := fastSynthetic(pairs)
	b.Logf("%d pairs: %d raw series written over %s (%d alive at a time, the rest churned)", pairs, len(raw), time.Duration(fastEndMs)*time.Millisecond, aliveAt(raw, fastEndMs))
	timings := make([][]time.Duration, len(groups))
	started := time.Now()
	for t := int64(0); t <= fastEndMs; t += fastScrapeMs {
		if err := scrape(ctx, db, raw, t); err != nil {
			b.Fatal(err)
		}
		if t%hourMs == 0 {
			if err := appendAll(ctx, db, hourly, t); err != nil {
				b.Fatal(err)
			}
		}
		if t < fastEvalFrom || t%minuteMs != 0 {
			continue
		}
		for i, g := range groups {
			began := time.Now()
			g.Eval(ctx, time.UnixMilli(t))
			elapsed := time.Since(began)
			for _, r := range g.Rules() {
				if err := r.LastError(); err != nil {
					b.Fatalf("%s at %dm: %v", r.Name(), t/minuteMs, err)
				}
			}
			if t > fastEndMs-fastTimed*minuteMs {
				timings[i] = append(timings[i], elapsed)
			}
		}
	}
	b.Logf("%d pairs: scraped and evaluated %s in %s", pairs, time.Duration(fastEndMs)*time.Millisecond, time.Since(started).Round(time.Millisecond))

	at := time.UnixMilli(fastEndMs)
	for i, g := range groups {
		b.Run(g.Name(), func(b *testing.B) {
			ts := slices.Clone(timings[i])
			slices.Sort(ts)
			b.ReportMetric(ts[len(ts)/2].Seconds(), "s/eval")
			b.ReportMetric(ts[len(ts)-1].Seconds(), "max-s/eval")
			var series int
			for _, r := range g.Rules() {
				if _, ok := r.(*rules.RecordingRule); !ok {
					b.Logf("%d pairs: %-55s %s", pairs, r.Name(), r.GetEvaluationDuration().Round(time.Millisecond))
					continue
				}
				n := countSeries(b, engine, db, r.Name(), at)
				series += n
				b.Logf("%d pairs: %-55s %7d series  %6.2f per pair  %s", pairs, r.Name(), n, float64(n)/float64(pairs), r.GetEvaluationDuration().Round(time.Millisecond))
			}
			b.Logf("%d pairs: group %s: median %s, max %s over the last %d evaluations, %d series recorded (%.2f per pair)",
				pairs, g.Name(), ts[len(ts)/2].Round(time.Millisecond), ts[len(ts)-1].Round(time.Millisecond), len(ts), series, float64(series)/float64(pairs))
		})
	}
}

func aliveAt(raw []*rawSeries, t int64) int {
	n := 0
	for _, s := range raw {
		if t >= s.from && (s.to < 0 || t < s.to) {
			n++
		}
	}
	return n / 5 // five counters per pair
}

// scrape appends one scrape at t: the counters of the live series, and a
// stale marker for each series that ended since the last scrape.
func scrape(ctx context.Context, db *tsdb.DB, raw []*rawSeries, t int64) error {
	app := db.Appender(ctx)
	for _, s := range raw {
		var v float64
		switch {
		case t < s.from || s.stale:
			continue
		case s.to >= 0 && t >= s.to:
			v, s.stale = math.Float64frombits(value.StaleNaN), true
		default:
			v = s.value(float64(t-s.from) / 1000)
		}
		ref, err := app.Append(s.ref, s.ls, t, v)
		if err != nil {
			app.Rollback()
			return err
		}
		s.ref = ref
	}
	return app.Commit()
}

func appendAll(ctx context.Context, db *tsdb.DB, series []*rawSeries, t int64) error {
	app := db.Appender(ctx)
	for _, s := range series {
		ref, err := app.Append(s.ref, s.ls, t, s.value(0))
		if err != nil {
			app.Rollback()
			return err
		}
		s.ref = ref
	}
	return app.Commit()
}

// fastSynthetic builds the raw flow counters (and up) of the scrape and the
// hourly series the alerts read. Steady pair i: source src-(i mod S), its
// k-th destination; the last destination of every source is the internet,
// and one steady pair in a hundred gets no replies. Short-lived pairs come
// from cron-* sources (each cohort its own), each cohort on its own
// destination port.
func fastSynthetic(pairs int) (raw, hourly []*rawSeries) {
	steady := pairs * (1000 - churnPerMille) / 1000
	sources := max(pairs/10, 1)
	perCohort := max(pairs*churnPerMille/1000/int(churnLifeMs/minuteMs), 1)
	job := []string{"job", "podflow", "instance", "n1:9810"}
	counters := func(pair []string, from, to int64, bytesPerSec float64, answered bool) {
		reply := 0.5
		if !answered {
			reply = 0
		}
		for _, c := range []struct {
			name, dir string
			perSec    float64
		}{
			{"podflow_bytes_total", "original", bytesPerSec},
			{"podflow_bytes_total", "reply", bytesPerSec * reply},
			{"podflow_packets_total", "original", bytesPerSec / 500},
			{"podflow_packets_total", "reply", bytesPerSec / 500 * reply},
			{"podflow_connections_total", "", 0.2},
		} {
			ls := append(append([]string{"__name__", c.name}, job...), pair...)
			if c.dir != "" {
				ls = append(ls, "direction", c.dir)
			}
			perSec := c.perSec
			raw = append(raw, &rawSeries{ls: nonEmpty(ls...), from: from, to: to, value: func(sec float64) float64 { return math.Floor(sec * perSec) }})
		}
	}
	constant := func(v float64) func(float64) float64 { return func(float64) float64 { return v } }
	addHourly := func(name string, v float64, ls ...string) {
		hourly = append(hourly, &rawSeries{ls: nonEmpty(append([]string{"__name__", name}, ls...)...), value: constant(v)})
	}
	workloads := map[[3]string]bool{}
	for i := range steady {
		src := "src-" + strconv.Itoa(i%sources)
		k := i / sources
		dstNS, dst, kind := "ns", "dst-"+strconv.Itoa(k*7+i%sources), "Deployment"
		if k == steady/sources-1 {
			dstNS, dst, kind = "", "internet", "Network"
		}
		workloads[[3]string{"ns", src, "Deployment"}] = true
		workloads[[3]string{dstNS, dst, kind}] = true
		pair := []string{
			"source_namespace", "ns", "source_workload", src, "source_kind", "Deployment",
			"destination_namespace", dstNS, "destination_workload", dst, "destination_kind", kind,
		}
		port := append(slices.Clone(pair), "destination_port", strconv.Itoa(8000+i%50), "protocol", "TCP")
		counters(port, 0, -1, float64(1000+i%100), i%100 != 0)
		addHourly("workload_pair:podflow_packets:hours_baseline", 500, pair...)
		addHourly("workload_pair:podflow_bytes:upper_band_rate1h", 5000, pair...)
		addHourly("workload_pair:podflow_connections:upper_band_rate1h", 1, pair...)
		addHourly("workload_pair_port:podflow_packets:present_baseline", 1, port...)
		addHourly("workload_pair_port:podflow_packets:reply_hours_baseline", 500, port...)
	}
	for s := range sources {
		src := []string{"source_namespace", "ns", "source_workload", "src-" + strconv.Itoa(s), "source_kind", "Deployment"}
		addHourly("source_workload:podflow_destination_ports:max_baseline", 10, src...)
		addHourly("source_workload:podflow_destinations:max_baseline", 10, src...)
		addHourly("source_workload:podflow_bytes:egress_upper_band_rate1h", 20000, src...)
		addHourly("source_workload:podflow_bytes:egress_hours_baseline", 500, src...)
	}
	for w := range workloads {
		addHourly("workload:podflow_packets:present_baseline", 1, "namespace", w[0], "workload", w[1], "kind", w[2])
	}
	addHourly("cluster:podflow_up:hours_baseline", 500)
	// Cohorts that are alive at some point of the scraped hour, the first
	// ones already running at the start.
	for c := 1 - int(churnLifeMs/minuteMs); int64(c)*minuteMs <= fastEndMs; c++ {
		from := int64(c) * minuteMs
		for j := range perCohort {
			pair := []string{
				"source_namespace", "batch", "source_workload", "cron-" + strconv.Itoa(((c+100)%20)*perCohort+j), "source_kind", "CronJob",
				"destination_namespace", "ns", "destination_workload", "dst-" + strconv.Itoa(j), "destination_kind", "Deployment",
				"destination_port", strconv.Itoa(30000 + (c+100)%1000), "protocol", "TCP",
			}
			counters(pair, max(from, 0), from+churnLifeMs, float64(500+j%100), true)
		}
	}
	raw = append(raw, &rawSeries{ls: labels.FromStrings("__name__", "up", "job", "podflow", "instance", "n1:9810"), to: -1, value: constant(1)})
	return raw, hourly
}

// nonEmpty builds labels from name/value pairs, leaving out empty values as
// a scrape does.
func nonEmpty(kv ...string) labels.Labels {
	b := labels.NewScratchBuilder(len(kv) / 2)
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] != "" {
			b.Add(kv[i], kv[i+1])
		}
	}
	b.Sort()
	return b.Labels()
}
