package main

import (
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

func pairDashboard() *dashboard.DashboardBuilder {
	const anyNamespace = "All also selects endpoints without a namespace (nodes, outside networks)."
	d := newDashboard("podflow-pair-explorer", "podflow / Pair explorer",
		"One workload pair in depth: traffic against its baseline, ports, connections and alert history.",
		"now-24h").
		WithVariable(queryVar("src_namespace", "Source namespace", `label_values(workload_pair:podflow_bytes:rate5m{cluster=~"$cluster"}, source_namespace)`, true, false).
			Description(anyNamespace)).
		WithVariable(queryVar("src_workload", "Source workload", `label_values(workload_pair:podflow_bytes:rate5m{cluster=~"$cluster", source_namespace=~"$src_namespace"}, source_workload)`, false, false)).
		WithVariable(queryVar("dst_namespace", "Destination namespace", `label_values(workload_pair:podflow_bytes:rate5m{cluster=~"$cluster", source_namespace=~"$src_namespace", source_workload=~"$src_workload"}, destination_namespace)`, true, false).
			Description(anyNamespace)).
		WithVariable(queryVar("dst_workload", "Destination workload", `label_values(workload_pair:podflow_bytes:rate5m{cluster=~"$cluster", source_namespace=~"$src_namespace", source_workload=~"$src_workload", destination_namespace=~"$dst_namespace"}, destination_workload)`, false, false)).
		WithVariable(runbookVar())

	pair := []string{re(srcNS, "$src_namespace"), re(srcWL, "$src_workload"), re(dstNS, "$dst_namespace"), re(dstWL, "$dst_workload")}
	bytes := func(window string, m ...string) string {
		return rateOf("podflow_bytes_total", window, append(append([]string{}, pair...), m...)...)
	}
	alerts := func(m ...string) string {
		return metric("ALERTS", append([]string{`alertname=~"Podflow.*"`, cluster,
			`source_namespace=~"$src_namespace"`, `source_workload=~"$src_workload"`,
			`destination_namespace=~"$dst_namespace"`, `destination_workload=~"$dst_workload"`}, m...)...)
	}

	d.WithPanel(statPanel("Traffic", "Bytes per second of the pair over the selected range, both directions.", "Bps",
		instantQ("A", fmt.Sprintf("sum(%s)", pairAvg("bytes", pair...)))).Span(5).Height(4))
	d.WithPanel(statPanel("Connections", "Connections per second the source opened to the destination over the selected range.", "cps",
		instantQ("A", fmt.Sprintf("sum(%s)", pairAvg("connections", pair...)))).Span(5).Height(4))
	d.WithPanel(statPanel("Ports", "Distinct destination ports and protocols of the pair over the selected range.", "short",
		instantQ("A", fmt.Sprintf("count(%s)", sumBy("destination_port, protocol", bytes("$__range"))))).Span(4).Height(4))
	d.WithPanel(statPanel("Baseline history", "Hours the pair was active within the 35-day baseline window. Volume anomalies are judged only from 72 hours on.", "h",
		instantQ("A", fmt.Sprintf("max(last_over_time(%s[2h])) or vector(0)", metric("workload_pair:podflow_packets:hours_baseline", append([]string{cluster}, pair...)...))), above(24, "green")).Span(5).Height(4))
	d.WithPanel(statPanel("Firing alerts", "podflow alerts naming this pair that fire now.", "short",
		instantQ("A", fmt.Sprintf(`count(%s) or vector(0)`, alerts(`alertstate="firing"`))), above(1, "red")).Span(5).Height(4))

	d.WithPanel(baselinePanel(pair).Span(24).Height(10))

	d.WithPanel(timeSeriesPanel("Traffic by direction",
		"Original: source to destination; reply: the way back.",
		"Bps", false, rangeQ("A", sumBy("direction", pairRate("bytes", pair...)), "{{direction}}")).Span(12).Height(8))
	d.WithPanel(timeSeriesPanel("Connection rate", "Connections per second the source opened to the destination, by port.",
		"cps", false, rangeQ("A", sumBy("destination_port, protocol", rateOf("podflow_connections_total", "$__rate_interval", pair...)), "{{protocol}}/{{destination_port}}")).Span(12).Height(8))
	d.WithPanel(tablePanel("Ports used", "Destination ports and protocols of the pair over the selected range.", "Bps",
		targets(
			instantQ("A", sumBy("destination_port, protocol", bytes("$__range"))),
			instantQ("B", sumBy("destination_port, protocol", rateOf("podflow_packets_total", "$__range", pair...))),
			instantQ("C", sumBy("destination_port, protocol", rateOf("podflow_connections_total", "$__range", pair...))),
		), nil,
		map[string]string{"destination_port": "Port", "protocol": "Protocol", "Value #A": "Bytes/s", "Value #B": "Packets/s", "Value #C": "Connections/s"}).
		OverrideByName("Value #B", props(prop("unit", "pps"))).
		OverrideByName("Value #C", props(prop("unit", "cps"))).
		Span(12).Height(8))
	d.WithPanel(timeSeriesPanel("Packets", "Packets per second of the pair by direction.", "pps", false,
		rangeQ("A", sumBy("direction", pairRate("packets", pair...)), "{{direction}}")).Span(12).Height(8))

	d.WithPanel(timelinePanel("Alert history", "podflow alerts that named this pair: pending and firing.", "short",
		valueMap("1", "active", "red"),
		rangeQ("A", fmt.Sprintf("max by (alertname, alertstate) (%s)", alerts()), "{{alertname}} ({{alertstate}})")).Span(24).Height(7))
	d.WithPanel(tablePanel("Alerts now", "podflow alerts naming this pair, with a link to each runbook.", "short",
		targets(instantQ("A", alerts())), []string{"Value", "job", "instance"},
		map[string]string{"alertname": "Alert", "alertstate": "State", "severity": "Severity", "category": "Category"}).
		OverrideByName("alertname", runbookLink("Runbook")).
		Span(24).Height(6))
	return d
}

// baselinePanel draws the pair's traffic against the band the
// PodflowTrafficAnomaly alert uses (hourly recording rules, read with
// last_over_time as every reader of an hourly series must).
func baselinePanel(pair []string) *timeseries.PanelBuilder {
	hourly := func(rule string) string {
		return fmt.Sprintf("sum(last_over_time(%s[2h]))", metric(rule, append([]string{cluster}, pair...)...))
	}
	return timeSeriesPanel("Traffic against baseline",
		"The pair's bytes per second (both directions, over 5m: what PodflowTrafficAnomaly compares), its mean over the last hour, "+
			"the upper band of its 35-day baseline (the larger of 2 x the 0.99 quantile of its hourly peak 5m rates and 1.5 x its usual peak at this time of the week, at least 1 KiB/s) "+
			"and the seasonal prediction. The band appears after the first hourly rule evaluation; the alert waits for 72 active hours of the pair and fires when the rate stays above the band for 5m.",
		"Bps", false,
		rangeQ("A", fmt.Sprintf("sum(%s)", pairRate("bytes", pair...)), "traffic"),
		rangeQ("B", fmt.Sprintf("sum(sum_over_time(%s[1h])) / 60", pairRate("bytes", pair...)), "mean over 1h"),
		rangeQ("C", hourly("workload_pair:podflow_bytes:upper_band_rate1h"), "baseline upper band"),
		rangeQ("D", hourly("workload_pair:podflow_bytes:seasonal_rate1h"), "seasonal prediction"),
	).
		OverrideByName("baseline upper band", props(prop("custom.fillOpacity", 15), lineStyle(common.LineStyleFillDash, 10, 10), fixedColor("green"))).
		OverrideByName("seasonal prediction", props(prop("custom.fillOpacity", 0), lineStyle(common.LineStyleFillDot, 0, 10), fixedColor("purple"))).
		OverrideByName("mean over 1h", props(prop("custom.fillOpacity", 0), fixedColor("orange"))).
		OverrideByName("traffic", props(prop("custom.fillOpacity", 0), prop("custom.lineWidth", 2), fixedColor("blue")))
}
