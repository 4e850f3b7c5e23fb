package main

import (
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

func healthDashboard() *dashboard.DashboardBuilder {
	d := newDashboard("podflow-exporter-health", "podflow / Exporter health",
		"Is podflow seeing every packet? Capture, loss, decoding, attribution, series against the cap, scrapes and Kubernetes informers, per node.",
		"now-6h").
		WithVariable(queryVar("job", "Job", `label_values(podflow_build_info{cluster=~"$cluster"}, job)`, true, false)).
		WithVariable(queryVar("instance", "Node (instance)", `label_values(podflow_build_info{cluster=~"$cluster", job=~"$job"}, instance)`, true, true).
			Description("The exporter of one node: podflow runs one pod per node."))
	node := []string{cluster, `job=~"$job"`, `instance=~"$instance"`}
	m := func(name string, extra ...string) string {
		return metric(name, append(append([]string{}, node...), extra...)...)
	}
	rate := func(name string, extra ...string) string {
		return fmt.Sprintf("rate(%s[$__rate_interval])", m(name, extra...))
	}

	d.WithPanel(statPanel("Exporters up", "Scrape targets of the podflow job that answered the last scrape, of all targets.", "short",
		rangeQ("A", fmt.Sprintf("sum(%s)", metric("up", node...)), "")).Span(4).Height(4))
	d.WithPanel(statPanel("Exporters down", "Scrape targets of the podflow job that failed the last scrape.", "short",
		rangeQ("A", fmt.Sprintf("count(%s == 0) or vector(0)", metric("up", node...)), ""), above(1, "red")).Span(4).Height(4))
	d.WithPanel(statPanel("Capture rate", "Packets per second read from NFLOG, all nodes.", "pps",
		rangeQ("A", fmt.Sprintf("sum(%s)", rate("podflow_capture_packets_received_total")), "")).Span(4).Height(4))
	d.WithPanel(statPanel("Loss ratio", "Packets lost (sequence gaps), overrun (ENOBUFS) or dropped in the hand-off, as a share of packets read plus lost. Above zero: counts are low.", "percentunit",
		rangeQ("A", fmt.Sprintf("(%s + %s + %s) / clamp_min(%s + %s, 1)",
			orZero(rate("podflow_capture_packets_lost_total")), orZero(rate("podflow_capture_overruns_total")), orZero(rate("podflow_capture_packets_dropped_total")),
			orZero(rate("podflow_capture_packets_received_total")), orZero(rate("podflow_capture_packets_lost_total"))), ""), above(0.0001, "orange"), above(0.01, "red")).Span(4).Height(4))
	d.WithPanel(statPanel("Series used", "Active flow series of the fullest node as a share of its --metrics.max-series cap. At 100% new pairs are dropped.", "percentunit",
		rangeQ("A", fmt.Sprintf("max(%s / %s)", m("podflow_series"), m("podflow_series_limit")), ""), above(0.8, "orange"), above(0.95, "red")).Span(4).Height(4))
	d.WithPanel(statPanel("Informers not synced", "Kubernetes informers (node × resource) not synced. Unsynced informers leave addresses unattributed.", "short",
		rangeQ("A", fmt.Sprintf("count(%s == 0) or vector(0)", m("podflow_kubernetes_synced")), ""), above(1, "red")).Span(4).Height(4))

	d.WithRow(dashboard.NewRowBuilder("Capture"))
	d.WithPanel(timeSeriesPanel("Capture rate per node", "Packets per second each node read from its NFLOG group.", "pps", false,
		rangeQ("A", sumBy("node, instance", rate("podflow_capture_packets_received_total")), "{{node}} {{instance}}")).Span(12).Height(8))
	d.WithPanel(timeSeriesPanel("Loss per node",
		"Packets per second lost before counting: lost (sequence gaps: kernel or socket loss), overruns (ENOBUFS on the socket), dropped (hand-off queue full, by reason). Raise --nflog.read-buffer or --capture.sample-rate if this is not zero.",
		"pps", true,
		rangeQ("A", sumBy("node, instance", rate("podflow_capture_packets_lost_total")), "{{node}} {{instance}} lost"),
		rangeQ("B", sumBy("node, instance", rate("podflow_capture_overruns_total")), "{{node}} {{instance}} overruns"),
		rangeQ("C", sumBy("node, instance, reason", rate("podflow_capture_packets_dropped_total")), "{{node}} {{instance}} dropped {{reason}}")).Span(12).Height(8))
	d.WithPanel(timelinePanel("NFLOG bound", "1 while the node's exporter holds its NFLOG group; 0 while another process owns it or binding fails.", "short",
		valueMap("0", "not bound", "red", "1", "bound", "green"),
		rangeQ("A", m("podflow_capture_bound"), "{{node}} {{instance}}")).Span(12).Height(7))
	d.WithPanel(timeSeriesPanel("Sample rate", "The 1-in-N kernel sampling rate per node (1: every packet). Counters are scaled up by N.", "short", false,
		rangeQ("A", m("podflow_capture_sample_rate"), "{{node}} {{instance}}")).Span(12).Height(7))

	d.WithRow(dashboard.NewRowBuilder("Decoding and attribution"))
	d.WithPanel(timeSeriesPanel("Decode errors", "Packets per second that could not be decoded, by node and reason (truncated, malformed, unsupported).", "pps", true,
		rangeQ("A", sumBy("node, instance, reason", rate("podflow_decode_errors_total")), "{{node}} {{instance}} {{reason}}")).Span(12).Height(8))
	d.WithPanel(timeSeriesPanel("Attribution misses", "Packets per second with an in-cluster address that no identity knew, by node and side. Persistent misses point at informers or pod/service CIDR flags.", "pps", true,
		rangeQ("A", sumBy("node, instance, side", rate("podflow_attribution_misses_total")), "{{node}} {{instance}} {{side}}")).Span(12).Height(8))
	d.WithPanel(timeSeriesPanel("Packets ignored", "Packets per second deliberately not counted on this node, by reason (other_node_reports: another node reports that connection).", "pps", true,
		rangeQ("A", sumBy("node, instance, reason", rate("podflow_packets_ignored_total")), "{{node}} {{instance}} {{reason}}")).Span(12).Height(8))
	d.WithPanel(timeSeriesPanel("Overlay packets excluded", "Encapsulated packets between nodes (VXLAN, Geneve, WireGuard, IP-in-IP, ESP) kept out of pair counters.", "pps", true,
		rangeQ("A", sumBy("encapsulation", rate("podflow_overlay_packets_total")), "{{encapsulation}}")).Span(12).Height(8))

	d.WithRow(dashboard.NewRowBuilder("Series"))
	d.WithPanel(timeSeriesPanel("Series against the cap", "Active flow series per node, and the --metrics.max-series cap (dashed).", "short", false,
		rangeQ("A", m("podflow_series"), "{{node}} {{instance}} series"),
		rangeQ("B", m("podflow_series_limit"), "{{node}} {{instance}} cap")).
		OverrideByRegexp(".* cap", props(lineStyle(common.LineStyleFillDash, 10, 10), prop("custom.fillOpacity", 0))).
		Span(12).Height(8))
	d.WithPanel(timeSeriesPanel("Series dropped and evicted", "Packets per second whose new series the cap refused (dropped), and series per second removed (evicted: idle TTL or deleted pods).", "short", true,
		rangeQ("A", sumBy("node, instance", rate("podflow_series_dropped_total")), "{{node}} {{instance}} dropped by the cap"),
		rangeQ("B", sumBy("node, instance, reason", rate("podflow_series_evicted_total")), "{{node}} {{instance}} evicted {{reason}}")).Span(12).Height(8))

	d.WithRow(dashboard.NewRowBuilder("Scrapes, nftables and Kubernetes"))
	d.WithPanel(timeSeriesPanel("Scrape duration", "How long Prometheus took to scrape each exporter. Grows with the number of series.", "s", false,
		rangeQ("A", metric("scrape_duration_seconds", node...), "{{node}} {{instance}}")).Span(12).Height(8))
	d.WithPanel(timeSeriesPanel("Samples per scrape", "Samples each scrape returned.", "short", false,
		rangeQ("A", metric("scrape_samples_scraped", node...), "{{node}} {{instance}}")).Span(12).Height(8))
	d.WithPanel(timeSeriesPanel("nftables syncs", "Re-assertions of the podflow nftables table per node, by result. Errors mean capture may be off.", "ops", true,
		rangeQ("A", sumBy("node, instance, result", rate("podflow_nftables_syncs_total")), "{{node}} {{instance}} {{result}}")).Span(12).Height(8))
	d.WithPanel(timelinePanel("Informer sync", "Per node and resource: synced (1) or not (0). The exporter is ready only once its informers synced.", "short",
		valueMap("0", "not synced", "red", "1", "synced", "green"),
		rangeQ("A", m("podflow_kubernetes_synced"), "{{node}} {{instance}} {{resource}}")).Span(12).Height(8))
	d.WithPanel(timeSeriesPanel("Kubernetes errors", "List and watch failures per second, by node and resource.", "ops", true,
		rangeQ("A", sumBy("node, instance, resource", rate("podflow_kubernetes_errors_total")), "{{node}} {{instance}} {{resource}}")).Span(12).Height(8))
	d.WithPanel(tablePanel("Versions", "podflow build per node.", "short",
		targets(instantQ("A", m("podflow_build_info"))), []string{"Value", "__name__", "job"},
		map[string]string{"node": "Node", "instance": "Instance", "version": "Version", "revision": "Revision", "goversion": "Go"}).Span(12).Height(8))
	return d
}

// orZero sums expr, or 0 when it has no series.
func orZero(expr string) string { return fmt.Sprintf("(sum(%s) or vector(0))", expr) }
