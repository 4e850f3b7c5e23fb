package main

import "fmt"

func pairDashboard() *dashboard {
	d := newDashboard("podflow-pair-explorer", "podflow / Pair explorer",
		"One workload pair in depth: traffic against its baseline, ports, connections and alert history.")
	d.timeFrom = "now-24h"
	srcSel := `cluster=~"$cluster"`
	d.vars = []M{
		datasourceVar(),
		clusterVar(),
		queryVar("src_namespace", "Source namespace", `label_values(workload_pair:podflow_bytes:rate5m{`+srcSel+`}, source_namespace)`, true, false),
		queryVar("src_workload", "Source workload", `label_values(workload_pair:podflow_bytes:rate5m{cluster=~"$cluster", source_namespace=~"$src_namespace"}, source_workload)`, false, false),
		queryVar("dst_namespace", "Destination namespace", `label_values(workload_pair:podflow_bytes:rate5m{cluster=~"$cluster", source_namespace=~"$src_namespace", source_workload=~"$src_workload"}, destination_namespace)`, true, false),
		queryVar("dst_workload", "Destination workload", `label_values(workload_pair:podflow_bytes:rate5m{cluster=~"$cluster", source_namespace=~"$src_namespace", source_workload=~"$src_workload", destination_namespace=~"$dst_namespace"}, destination_workload)`, false, false),
	}
	d.vars[2]["description"] = "All also selects endpoints without a namespace (nodes, outside networks)."
	d.vars[4]["description"] = "All also selects endpoints without a namespace (nodes, outside networks)."

	pair := []string{re(srcNS, "$src_namespace"), re(srcWL, "$src_workload"), re(dstNS, "$dst_namespace"), re(dstWL, "$dst_workload")}
	bytes := func(window string, m ...string) string {
		return rateOf("podflow_bytes_total", window, append(append([]string{}, pair...), m...)...)
	}
	alerts := func(m ...string) string {
		return metric("ALERTS", append([]string{`alertname=~"Podflow.*"`, cluster,
			`source_namespace=~"$src_namespace"`, `source_workload=~"$src_workload"`,
			`destination_namespace=~"$dst_namespace"`, `destination_workload=~"$dst_workload"`}, m...)...)
	}

	d.add(stat("Traffic", "Bytes per second of the pair over the selected range, both directions.", "Bps",
		instantQ("A", fmt.Sprintf("sum(%s)", pairAvg("bytes", pair...)))), 5, 4)
	d.add(stat("Connections", "Connections per second the source opened to the destination over the selected range.", "cps",
		instantQ("A", fmt.Sprintf("sum(%s)", pairAvg("connections", pair...)))), 5, 4)
	d.add(stat("Ports", "Distinct destination ports and protocols of the pair over the selected range.", "short",
		instantQ("A", fmt.Sprintf("count(%s)", sumBy("destination_port, protocol", bytes("$__range"))))), 4, 4)
	d.add(stat("Baseline history", "Hours the pair was active within the 35-day baseline window. Volume anomalies are judged only from 72 hours on.", "h",
		instantQ("A", fmt.Sprintf("max(last_over_time(%s[2h])) or vector(0)", metric("workload_pair:podflow_packets:hours_baseline", append([]string{cluster}, pair...)...))), 24, "green"), 5, 4)
	d.add(stat("Firing alerts", "podflow alerts naming this pair that fire now.", "short",
		instantQ("A", fmt.Sprintf(`count(%s) or vector(0)`, alerts(`alertstate="firing"`))), 1, "red"), 5, 4)

	d.add(baselinePanel(pair), 24, 10)

	d.add(timeseries("Traffic by direction",
		"Original: source to destination; reply: the way back.",
		"Bps", false, rangeQ("A", sumBy("direction", pairRate("bytes", pair...)), "{{direction}}")), 12, 8)
	d.add(timeseries("Connection rate", "Connections per second the source opened to the destination, by port.",
		"cps", false, rangeQ("A", sumBy("destination_port, protocol", rateOf("podflow_connections_total", "$__rate_interval", pair...)), "{{protocol}}/{{destination_port}}")), 12, 8)
	d.add(table("Ports used", "Destination ports and protocols of the pair over the selected range.", "Bps",
		[]M{
			instantQ("A", sumBy("destination_port, protocol", bytes("$__range"))),
			instantQ("B", sumBy("destination_port, protocol", rateOf("podflow_packets_total", "$__range", pair...))),
			instantQ("C", sumBy("destination_port, protocol", rateOf("podflow_connections_total", "$__range", pair...))),
		}, nil,
		M{"destination_port": "Port", "protocol": "Protocol", "Value #A": "Bytes/s", "Value #B": "Packets/s", "Value #C": "Connections/s"},
		[]M{byName("Value #B", prop("unit", "pps")), byName("Value #C", prop("unit", "cps"))}), 12, 8)
	d.add(timeseries("Packets", "Packets per second of the pair by direction.", "pps", false,
		rangeQ("A", sumBy("direction", pairRate("packets", pair...)), "{{direction}}")), 12, 8)

	d.add(stateTimeline("Alert history", "podflow alerts that named this pair: pending and firing.", "short",
		valueMap("1", "active", "red"),
		rangeQ("A", fmt.Sprintf("max by (alertname, alertstate) (%s)", alerts()), "{{alertname}} ({{alertstate}})")), 24, 7)
	d.vars = append(d.vars, runbookVar())
	d.add(table("Alerts now", "podflow alerts naming this pair, with a link to each runbook.", "short",
		[]M{instantQ("A", alerts())}, []string{"Value", "job", "instance"},
		M{"alertname": "Alert", "alertstate": "State", "severity": "Severity", "category": "Category"},
		[]M{byName("alertname", prop("links", []M{link("Runbook", "${runbook_base}/${__value.raw}.md")}))}), 24, 6)
	return d
}

