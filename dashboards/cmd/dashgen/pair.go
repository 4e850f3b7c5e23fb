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
		queryVar("src_namespace", "Source namespace", `label_values(podflow_bytes_total{`+srcSel+`}, source_namespace)`, true, false),
		queryVar("src_workload", "Source workload", `label_values(podflow_bytes_total{cluster=~"$cluster", source_namespace=~"$src_namespace"}, source_workload)`, false, false),
		queryVar("dst_namespace", "Destination namespace", `label_values(podflow_bytes_total{cluster=~"$cluster", source_namespace=~"$src_namespace", source_workload=~"$src_workload"}, destination_namespace)`, true, false),
		queryVar("dst_workload", "Destination workload", `label_values(podflow_bytes_total{cluster=~"$cluster", source_namespace=~"$src_namespace", source_workload=~"$src_workload", destination_namespace=~"$dst_namespace"}, destination_workload)`, false, false),
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
		instantQ("A", fmt.Sprintf("sum(%s)", bytes("$__range")))), 6, 4)
	d.add(stat("Connections", "Connections per second the source opened to the destination over the selected range.", "cps",
		instantQ("A", fmt.Sprintf("sum(%s)", rateOf("podflow_connections_total", "$__range", pair...)))), 6, 4)
	d.add(stat("Ports", "Distinct destination ports and protocols of the pair over the selected range.", "short",
		instantQ("A", fmt.Sprintf("count(%s)", sumBy("destination_port, protocol", bytes("$__range"))))), 6, 4)
	d.add(stat("Firing alerts", "podflow alerts naming this pair that fire now.", "short",
		instantQ("A", fmt.Sprintf(`count(%s) or vector(0)`, alerts(`alertstate="firing"`))), 1, "red"), 6, 4)

	d.add(baselinePanel(pair), 24, 10)

	d.add(timeseries("Traffic by direction",
		"Original: source to destination; reply: the way back.",
		"Bps", false, rangeQ("A", sumBy("direction", bytes("$__rate_interval")), "{{direction}}")), 12, 8)
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
		rangeQ("A", sumBy("direction", rateOf("podflow_packets_total", "$__rate_interval", pair...)), "{{direction}}")), 12, 8)

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

// baselinePanel draws the pair's traffic against the band of the same
// hours one to three weeks ago.
func baselinePanel(pair []string) M {
	cur := fmt.Sprintf("sum(%s)", rateOf("podflow_bytes_total", "$__rate_interval", pair...))
	weeks := func(agg string) string {
		w := fmt.Sprintf("sum(rate(%s[1h] offset 1w))", metric("podflow_bytes_total", append([]string{cluster}, pair...)...))
		w2 := fmt.Sprintf("sum(rate(%s[1h] offset 2w))", metric("podflow_bytes_total", append([]string{cluster}, pair...)...))
		w3 := fmt.Sprintf("sum(rate(%s[1h] offset 3w))", metric("podflow_bytes_total", append([]string{cluster}, pair...)...))
		return fmt.Sprintf(`%s(label_replace(%s, "week", "1", "", "") or label_replace(%s, "week", "2", "", "") or label_replace(%s, "week", "3", "", ""))`, agg, w, w2, w3)
	}
	p := timeseries("Traffic against baseline",
		"The pair's bytes per second (both directions) against a band spanning the hourly rates of the same time one, two and three weeks ago. Empty band: less than a week of history.",
		"Bps", false,
		rangeQ("A", cur, "traffic"),
		rangeQ("B", weeks("max"), "baseline upper"),
		rangeQ("C", weeks("min"), "baseline lower"),
	)
	fc := p["fieldConfig"].(M)
	fc["overrides"] = []M{
		byName("baseline upper", prop("custom.fillBelowTo", "baseline lower"), prop("custom.lineWidth", 0), prop("custom.fillOpacity", 20),
			prop("color", M{"mode": "fixed", "fixedColor": "green"})),
		byName("baseline lower", prop("custom.lineWidth", 0), prop("color", M{"mode": "fixed", "fixedColor": "green"})),
		byName("traffic", prop("color", M{"mode": "fixed", "fixedColor": "blue"}), prop("custom.lineWidth", 2), prop("custom.fillOpacity", 0)),
	}
	return p
}
