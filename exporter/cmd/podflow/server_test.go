package main

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

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
		collector.NewSelfRegistry(collector.Sources{Aggregate: table.Stats}), func() []string { return reasons })
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
