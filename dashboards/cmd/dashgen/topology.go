package main

// calc copies the value column of one query into a field with a real name
// (the node graph matches field names, and Organize/Rename only change
// display names).
func calc(ref, alias string) M {
	return M{
		"id":     "calculateField",
		"filter": M{"id": "byRefId", "options": ref},
		"options": M{
			"mode":          "reduceRow",
			"reduce":        M{"reducer": "lastNotNull", "include": []string{"Value #" + ref}},
			"alias":         alias,
			"replaceFields": false,
			"timeSeries":    false,
		},
	}
}

func topologyDashboard() *dashboard {
	d := newDashboard("podflow-topology", "podflow / Topology",
		"Live map of who talks to whom: workloads as nodes, workload pairs as edges, over the selected time range.")
	d.timeFrom = "now-1h"
	kinds := []string{"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicaSet", "Pod", "Node", "Service", "Network", "Unknown"}
	d.vars = []M{
		datasourceVar(),
		clusterVar(),
		queryVar("namespace", "Namespace", `label_values(workload_pair:podflow_bytes:rate5m{cluster=~"$cluster"}, source_namespace)`, true, true),
		queryVar("workload", "Workload", `label_values(workload_pair:podflow_bytes:rate5m{cluster=~"$cluster", source_namespace=~"$namespace"}, source_workload)`, true, true),
		customVar("kind", "Kind", kinds, "All", true),
		customVar("topn", "Top edges", []string{"25", "50", "100", "200", "500"}, "100", false),
	}
	d.vars[2]["description"] = "Keeps pairs with either side in the namespace."
	d.vars[3]["description"] = "Keeps pairs with either side being the workload."
	d.vars[5]["description"] = "The graph shows only the N busiest pairs of the time range, so it stays readable."

	graph := M{
		"type":  "nodeGraph",
		"title": "Workload topology (top $topn pairs)",
		"description": "Nodes are workloads (title: workload, subtitle: namespace, or the kind for nodes and outside networks), " +
			"sized by the bytes per second of their edges; a red ring marks a workload named by a firing security alert. " +
			"Edges are workload pairs from source to destination: bytes per second both ways, then connections per second; " +
			"red edges have a firing security alert. Filter with namespace, workload and kind; Top edges bounds the graph.",
		"datasource": ds,
		"targets": []M{
			instantQ("nodes", topoNodes()),
			instantQ("node_alerts", topoNodeAlerts()),
			instantQ("edges", topoEdges()),
			instantQ("edge_connections", topoEdgeConnections()),
		},
		"transformations": []M{
			calc("nodes", "mainstat"),
			calc("node_alerts", "arc__alerting"),
			{
				"id":     "calculateField",
				"filter": M{"id": "byRefId", "options": "node_alerts"},
				"options": M{
					"mode":  "binary",
					"alias": "arc__ok",
					"binary": M{
						"left":     M{"fixed": "1"},
						"operator": "-",
						"right":    M{"matcher": M{"id": "byName", "options": "Value #node_alerts"}},
					},
					"replaceFields": false,
					"timeSeries":    false,
				},
			},
			calc("edges", "mainstat"),
			calc("edge_connections", "secondarystat"),
			{"id": "organize", "options": M{"excludeByName": M{
				"Time": true, "Value": true, "Value #nodes": true, "Value #node_alerts": true,
				"Value #edges": true, "Value #edge_connections": true,
			}}},
			{
				"id":      "joinByField",
				"filter":  M{"id": "byRefId", "options": "/^(nodes|node_alerts)$/"},
				"options": M{"byField": "node", "mode": "outer"},
			},
			{
				"id":      "joinByField",
				"filter":  M{"id": "byRefId", "options": "/^(edges|edge_connections)$/"},
				"options": M{"byField": "edge", "mode": "outer"},
			},
			{"id": "organize", "options": M{"excludeByName": M{"Time": true, "node": true, "edge": true}}},
		},
		"fieldConfig": fieldConfig("Bps", nil, []M{
			byName("secondarystat", prop("unit", "cps")),
			byName("arc__alerting", prop("color", M{"mode": "fixed", "fixedColor": "red"}), prop("displayName", "alerting")),
			byName("arc__ok", prop("color", M{"mode": "fixed", "fixedColor": "green"}), prop("displayName", "ok")),
		}),
		"options": M{
			"nodes": M{
				"mainStatUnit": "Bps",
				"arcs": []M{
					{"field": "arc__alerting", "color": "red"},
					{"field": "arc__ok", "color": "green"},
				},
			},
			"edges":           M{"mainStatUnit": "Bps", "secondaryStatUnit": "cps"},
			"zoomMode":        "cooperative",
			"layoutAlgorithm": "layered",
		},
	}
	d.add(graph, 24, 22)

	d.row("Pairs in the graph")
	d.add(table("Top pairs", "The pairs drawn as edges, busiest first.", "Bps",
		[]M{instantQ("A", topoTop())}, nil,
		M{srcNS: "Source namespace", srcWL: "Source workload", srcKind: "Source kind",
			dstNS: "Destination namespace", dstWL: "Destination workload", dstKind: "Destination kind", "Value": "Bytes/s"},
		nil), 24, 10)
	return d
}
