package dashcheck

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/util/teststorage"
)

// The synthetic data every dashboard query runs over: three kinds of pairs
// (pod to pod, node to pod, pod to an outside network and back in), the
// recording rules as the shipped rules would write them, self-metrics of
// one exporter, scrape series and alerts in both states.
const evalSeries = `
load 1m
  podflow_bytes_total{job="podflow", instance="10.0.0.1:9810", node="node-1", source_namespace="shop", source_workload="web", source_kind="Deployment", destination_namespace="shop", destination_workload="db", destination_kind="StatefulSet", destination_port="5432", protocol="TCP", direction="original"} 0+600x120
  podflow_bytes_total{job="podflow", instance="10.0.0.1:9810", node="node-1", source_namespace="shop", source_workload="web", source_kind="Deployment", destination_namespace="shop", destination_workload="db", destination_kind="StatefulSet", destination_port="5432", protocol="TCP", direction="reply"} 0+1200x120
  podflow_bytes_total{job="podflow", instance="10.0.0.1:9810", node="node-1", source_workload="node-1", source_kind="Node", destination_namespace="shop", destination_workload="db", destination_kind="StatefulSet", destination_port="5432", protocol="TCP", direction="original"} 0+60x120
  podflow_bytes_total{job="podflow", instance="10.0.0.1:9810", node="node-1", source_workload="node-1", source_kind="Node", destination_namespace="shop", destination_workload="db", destination_kind="StatefulSet", destination_port="5432", protocol="TCP", direction="reply"} 0+60x120
  podflow_bytes_total{job="podflow", instance="10.0.0.2:9810", node="node-2", source_namespace="shop", source_workload="web", source_kind="Deployment", destination_workload="internet", destination_kind="Network", destination_port="443", protocol="TCP", direction="original"} 0+3000x120
  podflow_bytes_total{job="podflow", instance="10.0.0.2:9810", node="node-2", source_workload="internet", source_kind="Network", destination_namespace="shop", destination_workload="web", destination_kind="Deployment", destination_port="80", protocol="TCP", direction="original"} 0+300x120
  podflow_packets_total{job="podflow", instance="10.0.0.1:9810", node="node-1", source_namespace="shop", source_workload="web", source_kind="Deployment", destination_namespace="shop", destination_workload="db", destination_kind="StatefulSet", destination_port="5432", protocol="TCP", direction="original"} 0+6x120
  podflow_connections_total{job="podflow", instance="10.0.0.1:9810", node="node-1", source_namespace="shop", source_workload="web", source_kind="Deployment", destination_namespace="shop", destination_workload="db", destination_kind="StatefulSet", destination_port="5432", protocol="TCP"} 0+60x120
  podflow_connections_total{job="podflow", instance="10.0.0.2:9810", node="node-2", source_namespace="shop", source_workload="web", source_kind="Deployment", destination_workload="internet", destination_kind="Network", destination_port="443", protocol="TCP"} 0+6x120
  workload_pair:podflow_bytes:rate5m{source_namespace="shop", source_workload="web", source_kind="Deployment", destination_namespace="shop", destination_workload="db", destination_kind="StatefulSet", direction="original"} 10x120
  workload_pair:podflow_bytes:rate5m{source_namespace="shop", source_workload="web", source_kind="Deployment", destination_namespace="shop", destination_workload="db", destination_kind="StatefulSet", direction="reply"} 20x120
  workload_pair:podflow_bytes:rate5m{source_workload="node-1", source_kind="Node", destination_namespace="shop", destination_workload="db", destination_kind="StatefulSet", direction="original"} 1x120
  workload_pair:podflow_bytes:rate5m{source_workload="node-1", source_kind="Node", destination_namespace="shop", destination_workload="db", destination_kind="StatefulSet", direction="reply"} 1x120
  workload_pair:podflow_bytes:rate5m{source_namespace="shop", source_workload="web", source_kind="Deployment", destination_workload="internet", destination_kind="Network", direction="original"} 50x120
  workload_pair:podflow_bytes:rate5m{source_workload="internet", source_kind="Network", destination_namespace="shop", destination_workload="web", destination_kind="Deployment", direction="original"} 5x120
  workload_pair:podflow_packets:rate5m{source_namespace="shop", source_workload="web", source_kind="Deployment", destination_namespace="shop", destination_workload="db", destination_kind="StatefulSet", direction="original"} 0.1x120
  workload_pair:podflow_connections:rate5m{source_namespace="shop", source_workload="web", source_kind="Deployment", destination_namespace="shop", destination_workload="db", destination_kind="StatefulSet"} 1x120
  workload_pair:podflow_connections:rate5m{source_namespace="shop", source_workload="web", source_kind="Deployment", destination_workload="internet", destination_kind="Network"} 0.1x120
  workload_pair:podflow_bytes:upper_band_rate1h{source_namespace="shop", source_workload="web", source_kind="Deployment", destination_namespace="shop", destination_workload="db", destination_kind="StatefulSet"} 1024 _x59 1024 _x59 1024
  workload_pair:podflow_bytes:seasonal_rate1h{source_namespace="shop", source_workload="web", source_kind="Deployment", destination_namespace="shop", destination_workload="db", destination_kind="StatefulSet"} 30 _x59 30 _x59 30
  workload_pair:podflow_packets:hours_baseline{source_namespace="shop", source_workload="web", source_kind="Deployment", destination_namespace="shop", destination_workload="db", destination_kind="StatefulSet"} 100 _x59 101 _x59 102
  ALERTS{alertname="PodflowNewCommunication", alertstate="firing", category="security", severity="warning", source_namespace="shop", source_workload="web", destination_namespace="shop", destination_workload="db"} 1x120
  ALERTS{alertname="PodflowTrafficAnomaly", alertstate="pending", category="security", severity="warning", source_namespace="shop", source_workload="web", destination_namespace="shop", destination_workload="db"} 1x120
  ALERTS{alertname="PodflowBaselineLearning", alertstate="firing", category="health", severity="info"} 1x120
  ALERTS{alertname="PodflowDenylistedDestination", alertstate="firing", category="security", severity="critical", source_namespace="shop", source_workload="web", destination_workload="denylist-tor"} 1x120
  up{job="podflow", instance="10.0.0.1:9810", node="node-1"} 1x120
  scrape_duration_seconds{job="podflow", instance="10.0.0.1:9810", node="node-1"} 0.01x120
  scrape_samples_scraped{job="podflow", instance="10.0.0.1:9810", node="node-1"} 100x120
  podflow_build_info{job="podflow", instance="10.0.0.1:9810", node="node-1", version="0.1.0", revision="abc", branch="main", goversion="go1.26"} 1x120
  podflow_capture_packets_received_total{job="podflow", instance="10.0.0.1:9810", node="node-1"} 0+6000x120
  podflow_capture_packets_lost_total{job="podflow", instance="10.0.0.1:9810", node="node-1"} 0+6x120
  podflow_capture_overruns_total{job="podflow", instance="10.0.0.1:9810", node="node-1"} 0x120
  podflow_capture_packets_dropped_total{job="podflow", instance="10.0.0.1:9810", node="node-1", reason="queue_full"} 0+1x120
  podflow_capture_bound{job="podflow", instance="10.0.0.1:9810", node="node-1"} 1x120
  podflow_capture_sample_rate{job="podflow", instance="10.0.0.1:9810", node="node-1"} 1x120
  podflow_decode_errors_total{job="podflow", instance="10.0.0.1:9810", node="node-1", reason="truncated"} 0+1x120
  podflow_attribution_misses_total{job="podflow", instance="10.0.0.1:9810", node="node-1", side="destination"} 0+1x120
  podflow_packets_ignored_total{job="podflow", instance="10.0.0.1:9810", node="node-1", reason="other_node_reports"} 0+1x120
  podflow_overlay_packets_total{job="podflow", instance="10.0.0.1:9810", node="node-1", encapsulation="vxlan"} 0+60x120
  podflow_series{job="podflow", instance="10.0.0.1:9810", node="node-1"} 10x120
  podflow_series_limit{job="podflow", instance="10.0.0.1:9810", node="node-1"} 100000x120
  podflow_series_dropped_total{job="podflow", instance="10.0.0.1:9810", node="node-1"} 0x120
  podflow_series_evicted_total{job="podflow", instance="10.0.0.1:9810", node="node-1", reason="idle"} 0+1x120
  podflow_nftables_syncs_total{job="podflow", instance="10.0.0.1:9810", node="node-1", result="success"} 0+2x120
  podflow_kubernetes_synced{job="podflow", instance="10.0.0.1:9810", node="node-1", resource="pods"} 1x120
  podflow_kubernetes_errors_total{job="podflow", instance="10.0.0.1:9810", node="node-1", resource="pods"} 0x120
`

