package main

import (
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/nodegraph"
)

// calc copies the value column of one query into a field with a real name
// (the node graph matches field names, and Organize/Rename only change
// display names). The SDK leaves transformation options untyped.
func calc(ref, alias string) dashboard.DataTransformerConfig {
	return dashboard.DataTransformerConfig{
		Id:     "calculateField",
		Filter: byRefID(ref),
		Options: map[string]any{
			"mode":          "reduceRow",
			"reduce":        map[string]any{"reducer": "lastNotNull", "include": []string{"Value #" + ref}},
			"alias":         alias,
			"replaceFields": false,
			"timeSeries":    false,
		},
	}
}

func byRefID(ref string) *dashboard.MatcherConfig {
	return &dashboard.MatcherConfig{Id: "byRefId", Options: ref}
}

func joinBy(refs, field string) dashboard.DataTransformerConfig {
	return dashboard.DataTransformerConfig{Id: "joinByField", Filter: byRefID(refs),
		Options: map[string]any{"byField": field, "mode": "outer"}}
}

func exclude(fields ...string) dashboard.DataTransformerConfig {
	ex := map[string]bool{}
	for _, f := range fields {
		ex[f] = true
	}
	return dashboard.DataTransformerConfig{Id: "organize", Options: map[string]any{"excludeByName": ex}}
}

// layeredNodeGraph adds the node graph's layoutAlgorithm option, which the
// SDK's nodegraph.Options (v0.0.22: nodes, edges, zoomMode) does not have.
type layeredNodeGraph struct{ *nodegraph.PanelBuilder }

func (b layeredNodeGraph) Build() (dashboard.Panel, error) {
	p, err := b.PanelBuilder.Build()
	if err != nil {
		return p, err
	}
	opts, _ := p.Options.(*nodegraph.Options)
	p.Options = struct {
		*nodegraph.Options
		LayoutAlgorithm string `json:"layoutAlgorithm"`
	}{opts, "layered"}
	return p, nil
}

func topologyDashboard() *dashboard.DashboardBuilder {
	kinds := []string{"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicaSet", "Pod", "Node", "Service", "Network", "Unknown"}
	d := newDashboard("podflow-topology", "podflow / Topology",
		"Live map of who talks to whom: workloads as nodes, workload pairs as edges, over the selected time range.",
		"now-1h").
		WithVariable(queryVar("namespace", "Namespace", `label_values(workload_pair:podflow_bytes:rate5m{cluster=~"$cluster"}, source_namespace)`, true, true).
			Description("Keeps pairs with either side in the namespace.")).
		WithVariable(queryVar("workload", "Workload", `label_values(workload_pair:podflow_bytes:rate5m{cluster=~"$cluster", source_namespace=~"$namespace"}, source_workload)`, true, true).
			Description("Keeps pairs with either side being the workload.")).
		WithVariable(customVar("kind", "Kind", kinds, "All", true)).
		WithVariable(customVar("topn", "Top edges", []string{"25", "50", "100", "200", "500"}, "100", false).
			Description("The graph shows only the N busiest pairs of the time range, so it stays readable."))

	graph := panel(nodegraph.NewPanelBuilder(), "Workload topology (top $topn pairs)",
		"Nodes are workloads (title: workload, subtitle: namespace, or the kind for nodes and outside networks), "+
			"sized by the bytes per second of their edges; a red ring marks a workload named by a firing security alert. "+
			"Edges are workload pairs from source to destination: bytes per second both ways, then connections per second; "+
			"red edges have a firing security alert. Filter with namespace, workload and kind; Top edges bounds the graph.",
		"Bps", dashboard.FieldColorModeIdPaletteClassic, nil,
		targets(
			instantQ("nodes", topoNodes()),
			instantQ("node_alerts", topoNodeAlerts()),
			instantQ("edges", topoEdges()),
			instantQ("edge_connections", topoEdgeConnections()),
		)).
		Transformations([]dashboard.DataTransformerConfig{
			calc("nodes", "mainstat"),
			calc("node_alerts", "arc__alerting"),
			{
				Id:     "calculateField",
				Filter: byRefID("node_alerts"),
				Options: map[string]any{
					"mode":  "binary",
					"alias": "arc__ok",
					"binary": map[string]any{
						"left":     map[string]any{"fixed": "1"},
						"operator": "-",
						"right":    map[string]any{"matcher": map[string]any{"id": "byName", "options": "Value #node_alerts"}},
					},
					"replaceFields": false,
					"timeSeries":    false,
				},
			},
			calc("edges", "mainstat"),
			calc("edge_connections", "secondarystat"),
			exclude("Time", "Value", "Value #nodes", "Value #node_alerts", "Value #edges", "Value #edge_connections"),
			joinBy("/^(nodes|node_alerts)$/", "node"),
			joinBy("/^(edges|edge_connections)$/", "edge"),
			exclude("Time", "node", "edge"),
		}).
		OverrideByName("secondarystat", props(prop("unit", "cps"))).
		OverrideByName("arc__alerting", props(fixedColor("red"), prop("displayName", "alerting"))).
		OverrideByName("arc__ok", props(fixedColor("green"), prop("displayName", "ok"))).
		Nodes(nodegraph.NewNodeOptionsBuilder().
			MainStatUnit("Bps").
			Arcs([]cog.Builder[nodegraph.ArcOption]{
				nodegraph.NewArcOptionBuilder().Field("arc__alerting").Color("red"),
				nodegraph.NewArcOptionBuilder().Field("arc__ok").Color("green"),
			})).
		Edges(nodegraph.NewEdgeOptionsBuilder().MainStatUnit("Bps").SecondaryStatUnit("cps")).
		ZoomMode(nodegraph.ZoomModeCooperative).
		Span(24).Height(22)
	d.WithPanel(layeredNodeGraph{graph})

	d.WithRow(dashboard.NewRowBuilder("Pairs in the graph"))
	d.WithPanel(tablePanel("Top pairs", "The pairs drawn as edges, busiest first.", "Bps",
		targets(instantQ("A", topoTop())), nil,
		map[string]string{srcNS: "Source namespace", srcWL: "Source workload", srcKind: "Source kind",
			dstNS: "Destination namespace", dstWL: "Destination workload", dstKind: "Destination kind", "Value": "Bytes/s"}).
		Span(24).Height(10))
	return d
}
