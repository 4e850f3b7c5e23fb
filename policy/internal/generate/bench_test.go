package generate_test

import (
	"context"
	"os"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podflow/podflow/policy/internal/generate"
	"github.com/podflow/podflow/policy/internal/guardrail"
	"github.com/podflow/podflow/policy/internal/inventory"
	"github.com/podflow/podflow/policy/internal/networks"
	"github.com/podflow/podflow/policy/internal/output"
	"github.com/podflow/podflow/policy/prom"
	"github.com/podflow/podflow/rules/rulegen"
)

// BenchmarkGenerateFromPrometheus times what `podflow-policy generate` does
// after listing the cluster: the learning check and the pair queries over 35
// days against a real Prometheus, generation and writing the tree. `make
// bench-policy` serves a synthetic baseline (tools/synthbaseline) and sets
// PODFLOW_BENCH_PROMETHEUS.
func BenchmarkGenerateFromPrometheus(b *testing.B) {
	url := os.Getenv("PODFLOW_BENCH_PROMETHEUS")
	if url == "" {
		b.Skip("PODFLOW_BENCH_PROMETHEUS unset: run through `make bench-policy`")
	}
	api, err := prom.NewAPI(prom.Config{URL: url})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	q := prom.Query{Window: 35 * 24 * time.Hour}
	for b.Loop() {
		began := time.Now()
		hours, err := prom.LearnedHours(ctx, api, q)
		if err != nil {
			b.Fatal(err)
		}
		pairs, err := prom.ObservedPairs(ctx, api, q)
		if err != nil {
			b.Fatal(err)
		}
		queried := time.Since(began)
		inv := &inventory.Inventory{Workloads: map[inventory.Key]inventory.Workload{}, Namespaces: []string{"ns"}}
		for _, p := range pairs {
			for _, e := range []prom.Endpoint{p.Source, p.Destination} {
				k := inventory.Key{Namespace: e.Namespace, Kind: e.Kind, Name: e.Workload}
				inv.Workloads[k] = inventory.Workload{Key: k, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": e.Workload}}}
			}
		}
		res := generate.Generate(pairs, inv, networks.Networks{}, generate.Options{MinActiveHours: 1, Nodes: generate.NodesIPBlock})
		guard, err := guardrail.Build(rulegen.Default(), networks.Networks{}, inv.Namespaces, 20)
		if err != nil {
			b.Fatal(err)
		}
		if err := output.Write(b.TempDir(), res, guard); err != nil {
			b.Fatal(err)
		}
		total := time.Since(began)
		b.ReportMetric(total.Seconds(), "s/generate")
		b.ReportMetric(queried.Seconds(), "s/query")
		b.ReportMetric(float64(len(pairs)), "pairs")
		b.Logf("%d hours learned, %d pairs and ports, %d policies: queries %s, total %s",
			hours, len(pairs), len(res.Policies), queried.Round(time.Millisecond), total.Round(time.Millisecond))
	}
}