// evalValues picks variable values that select the synthetic data.
var evalValues = map[string]string{
	"src_namespace": "shop", "src_workload": "web",
	"dst_namespace": "shop", "dst_workload": "db",
}

type evaluator struct {
	storage *teststorage.TestStorage
	engine  *promql.Engine
	end     time.Time
}

func newEvaluator(t *testing.T) *evaluator {
	return &evaluator{
		storage: promqltest.LoadedStorage(t, evalSeries),
		engine: promqltest.NewTestEngineWithOpts(t, promql.EngineOpts{
			MaxSamples: 1_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute,
		}),
		end: time.Unix(0, 0).Add(120 * time.Minute).UTC(),
	}
}

// eval runs one query as Grafana would (instant at the end, or a range
// over the last hour at 1m steps) and fails on an error or an empty result.
func (e *evaluator) eval(q Query, values map[string]string) error {
	ctx := context.Background()
	expr, missing := Expand(q.Expr, values)
	if len(missing) > 0 {
		return fmt.Errorf("undefined variables %v", missing)
	}
	var qry promql.Query
	var err error
	if q.Instant || q.PanelType == "variable" {
		qry, err = e.engine.NewInstantQuery(ctx, e.storage, nil, expr, e.end)
	} else {
		qry, err = e.engine.NewRangeQuery(ctx, e.storage, nil, expr, e.end.Add(-time.Hour), e.end, time.Minute)
	}
	if err != nil {
		return fmt.Errorf("%w\n\t%s", err, expr)
	}
	defer qry.Close()
	res := qry.Exec(ctx)
	if res.Err != nil {
		return fmt.Errorf("%w\n\t%s", res.Err, expr)
	}
	if empty(res.Value) {
		return fmt.Errorf("empty result\n\t%s", expr)
	}
	return nil
}

