package main

import (
	"fmt"
	"strings"
)

// The PromQL the dashboards share. Every expression is plain PromQL with
// Grafana's $__range, $__rate_interval and template variables only, so that
// each target's expr can be run against Prometheus as it stands.

const (
	srcNS, srcWL, srcKind = "source_namespace", "source_workload", "source_kind"
	dstNS, dstWL, dstKind = "destination_namespace", "destination_workload", "destination_kind"
)

// pairLabels identify a workload pair (ports, protocol and direction summed).
var pairLabels = strings.Join([]string{srcNS, srcWL, srcKind, dstNS, dstWL, dstKind}, ", ")

// pairKey joins a pair to an alert: alerts carry namespace and workload of
// both sides, not the kinds.
var pairKey = strings.Join([]string{srcNS, srcWL, dstNS, dstWL}, ", ")

// rateOf is the per-second rate of a podflow flow counter over window, with
// all its labels.
func rateOf(counter, window string, matchers ...string) string {
	return fmt.Sprintf("rate(%s[%s])", metric(counter, append([]string{cluster}, matchers...)...), window)
}

// pairRate selects the 1m-tier recording rule of a flow counter
// (workload_pair:podflow_<m>:rate5m: bytes and packets by direction,
// connections), the cheap source for every panel that needs no node or
// port: pods are aggregated away and each series is one workload pair.
func pairRate(m string, matchers ...string) string {
	return metric("workload_pair:podflow_"+m+":rate5m", append([]string{cluster}, matchers...)...)
}

// pairAvg is the pair's mean rate over the dashboard's time range.
func pairAvg(m string, matchers ...string) string {
	return fmt.Sprintf("avg_over_time(%s[$__range])", pairRate(m, matchers...))
}

func sumBy(by, expr string) string { return fmt.Sprintf("sum by (%s) (%s)", by, expr) }

// firingAlerts selects the firing podflow alerts.
func firingAlerts(matchers ...string) string {
	return metric("ALERTS", append([]string{`alertname=~"Podflow.*"`, `alertstate="firing"`, cluster}, matchers...)...)
}

// securityAlerts selects the firing behavioural (security) alerts.
func securityAlerts() string { return firingAlerts(`category="security"`) }

// sideAs copies the namespace and workload of one side of a pair to the
// labels namespace and workload, so that in and out traffic of a workload
// can be summed over both sides.
func sideAs(expr, side string) string {
	return fmt.Sprintf(`label_replace(label_replace(%s, "namespace", "$1", "%s_namespace", "(.*)"), "workload", "$1", "%s_workload", "(.*)")`, expr, side, side)
}

// workloadTraffic is the traffic a workload of $namespace sends (out) or
// receives (in), counting both directions of its connections: a workload
// sends the original direction of connections it opens and the reply
// direction of connections it accepts.
func workloadTraffic(out bool) string {
	origSide, replySide := "source", "destination"
	if !out {
		origSide, replySide = "destination", "source"
	}
	orig := pairRate("bytes", `direction="original"`, re(origSide+"_namespace", "$namespace"))
	reply := pairRate("bytes", `direction="reply"`, re(replySide+"_namespace", "$namespace"))
	return sumBy("namespace, workload", sideAs(orig, origSide)+" or "+sideAs(reply, replySide))
}

// ---- topology -----------------------------------------------------------

// topoPairs keeps pairs with either side matching the namespace, workload
// and kind variables.
func topoPairs(m string) string {
	src := sumBy(pairLabels, pairAvg(m, re(srcNS, "$namespace"), re(srcWL, "$workload"), re(srcKind, "$kind")))
	dst := sumBy(pairLabels, pairAvg(m, re(dstNS, "$namespace"), re(dstWL, "$workload"), re(dstKind, "$kind")))
	return "(" + src + " or " + dst + ")"
}

// topoTop is the top-N pairs by bytes per second over the time range: the
// edges of the graph, from which the nodes derive.
func topoTop() string { return "topk($topn, " + topoPairs("bytes") + ")" }

