package main

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/podflow/podflow/exporter/internal/aggregate"
	"github.com/podflow/podflow/exporter/internal/attribute"
	"github.com/podflow/podflow/exporter/internal/collector"
	"github.com/podflow/podflow/exporter/internal/flow"
)

func TestHandler(t *testing.T) {
	table := aggregate.New(aggregate.Config{MaxSeries: 10})
	table.Add(flow.Key{SrcWorkload: "a", SrcKind: flow.KindPod, DstWorkload: "b", DstKind: flow.KindPod, DstPort: 80, Proto: flow.ProtoTCP}, flow.Original, 100, true, 1)
	var reasons []string
	h, err := newHandler(slog.New(slog.DiscardHandler), collector.NewFlows(table, attribute.Labels{}),
		collector.NewSelfRegistry(&collector.Sources{Aggregate: table.Stats}), func() []string { return reasons })
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		b, _ := io.ReadAll(rec.Result().Body)
		return rec.Code, string(b)
	}

	if code, body := get("/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz when ready = %d %q", code, body)
	}
	reasons = []string{"NFLOG group 100 is in use by another process", "identities not synced yet (Kubernetes informers)"}
	code, body := get("/readyz")
	if code != http.StatusServiceUnavailable || body != strings.Join(reasons, "\n")+"\n" {
		t.Errorf("/readyz when not ready = %d %q", code, body)
	}
	code, body = get("/metrics")
	for _, want := range []string{
		`podflow_bytes_total{destination_kind="Pod",destination_namespace="",destination_port="80",destination_workload="b",direction="original",protocol="TCP",source_kind="Pod",source_namespace="",source_workload="a"} 100`,
		"podflow_series 1",
		"podflow_build_info{",
		"promhttp_metric_handler_requests_total",
	} {
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("/metrics = %d, missing %q", code, want)
		}
	}
	if code, body := get("/"); code != http.StatusOK || !strings.Contains(body, "/metrics") {
		t.Errorf("landing page = %d %q", code, body)
	}
}

// TestMetricsFormats: a scraper that asks for protobuf gets the flow
// counters' created timestamps; one that asks for OpenMetrics gets
// OpenMetrics without _created series.
func TestMetricsFormats(t *testing.T) {
	created := time.Unix(1_700_000_000, 0)
	table := aggregate.New(aggregate.Config{Now: func() time.Time { return created }})
	table.Add(flow.Key{SrcWorkload: "a", SrcKind: flow.KindPod, DstWorkload: "b", DstKind: flow.KindPod, DstPort: 80, Proto: flow.ProtoTCP}, flow.Original, 100, true, 1)
	h, err := newHandler(slog.New(slog.DiscardHandler), collector.NewFlows(table, attribute.Labels{}),
		collector.NewSelfRegistry(&collector.Sources{}), func() []string { return nil })
	if err != nil {
		t.Fatal(err)
	}
	scrape := func(accept string) *http.Response {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		req.Header.Set("Accept", accept)
		h.ServeHTTP(rec, req)
		return rec.Result()
	}

	// Prometheus' Accept header with created timestamp ingestion on.
	rsp := scrape("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4,text/plain;version=0.0.4;q=0.1")
	format := expfmt.ResponseFormat(rsp.Header)
	if format.FormatType() != expfmt.TypeProtoDelim {
		t.Fatalf("protobuf scrape served %s", format)
	}
	dec := expfmt.NewDecoder(rsp.Body, format)
	stamped := 0
	for {
		var mf dto.MetricFamily
		if err := dec.Decode(&mf); err != nil {
			break
		}
		for _, m := range mf.GetMetric() {
			if strings.HasPrefix(mf.GetName(), "podflow_") && m.GetCounter().GetCreatedTimestamp().AsTime().Equal(created) {
				stamped++
			}
		}
	}
	if stamped != 5 {
		t.Errorf("protobuf: %d flow samples with their created timestamp, want 5", stamped)
	}

	rsp = scrape("application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.1")
	body, _ := io.ReadAll(rsp.Body)
	if got := expfmt.ResponseFormat(rsp.Header).FormatType(); got != expfmt.TypeOpenMetrics {
		t.Fatalf("OpenMetrics scrape served %s", rsp.Header.Get("Content-Type"))
	}
	if !strings.Contains(string(body), "# TYPE podflow_bytes counter") || strings.Contains(string(body), "podflow_bytes_created") {
		t.Errorf("OpenMetrics body:\n%s", body)
	}
}
