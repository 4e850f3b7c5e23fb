package collector

import (
	"fmt"
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"

	"github.com/podflow/podflow/exporter/internal/aggregate"
	"github.com/podflow/podflow/exporter/internal/attribute"
	"github.com/podflow/podflow/exporter/internal/flow"
)

// BenchmarkScrape is one scrape of the flow registry (Collect, gather and
// text encoding) over a table of n series.
func BenchmarkScrape(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("series=%d", n), func(b *testing.B) {
			tab := aggregate.New(aggregate.Config{})
			for i := range n {
				tab.Add(flow.Key{
					SrcNamespace: fmt.Sprintf("ns-%d", i%50), SrcWorkload: fmt.Sprintf("workload-%d", i), SrcKind: flow.KindDeployment,
					DstNamespace: fmt.Sprintf("ns-%d", (i+7)%50), DstWorkload: fmt.Sprintf("backend-%d", i%300), DstKind: flow.KindStatefulSet,
					DstPort: uint16(i % 2000), Proto: flow.ProtoTCP,
				}, flow.Original, 100, true, 1)
			}
			reg := Gatherers{Flows: NewFlows(tab, attribute.Labels{}), Self: NewSelfRegistry(&Sources{})}
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				mfs, err := reg.Gather()
				if err != nil {
					b.Fatal(err)
				}
				enc := expfmt.NewEncoder(io.Discard, expfmt.NewFormat(expfmt.TypeTextPlain))
				for _, mf := range mfs {
					if err := enc.Encode(mf); err != nil {
						b.Fatal(err)
					}
				}
			}
			// CPU time, GC included: on a shared machine wall time says
			// more about the neighbours than about the scrape.
			b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/scrape")
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