// endpointSide labels each pair with the node fields of one side: id
// (namespace/workload), title (workload), subtitle (namespace, or the kind
// for Node and Network endpoints that have no namespace), detail__kind.
func endpointSide(expr, side string) string {
	e := fmt.Sprintf(`label_join(%s, "id", "/", "%s_namespace", "%s_workload")`, expr, side, side)
	e = fmt.Sprintf(`label_replace(%s, "title", "$1", "%s_workload", "(.*)")`, e, side)
	e = fmt.Sprintf(`label_replace(%s, "subtitle", "$1", "%s_kind", "(.*)")`, e, side)
	e = fmt.Sprintf(`label_replace(%s, "subtitle", "$1", "%s_namespace", "(.+)")`, e, side)
	e = fmt.Sprintf(`label_replace(%s, "detail__kind", "$1", "%s_kind", "(.*)")`, e, side)
	return e
}

func endpoints(expr string) string {
	return "(" + endpointSide(expr, "source") + " or " + endpointSide(expr, "destination") + ")"
}

// topoNodes: one row per workload of the top-N pairs, valued with the
// bytes per second of its edges; node repeats id as the join key for the
// alert state.
func topoNodes() string {
	return sumBy("id, node, title, subtitle, detail__kind",
		fmt.Sprintf(`label_join(%s, "node", "", "id")`, endpoints(topoTop())))
}

// topoNodeAlerts: 1 for a node that is a side of a firing security alert,
// else 0, keyed by node.
func topoNodeAlerts() string {
	nodes := fmt.Sprintf(`group by (node) (label_join(%s, "node", "", "id"))`, endpoints(topoTop()))
	a := securityAlerts()
	alerted := fmt.Sprintf(`(label_join(%s, "node", "/", "source_namespace", "source_workload") or label_join(%s, "node", "/", "destination_namespace", "destination_workload"))`, a, a)
	return fmt.Sprintf("%s and on (node) %s or %s * 0", nodes, alerted, nodes)
}

// edgeFields adds source, target, id and the join key edge to pairs.
func edgeFields(expr string) string {
	e := fmt.Sprintf(`label_join(%s, "source", "/", "source_namespace", "source_workload")`, expr)
	e = fmt.Sprintf(`label_join(%s, "target", "/", "destination_namespace", "destination_workload")`, e)
	e = fmt.Sprintf(`label_join(%s, "id", " -> ", "source", "target")`, e)
	return fmt.Sprintf(`label_join(%s, "edge", "", "id")`, e)
}

// topoEdges: the top-N pairs as edges valued in bytes per second, red when a
// firing security alert names the pair.
func topoEdges() string {
	t := topoTop()
	a := securityAlerts()
	red := fmt.Sprintf(`label_replace(%s and on (%s) %s, "color", "red", "", "")`, t, pairKey, a)
	grey := fmt.Sprintf(`label_replace(%s unless on (%s) %s, "color", "#8e8e8e", "", "")`, t, pairKey, a)
	return sumBy("id, edge, source, target, color", edgeFields("("+red+" or "+grey+")"))
}

// topoEdgeConnections: connections per second of the same top-N pairs, keyed
// by edge.
func topoEdgeConnections() string {
	c := topoPairs("connections") + " and " + topoTop()
	return sumBy("edge", edgeFields("("+c+")"))
}

// sel renders a selector body from matchers, skipping empty ones.
func sel(matchers ...string) string {
	out := []string{}
	for _, m := range matchers {
		if m != "" {
			out = append(out, m)
		}
	}
	return "{" + strings.Join(out, ", ") + "}"
}

func metric(name string, matchers ...string) string { return name + sel(matchers...) }

var cluster = `cluster=~"$cluster"`

func re(label, v string) string { return label + `=~"` + v + `"` }
func eq(label, v string) string { return label + `="` + v + `"` }
