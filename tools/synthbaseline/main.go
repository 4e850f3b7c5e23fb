// Command synthbaseline writes a Prometheus TSDB block of the hourly series
// podflow's rules keep for the baseline, for a synthetic cluster: N workload
// pairs (N/10 sources with 10 destinations each, one port per pair), each
// seen in every hour of the window, ending now. `make bench-policy` serves it
// with a real Prometheus to time policy generation.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
)

func main() {
	pairs := flag.Int("pairs", 10000, "workload pairs")
	window := flag.Duration("window", 36*24*time.Hour, "history to write, ending at the start of the current hour")
	out := flag.String("out", "", "TSDB folder to write the block into")
	flag.Parse()
	if *out == "" || *pairs < 1 {
		fmt.Fprintln(os.Stderr, "synthbaseline: -out and -pairs >= 1 are required")
		os.Exit(2)
	}
	n, end, err := write(context.Background(), *out, *pairs, *window)
	if err != nil {
		fmt.Fprintln(os.Stderr, "synthbaseline:", err)
		os.Exit(1)
	}
	fmt.Printf("%d pairs, %d samples, ending %d\n", *pairs, n, end/1000)
}

type series struct {
	ls    labels.Labels
	value float64
	ref   storage.SeriesRef
}

func write(ctx context.Context, dir string, pairs int, window time.Duration) (int, int64, error) {
	hour := int64(time.Hour / time.Millisecond)
	end := time.Now().Truncate(time.Hour).UnixMilli()
	start := end - window.Milliseconds()
	w, err := tsdb.NewBlockWriter(slog.New(slog.DiscardHandler), dir, end-start+hour)
	if err != nil {
		return 0, 0, err
	}
	defer w.Close()
	var ss []*series
	sources := max(pairs/10, 1)
	for p := range pairs {
		src := "src-" + strconv.Itoa(p%sources)
		dst := "dst-" + strconv.Itoa((p/sources)*7+p%sources)
		pair := []string{
			"source_namespace", "ns", "source_workload", src, "source_kind", "Deployment",
			"destination_namespace", "ns", "destination_workload", dst, "destination_kind", "Deployment",
		}
		port := append(append([]string{}, pair...), "destination_port", strconv.Itoa(8000+p%50), "protocol", "TCP")
		ss = append(ss,
			&series{ls: labels.FromStrings(append([]string{"__name__", "workload_pair_port:podflow_packets:present1h"}, port...)...), value: 1},
			&series{ls: labels.FromStrings(append([]string{"__name__", "workload_pair:podflow_bytes:rate1h"}, pair...)...), value: float64(1000 + p%100)})
	}
	ss = append(ss, &series{ls: labels.FromStrings("__name__", "cluster:podflow_up:present1h"), value: 1})
	n := 0
	// The block writer's head takes samples near its newest one: time-major.
	for t := start; t <= end; t += hour {
		app := w.Appender(ctx)
		for _, s := range ss {
			ref, err := app.Append(s.ref, s.ls, t, s.value)
			if err != nil {
				return n, end, err
			}
			s.ref = ref
			n++
		}
		if err := app.Commit(); err != nil {
			return n, end, err
		}
	}
	_, err = w.Flush(ctx)
	return n, end, err
}
