package main

import "fmt"

func overviewDashboard() *dashboard {
	d := newDashboard("podflow-overview", "podflow / Overview",
		"East-west and north-south traffic of the cluster: endpoints, in and out traffic per workload and node, top talkers, outside networks and firing podflow alerts.")
	d.vars = []M{
		datasourceVar(),
		clusterVar(),
		queryVar("namespace", "Namespace", `label_values(workload_pair:podflow_bytes:rate5m{cluster=~"$cluster"}, source_namespace)`, true, true),
	}
	d.vars[2]["description"] = "Restricts the per-workload panels to workloads of these namespaces (either side of a pair)."

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
	d.add(stat("Nodes reporting", "podflow exporters exposing metrics (one per node).", "short",
		rangeQ("A", `count(podflow_build_info{cluster=~"$cluster"})`, "")), 4, 4)
	d.add(stat("Endpoints", "Distinct workloads, nodes and outside networks seen on either side of a pair over the last 5 minutes.", "short",
		rangeQ("A", fmt.Sprintf(`count(group by (namespace, workload) (%s or %s))`,
			sideAs(bytes("5m"), "source"), sideAs(bytes("5m"), "destination")), "")), 4, 4)
	d.add(stat("Traffic", "Bytes per second of all pairs, both directions. Each connection is counted by exactly one node.", "Bps",
		rangeQ("A", fmt.Sprintf("sum(%s)", bytes("$__rate_interval")), "")), 4, 4)
	d.add(stat("Connections", "Connections opened per second across the cluster.", "cps",
		rangeQ("A", fmt.Sprintf("sum(%s)", conns("$__rate_interval")), "")), 4, 4)
	d.add(stat("To outside networks", "Bytes per second between workloads and networks outside the cluster (destination kind Network).", "Bps",
		rangeQ("A", fmt.Sprintf("sum(%s) or vector(0)", bytes("$__rate_interval", eq(dstKind, "Network"))), "")), 4, 4)
	d.add(stat("Firing podflow alerts", "Alerts of the podflow rules firing now. See the Alerts dashboard.", "short",
		rangeQ("A", fmt.Sprintf("count(%s) or vector(0)", firingAlerts()), ""), 1, "orange", 5, "red"), 4, 4)

	d.row("Endpoints")
	d.add(timeseries("Endpoints per node",
		"Distinct workloads each node currently has flow series for, as a source or destination (the node label where the scrape configuration sets it, else the instance). A connection is reported by the node of its initiator, so this is where the talking endpoints live.",
		"short", false,
		rangeQ("A", fmt.Sprintf(`count by (node, instance) (group by (node, instance, namespace, workload) (%s or %s))`,
			sideAs(metric("podflow_bytes_total", cluster), "source"), sideAs(metric("podflow_bytes_total", cluster), "destination")), "{{node}} {{instance}}")), 12, 8)
	d.add(timeseries("Endpoints per namespace",
		"Distinct workloads per namespace that sent or received traffic in the last 5 minutes (nodes and outside networks have no namespace and are left out).",
		"short", false,
		rangeQ("A", fmt.Sprintf(`count by (namespace) (group by (namespace, workload) (%s or %s))`,
			sideAs(bytes("5m", `source_namespace!=""`), "source"), sideAs(bytes("5m", `destination_namespace!=""`), "destination")), "{{namespace}}")), 12, 8)

	d.row("Traffic per workload and node")
	nsSrc := re(srcNS, "$namespace")
	nsDst := re(dstNS, "$namespace")
	out := fmt.Sprintf("topk(10, %s)", workloadTraffic(true))
	in := fmt.Sprintf("topk(10, %s)", workloadTraffic(false))
	d.add(timeseries("Out: bytes sent per workload (top 10)",
		"Bytes per second a workload sends: the original direction of connections it opens plus the reply direction of connections it accepts.",
		"Bps", false, rangeQ("A", out, "{{namespace}}/{{workload}}")), 12, 9)
	d.add(timeseries("In: bytes received per workload (top 10)",
		"Bytes per second a workload receives: the reply direction of connections it opens plus the original direction of connections it accepts.",
		"Bps", false, rangeQ("A", in, "{{namespace}}/{{workload}}")), 12, 9)
	d.add(timeseries("Traffic reported per node",
		"Bytes per second each node's exporter counted, by direction (original: initiator to responder; reply: the way back).",
		"Bps", true, rangeQ("A", sumBy("node, instance, direction", raw("$__rate_interval")), "{{node}} {{instance}} {{direction}}")), 12, 8)
	d.add(timeseries("Node traffic in and out",
		"Bytes per second sent and received by the nodes themselves (kind Node: the node and its hostNetwork pods). Out is negative.",
		"Bps", false,
		rangeQ("A", sumBy("workload", sideAs(bytes("$__rate_interval", eq(srcKind, "Node"), `direction="original"`), "source")+" or "+
			sideAs(bytes("$__rate_interval", eq(dstKind, "Node"), `direction="reply"`), "destination"))+" * -1", "{{workload}} out"),
		rangeQ("B", sumBy("workload", sideAs(bytes("$__rate_interval", eq(dstKind, "Node"), `direction="original"`), "destination")+" or "+
			sideAs(bytes("$__rate_interval", eq(srcKind, "Node"), `direction="reply"`), "source")), "{{workload}} in")), 12, 8)

	d.row("Top talkers")
	d.add(table("Top talkers",
		"The 20 busiest workload pairs over the selected time range (bytes per second, both directions, all ports), with their connection rate.",
		"Bps",
		[]M{
			instantQ("A", fmt.Sprintf("topk(20, %s)", sumBy(pairLabels, bytes("$__range", nsSrc)+" or "+bytes("$__range", nsDst)))),
			instantQ("B", fmt.Sprintf("%s and topk(20, %s)",
				sumBy(pairLabels, conns("$__range", nsSrc)+" or "+conns("$__range", nsDst)),
				sumBy(pairLabels, bytes("$__range", nsSrc)+" or "+bytes("$__range", nsDst)))),
		}, nil,
		M{srcNS: "Source namespace", srcWL: "Source workload", srcKind: "Source kind",
			dstNS: "Destination namespace", dstWL: "Destination workload", dstKind: "Destination kind",
			"Value #A": "Bytes/s", "Value #B": "Connections/s"},
		[]M{byName("Value #B", prop("unit", "cps")), byName("Value #A", prop("custom.cellOptions", M{"type": "gauge", "mode": "basic"}))}), 24, 10)

	d.row("Outside the cluster")
	d.add(timeseries("Traffic to outside networks",
		"Bytes per second to networks outside the cluster, by network name (private, internet, or a name from the networks file such as denylist-tor).",
		"Bps", true,
		rangeQ("A", sumBy(dstWL, bytes("$__rate_interval", eq(dstKind, "Network"))), "{{destination_workload}}")), 12, 8)
	d.add(table("Workloads reaching outside networks",
		"Which workloads talk to which outside network, over the selected time range.",
		"Bps",
		[]M{instantQ("A", fmt.Sprintf("topk(20, %s)", sumBy(srcNS+", "+srcWL+", "+dstWL, bytes("$__range", eq(dstKind, "Network"), nsSrc))))},
		nil, M{srcNS: "Source namespace", srcWL: "Source workload", dstWL: "Network", "Value": "Bytes/s"}, nil), 12, 8)
	d.add(timeseries("Traffic from outside networks",
		"Bytes per second of connections opened from outside the cluster (source kind Network), by network.",
		"Bps", true,
		rangeQ("A", sumBy(srcWL, bytes("$__rate_interval", eq(srcKind, "Network"))), "{{source_workload}}")), 24, 7)

	d.row("Alerts")
	d.add(table("Firing podflow alerts",
		"Alerts of the podflow rules firing now; open the Alerts dashboard for history and runbooks.",
		"short",
		[]M{instantQ("A", firingAlerts())},
		[]string{"alertstate", "Value"},
		M{"alertname": "Alert", "severity": "Severity", "category": "Category"},
		[]M{byName("alertname", prop("links", []M{link("Runbook", "${runbook_base}/${__value.raw}.md")}))}), 24, 8)
	d.vars = append(d.vars, runbookVar())
	return d
}

func runbookVar() M {
	return textVar("runbook_base", "Runbooks",
		"https://github.com/podflow/podflow/blob/main/rules/runbooks",
		"Where the runbooks (rules/runbooks/<alertname>.md) are published; alert names link there.")
}