// TestQueriesEvaluate runs every panel and variable query of every
// dashboard through the PromQL engine over the synthetic data: no
// evaluation error (many-to-many matches, duplicate label sets, type
// errors only show at run time) and a non-empty result.
func TestQueriesEvaluate(t *testing.T) {
	dashes, _ := load(t)
	e := newEvaluator(t)
	for _, d := range dashes {
		values := SampleValues(d.JSON)
		for k, v := range evalValues {
			if _, ok := values[k]; ok {
				values[k] = v
			}
		}
		for _, q := range Queries(d.JSON, true) {
			t.Run(fmt.Sprintf("%s/%s/%s", strings.TrimSuffix(d.File, ".json"), q.Panel, q.RefID), func(t *testing.T) {
				if err := e.eval(q, values); err != nil {
					t.Error(err)
				}
			})
		}
	}
}

// TestEvalCatchesBadQueries: the evaluation reports run-time errors and
// empty results.
func TestEvalCatchesBadQueries(t *testing.T) {
	e := newEvaluator(t)
	for expr, want := range map[string]string{
		`workload_pair:podflow_bytes:rate5m{source_workload="nosuch"}`:                                "empty result",
		`podflow_bytes_total * on (source_workload) group_left () workload_pair:podflow_bytes:rate5m`: "many-to-many",
		`label_replace(workload_pair:podflow_bytes:rate5m, "direction", "x", "", "")`:                 "same labelset",
	} {
		err := e.eval(Query{Expr: expr}, nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: want an error with %q, got %v", expr, want, err)
		}
	}
}

func empty(v any) bool {
	switch r := v.(type) {
	case promql.Vector:
		return len(r) == 0
	case promql.Matrix:
		return len(r) == 0
	case promql.Scalar:
		return false
	}
	return true
}