// baselinePanel draws the pair's traffic against the band the
// PodflowTrafficAnomaly alert uses (hourly recording rules, read with
// last_over_time as every reader of an hourly series must).
func baselinePanel(pair []string) M {
	hourly := func(rule string) string {
		return fmt.Sprintf("sum(last_over_time(%s[2h]))", metric(rule, append([]string{cluster}, pair...)...))
	}
	p := timeseries("Traffic against baseline",
		"The pair's bytes per second (both directions, over 5m: what PodflowTrafficAnomaly compares), its mean over the last hour, "+
			"the upper band of its 35-day baseline (the larger of 2 x the 0.99 quantile of its hourly peak 5m rates and 1.5 x its usual peak at this time of the week, at least 1 KiB/s) "+
			"and the seasonal prediction. The band appears after the first hourly rule evaluation; the alert waits for 72 active hours of the pair and fires when the rate stays above the band for 5m.",
		"Bps", false,
		rangeQ("A", fmt.Sprintf("sum(%s)", pairRate("bytes", pair...)), "traffic"),
		rangeQ("B", fmt.Sprintf("sum(sum_over_time(%s[1h])) / 60", pairRate("bytes", pair...)), "mean over 1h"),
		rangeQ("C", hourly("workload_pair:podflow_bytes:upper_band_rate1h"), "baseline upper band"),
		rangeQ("D", hourly("workload_pair:podflow_bytes:seasonal_rate1h"), "seasonal prediction"),
	)
	fc := p["fieldConfig"].(M)
	fc["overrides"] = []M{
		byName("baseline upper band", prop("custom.fillOpacity", 15), prop("custom.lineStyle", M{"fill": "dash", "dash": []int{10, 10}}),
			prop("color", M{"mode": "fixed", "fixedColor": "green"})),
		byName("seasonal prediction", prop("custom.fillOpacity", 0), prop("custom.lineStyle", M{"fill": "dot", "dash": []int{0, 10}}),
			prop("color", M{"mode": "fixed", "fixedColor": "purple"})),
		byName("mean over 1h", prop("custom.fillOpacity", 0), prop("color", M{"mode": "fixed", "fixedColor": "orange"})),
		byName("traffic", prop("custom.fillOpacity", 0), prop("custom.lineWidth", 2), prop("color", M{"mode": "fixed", "fixedColor": "blue"})),
	}
	return p
}
