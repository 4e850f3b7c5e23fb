package main

import "fmt"

func alertsDashboard() *dashboard {
	d := newDashboard("podflow-alerts", "podflow / Alerts and observations",
		"podflow alerts over time by category and severity, the pairs they name, and links to their runbooks.")
	d.timeFrom = "now-7d"
	d.vars = []M{
		datasourceVar(),
		clusterVar(),
		customVar("category", "Category", []string{"security", "health"}, "All", true),
		customVar("severity", "Severity", []string{"critical", "warning", "info"}, "All", true),
		runbookVar(),
	}
	sel := func(m ...string) string {
		return metric("ALERTS", append([]string{`alertname=~"Podflow.*"`, cluster, `category=~"$category"`, `severity=~"$severity"`}, m...)...)
	}
	firing := sel(`alertstate="firing"`)

	for _, s := range []struct{ sev, color string }{{"critical", "red"}, {"warning", "orange"}, {"info", "blue"}} {
		d.add(stat("Firing "+s.sev, fmt.Sprintf("podflow alerts of severity %s firing now.", s.sev), "short",
			rangeQ("A", fmt.Sprintf(`count(%s) or vector(0)`, metric("ALERTS", `alertname=~"Podflow.*"`, `alertstate="firing"`, cluster, `category=~"$category"`, eq("severity", s.sev))), ""),
			1, s.color), 4, 4)
	}
	d.add(stat("Pending", "Alerts whose condition holds but whose for duration has not elapsed yet: observations that may become alerts.", "short",
		rangeQ("A", fmt.Sprintf(`count(%s) or vector(0)`, sel(`alertstate="pending"`)), ""), 1, "yellow"), 4, 4)
	d.add(stat("Pairs named", "Distinct workload pairs named by firing security alerts.", "short",
		rangeQ("A", fmt.Sprintf(`count(group by (%s) (%s)) or vector(0)`, pairKey, sel(`alertstate="firing"`, `category="security"`)), ""), 1, "orange"), 4, 4)
	d.add(stat("Baseline learning", "1 while PodflowBaselineLearning fires: the baseline is younger than the learning period and behavioural alerts are held back.", "bool_yes_no",
		rangeQ("A", fmt.Sprintf(`max(%s) or vector(0)`, metric("ALERTS", `alertname="PodflowBaselineLearning"`, `alertstate="firing"`, cluster)), ""), 1, "blue"), 4, 4)

	d.add(timeseries("Firing alerts by alert", "Number of firing alert instances per alert name over time.", "short", true,
		rangeQ("A", sumBy("alertname", firing), "{{alertname}}")), 12, 9)
	d.add(timeseries("Firing alerts by category and severity", "Number of firing alert instances per category (security, health) and severity.", "short", true,
		rangeQ("A", sumBy("category, severity", firing), "{{category}} {{severity}}")), 12, 9)

	d.add(stateTimeline("Alert timeline", "Each podflow alert instance while pending (yellow) or firing (red).", "short",
		[]M{{"type": "value", "options": M{
			"1": M{"text": "firing", "color": "red", "index": 0},
			"2": M{"text": "pending", "color": "yellow", "index": 1},
		}}},
		rangeQ("A", fmt.Sprintf(`max by (alertname, source_namespace, source_workload, destination_namespace, destination_workload) (%s) or max by (alertname, source_namespace, source_workload, destination_namespace, destination_workload) (%s) * 2 unless max by (alertname, source_namespace, source_workload, destination_namespace, destination_workload) (%s)`,
			firing, sel(`alertstate="pending"`), firing),
			"{{alertname}} {{source_namespace}}/{{source_workload}} → {{destination_namespace}}/{{destination_workload}}")), 24, 10)

	d.add(table("Firing now", "Every firing podflow alert with its labels; the alert name links to its runbook (rules/runbooks/<alertname>.md).", "short",
		[]M{instantQ("A", firing)}, []string{"alertstate", "Value"},
		M{"alertname": "Alert", "severity": "Severity", "category": "Category",
			srcNS: "Source namespace", srcWL: "Source workload", dstNS: "Destination namespace", dstWL: "Destination workload"},
		[]M{byName("alertname", prop("links", []M{link("Runbook for ${__value.raw}", "${runbook_base}/${__value.raw}.md")}))}), 24, 8)

	d.add(table("Fired during the range", "Every podflow alert instance that fired at some point in the selected range, with the pair it named.", "short",
		[]M{instantQ("A", sumBy("alertname, severity, category, "+pairKey, fmt.Sprintf("max_over_time(%s[$__range])", firing)))},
		[]string{"Value"}, M{"alertname": "Alert", "severity": "Severity", "category": "Category",
			srcNS: "Source namespace", srcWL: "Source workload", dstNS: "Destination namespace", dstWL: "Destination workload"},
		[]M{byName("alertname", prop("links", []M{link("Runbook for ${__value.raw}", "${runbook_base}/${__value.raw}.md")}))}), 24, 8)
	return d
}
