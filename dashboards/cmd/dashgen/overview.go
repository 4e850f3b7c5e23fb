package main

import (
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

func overviewDashboard() *dashboard.DashboardBuilder {
	d := newDashboard("podflow-overview", "podflow / Overview",
		"East-west and north-south traffic of the cluster: endpoints, in and out traffic per workload and node, top talkers, outside networks and firing podflow alerts.",
		"now-6h").
		WithVariable(queryVar("namespace", "Namespace", `label_values(workload_pair:podflow_bytes:rate5m{cluster=~"$cluster"}, source_namespace)`, true, true).
			Description("Restricts the per-workload panels to workloads of these namespaces (either side of a pair).")).
		WithVariable(runbookVar())

	// Pair-level panels read the 1m-tier recording rules: a rate now, or
	// the mean over the time range ($__range). Per-node panels need the
	// raw counters (the rules aggregate the exporters away).
	fromRule := func(m, window string, matchers ...string) string {
		if window == "$__range" {
			return pairAvg(m, matchers...)
		}
		return pairRate(m, matchers...)
	}
	bytes := func(window string, m ...string) string { return fromRule("bytes", window, m...) }
	conns := func(window string, m ...string) string { return fromRule("connections", window, m...) }
	raw := func(window string, m ...string) string { return rateOf("podflow_bytes_total", window, m...) }

	// Headline numbers.
	d.WithPanel(statPanel("Nodes reporting", "podflow exporters exposing metrics (one per node).", "short",
		rangeQ("A", `count(podflow_build_info{cluster=~"$cluster"})`, "")).Span(4).Height(4))
	d.WithPanel(statPanel("Endpoints", "Distinct workloads, nodes and outside networks seen on either side of a pair over the last 5 minutes.", "short",
		rangeQ("A", fmt.Sprintf(`count(group by (namespace, workload) (%s or %s))`,
			sideAs(bytes("5m"), "source"), sideAs(bytes("5m"), "destination")), "")).Span(4).Height(4))
	d.WithPanel(statPanel("Traffic", "Bytes per second of all pairs, both directions. Each connection is counted by exactly one node.", "Bps",
		rangeQ("A", fmt.Sprintf("sum(%s)", bytes("$__rate_interval")), "")).Span(4).Height(4))
	d.WithPanel(statPanel("Connections", "Connections opened per second across the cluster.", "cps",
		rangeQ("A", fmt.Sprintf("sum(%s)", conns("$__rate_interval")), "")).Span(4).Height(4))
	d.WithPanel(statPanel("To outside networks", "Bytes per second between workloads and networks outside the cluster (destination kind Network).", "Bps",
		rangeQ("A", fmt.Sprintf("sum(%s) or vector(0)", bytes("$__rate_interval", eq(dstKind, "Network"))), "")).Span(4).Height(4))
	d.WithPanel(statPanel("Firing podflow alerts", "Alerts of the podflow rules firing now. See the Alerts dashboard.", "short",
		rangeQ("A", fmt.Sprintf("count(%s) or vector(0)", firingAlerts()), ""), above(1, "orange"), above(5, "red")).Span(4).Height(4))

	d.WithRow(dashboard.NewRowBuilder("Endpoints"))
	d.WithPanel(timeSeriesPanel("Endpoints per node",
		"Distinct workloads each node currently has flow series for, as a source or destination (the node label where the scrape configuration sets it, else the instance). A connection is reported by the node of its initiator, so this is where the talking endpoints live.",
		"short", false,
		rangeQ("A", fmt.Sprintf(`count by (node, instance) (group by (node, instance, namespace, workload) (%s or %s))`,
			sideAs(metric("podflow_bytes_total", cluster), "source"), sideAs(metric("podflow_bytes_total", cluster), "destination")), "{{node}} {{instance}}")).Span(12).Height(8))
	d.WithPanel(timeSeriesPanel("Endpoints per namespace",
		"Distinct workloads per namespace that sent or received traffic in the last 5 minutes (nodes and outside networks have no namespace and are left out).",
		"short", false,
		rangeQ("A", fmt.Sprintf(`count by (namespace) (group by (namespace, workload) (%s or %s))`,
			sideAs(bytes("5m", `source_namespace!=""`), "source"), sideAs(bytes("5m", `destination_namespace!=""`), "destination")), "{{namespace}}")).Span(12).Height(8))

	d.WithRow(dashboard.NewRowBuilder("Traffic per workload and node"))
	nsSrc := re(srcNS, "$namespace")
	nsDst := re(dstNS, "$namespace")
	out := fmt.Sprintf("topk(10, %s)", workloadTraffic(true))
	in := fmt.Sprintf("topk(10, %s)", workloadTraffic(false))
	d.WithPanel(timeSeriesPanel("Out: bytes sent per workload (top 10)",
		"Bytes per second a workload sends: the original direction of connections it opens plus the reply direction of connections it accepts.",
		"Bps", false, rangeQ("A", out, "{{namespace}}/{{workload}}")).Span(12).Height(9))
	d.WithPanel(timeSeriesPanel("In: bytes received per workload (top 10)",
		"Bytes per second a workload receives: the reply direction of connections it opens plus the original direction of connections it accepts.",
		"Bps", false, rangeQ("A", in, "{{namespace}}/{{workload}}")).Span(12).Height(9))
	d.WithPanel(timeSeriesPanel("Traffic reported per node",
		"Bytes per second each node's exporter counted, by direction (original: initiator to responder; reply: the way back).",
		"Bps", true, rangeQ("A", sumBy("node, instance, direction", raw("$__rate_interval")), "{{node}} {{instance}} {{direction}}")).Span(12).Height(8))
	d.WithPanel(timeSeriesPanel("Node traffic in and out",
		"Bytes per second sent and received by the nodes themselves (kind Node: the node and its hostNetwork pods). Out is negative.",
		"Bps", false,
		rangeQ("A", sumBy("workload", sideAs(bytes("$__rate_interval", eq(srcKind, "Node"), `direction="original"`), "source")+" or "+
			sideAs(bytes("$__rate_interval", eq(dstKind, "Node"), `direction="reply"`), "destination"))+" * -1", "{{workload}} out"),
		rangeQ("B", sumBy("workload", sideAs(bytes("$__rate_interval", eq(dstKind, "Node"), `direction="original"`), "destination")+" or "+
			sideAs(bytes("$__rate_interval", eq(srcKind, "Node"), `direction="reply"`), "source")), "{{workload}} in")).Span(12).Height(8))

	d.WithRow(dashboard.NewRowBuilder("Top talkers"))
	d.WithPanel(tablePanel("Top talkers",
		"The 20 busiest workload pairs over the selected time range (bytes per second, both directions, all ports), with their connection rate.",
		"Bps",
		targets(
			instantQ("A", fmt.Sprintf("topk(20, %s)", sumBy(pairLabels, bytes("$__range", nsSrc)+" or "+bytes("$__range", nsDst)))),
			instantQ("B", fmt.Sprintf("%s and topk(20, %s)",
				sumBy(pairLabels, conns("$__range", nsSrc)+" or "+conns("$__range", nsDst)),
				sumBy(pairLabels, bytes("$__range", nsSrc)+" or "+bytes("$__range", nsDst)))),
		), nil,
		map[string]string{srcNS: "Source namespace", srcWL: "Source workload", srcKind: "Source kind",
			dstNS: "Destination namespace", dstWL: "Destination workload", dstKind: "Destination kind",
			"Value #A": "Bytes/s", "Value #B": "Connections/s"}).
		OverrideByName("Value #B", props(prop("unit", "cps"))).
		OverrideByName("Value #A", props(prop("custom.cellOptions", common.TableBarGaugeCellOptions{
			Type: common.TableCellDisplayModeGauge, Mode: cog.ToPtr(common.BarGaugeDisplayModeBasic)}))).
		Span(24).Height(10))

	d.WithRow(dashboard.NewRowBuilder("Outside the cluster"))
	d.WithPanel(timeSeriesPanel("Traffic to outside networks",
		"Bytes per second to networks outside the cluster, by network name (private, internet, or a name from the networks file such as denylist-tor).",
		"Bps", true,
		rangeQ("A", sumBy(dstWL, bytes("$__rate_interval", eq(dstKind, "Network"))), "{{destination_workload}}")).Span(12).Height(8))
	d.WithPanel(tablePanel("Workloads reaching outside networks",
		"Which workloads talk to which outside network, over the selected time range.",
		"Bps",
		targets(instantQ("A", fmt.Sprintf("topk(20, %s)", sumBy(srcNS+", "+srcWL+", "+dstWL, bytes("$__range", eq(dstKind, "Network"), nsSrc))))),
		nil, map[string]string{srcNS: "Source namespace", srcWL: "Source workload", dstWL: "Network", "Value": "Bytes/s"}).Span(12).Height(8))
	d.WithPanel(timeSeriesPanel("Traffic from outside networks",
		"Bytes per second of connections opened from outside the cluster (source kind Network), by network.",
		"Bps", true,
		rangeQ("A", sumBy(srcWL, bytes("$__rate_interval", eq(srcKind, "Network"))), "{{source_workload}}")).Span(24).Height(7))

	d.WithRow(dashboard.NewRowBuilder("Alerts"))
	d.WithPanel(tablePanel("Firing podflow alerts",
		"Alerts of the podflow rules firing now; open the Alerts dashboard for history and runbooks.",
		"short",
		targets(instantQ("A", firingAlerts())),
		[]string{"alertstate", "Value"},
		map[string]string{"alertname": "Alert", "severity": "Severity", "category": "Category"}).
		OverrideByName("alertname", runbookLink("Runbook")).
		Span(24).Height(8))
	return d
}
