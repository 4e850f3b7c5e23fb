package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/podflow/podflow/exporter/internal/capture"
	"github.com/podflow/podflow/exporter/internal/collector"
	"github.com/podflow/podflow/exporter/internal/decode"
	"github.com/podflow/podflow/exporter/internal/nft"
	"github.com/podflow/podflow/exporter/internal/pipeline"
)

// readyCheck returns why podflow is not ready, or nothing.
type readyCheck func() []string

// newHandler serves /metrics from both registries, /healthz, /readyz and
// the landing page.
func newHandler(logger *slog.Logger, flows *collector.Flows, self *prometheus.Registry, ready readyCheck) (http.Handler, error) {
	mux := http.NewServeMux()
	metrics := promhttp.HandlerFor(collector.Gatherers{Flows: flows, Self: self}, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(logger.Handler(), slog.LevelError),
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             time.Minute,
		// Prometheus negotiates OpenMetrics first and, with created
		// timestamp ingestion on, protobuf: both carry the flow counters'
		// created timestamps that way (docs/operations.md). The created
		// timestamps are not written as OpenMetrics _created lines: a
		// Prometheus without created timestamp ingestion would store each
		// as one more series per counter.
		EnableOpenMetrics: true,
	})
	mux.Handle("/metrics", promhttp.InstrumentMetricHandler(self, metrics))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		reasons := ready()
		if len(reasons) == 0 {
			_, _ = fmt.Fprintln(w, "ok")
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = fmt.Fprintln(w, strings.Join(reasons, "\n"))
	})
	landing, err := web.NewLandingPage(web.LandingConfig{
		Name:        "podflow",
		Description: "Pod-to-pod traffic counters from netfilter NFLOG",
		Version:     version.Info(),
		Links: []web.LandingLinks{
			{Address: "/metrics", Text: "Metrics"},
			{Address: "/healthz", Text: "Health", Description: "200 while the process runs"},
			{Address: "/readyz", Text: "Readiness", Description: "200 once identities are synced, the NFLOG group is bound and the nftables table is installed"},
		},
	})
	if err != nil {
		return nil, err
	}
	mux.Handle("/", landing)
	return mux, nil
}

// readiness is ready once the identities are synced, the NFLOG group is
// bound, the table is installed and, in connection mode, conntrack's
// baseline is taken; otherwise it says which is missing.
func readiness(cfg *Config, ident identitySource, reader *capture.Reader, table *nft.Table, conns *connMode) readyCheck {
	return func() []string {
		var reasons []string
		if !ident.Synced() {
			reasons = append(reasons, "identities not synced yet (Kubernetes informers)")
		}
		if c := reader.Stats(); !c.Bound {
			if c.BindError != "" {
				reasons = append(reasons, c.BindError)
			} else {
				reasons = append(reasons, fmt.Sprintf("NFLOG group %d not bound yet", cfg.Capture.Group))
			}
		}
		if r := conns.ready(); r != "" {
			reasons = append(reasons, r)
		}
		if n := table.Stats(); !n.Installed {
			r := "nftables table inet podflow not installed"
			if n.LastError != "" {
				r += ": " + n.LastError
			}
			reasons = append(reasons, r)
		}
		return reasons
	}
}

// decodeCounts reads the pipeline's decode errors for every reason.
func decodeCounts(pipe *pipeline.Pipeline) func() []collector.Count {
	reasons := decode.Reasons()
	return func() []collector.Count {
		errs := pipe.Stats().DecodeErrors
		out := make([]collector.Count, len(reasons))
		for i, r := range reasons {
			out[i] = collector.Count{Label: r.String(), Value: errs[r]}
		}
		return out
	}
}
