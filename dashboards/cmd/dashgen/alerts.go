package main

import (
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

func alertsDashboard() *dashboard.DashboardBuilder {
	d := newDashboard("podflow-alerts", "podflow / Alerts and observations",
		"podflow alerts over time by category and severity, the pairs they name, and links to their runbooks.",
		"now-7d").
		WithVariable(customVar("category", "Category", []string{"security", "health"}, "All", true)).
		WithVariable(customVar("severity", "Severity", []string{"critical", "warning", "info"}, "All", true)).
		WithVariable(runbookVar())
	sel := func(m ...string) string {
		return metric("ALERTS", append([]string{`alertname=~"Podflow.*"`, cluster, `category=~"$category"`, `severity=~"$severity"`}, m...)...)
	}
	firing := sel(`alertstate="firing"`)
	pairCols := map[string]string{"alertname": "Alert", "severity": "Severity", "category": "Category",
		srcNS: "Source namespace", srcWL: "Source workload", dstNS: "Destination namespace", dstWL: "Destination workload"}

	for _, s := range []struct{ sev, color string }{{"critical", "red"}, {"warning", "orange"}, {"info", "blue"}} {
		d.WithPanel(statPanel("Firing "+s.sev, fmt.Sprintf("podflow alerts of severity %s firing now.", s.sev), "short",
			rangeQ("A", fmt.Sprintf(`count(%s) or vector(0)`, metric("ALERTS", `alertname=~"Podflow.*"`, `alertstate="firing"`, cluster, `category=~"$category"`, eq("severity", s.sev))), ""),
			above(1, s.color)).Span(4).Height(4))
	}
	d.WithPanel(statPanel("Pending", "Alerts whose condition holds but whose for duration has not elapsed yet: observations that may become alerts.", "short",
		rangeQ("A", fmt.Sprintf(`count(%s) or vector(0)`, sel(`alertstate="pending"`)), ""), above(1, "yellow")).Span(4).Height(4))
	d.WithPanel(statPanel("Pairs named", "Distinct workload pairs named by firing security alerts.", "short",
		rangeQ("A", fmt.Sprintf(`count(group by (%s) (%s)) or vector(0)`, pairKey, sel(`alertstate="firing"`, `category="security"`)), ""), above(1, "orange")).Span(4).Height(4))
	d.WithPanel(statPanel("Baseline learning", "1 while PodflowBaselineLearning fires: the baseline is younger than the learning period and behavioural alerts are held back.", "bool_yes_no",
		rangeQ("A", fmt.Sprintf(`max(%s) or vector(0)`, metric("ALERTS", `alertname="PodflowBaselineLearning"`, `alertstate="firing"`, cluster)), ""), above(1, "blue")).Span(4).Height(4))

	d.WithPanel(timeSeriesPanel("Firing alerts by alert", "Number of firing alert instances per alert name over time.", "short", true,
		rangeQ("A", sumBy("alertname", firing), "{{alertname}}")).Span(12).Height(9))
	d.WithPanel(timeSeriesPanel("Firing alerts by category and severity", "Number of firing alert instances per category (security, health) and severity.", "short", true,
		rangeQ("A", sumBy("category, severity", firing), "{{category}} {{severity}}")).Span(12).Height(9))

	d.WithPanel(timelinePanel("Alert timeline", "Each podflow alert instance while pending (yellow) or firing (red).", "short",
		valueMap("1", "firing", "red", "2", "pending", "yellow"),
		rangeQ("A", fmt.Sprintf(`max by (alertname, source_namespace, source_workload, destination_namespace, destination_workload) (%s) or max by (alertname, source_namespace, source_workload, destination_namespace, destination_workload) (%s) * 2 unless max by (alertname, source_namespace, source_workload, destination_namespace, destination_workload) (%s)`,
			firing, sel(`alertstate="pending"`), firing),
			"{{alertname}} {{source_namespace}}/{{source_workload}} → {{destination_namespace}}/{{destination_workload}}")).Span(24).Height(10))

	d.WithPanel(tablePanel("Firing now", "Every firing podflow alert with its labels; the alert name links to its runbook (rules/runbooks/<alertname>.md).", "short",
		targets(instantQ("A", firing)), []string{"alertstate", "Value"}, pairCols).
		OverrideByName("alertname", runbookLink("Runbook for ${__value.raw}")).
		Span(24).Height(8))

	d.WithPanel(tablePanel("Fired during the range", "Every podflow alert instance that fired at some point in the selected range, with the pair it named.", "short",
		targets(instantQ("A", sumBy("alertname, severity, category, "+pairKey, fmt.Sprintf("max_over_time(%s[$__range])", firing)))),
		[]string{"Value"}, pairCols).
		OverrideByName("alertname", runbookLink("Runbook for ${__value.raw}")).
		Span(24).Height(8))
	return d
}
