// Package topology draws the workload communication graph podflow records:
// workloads grouped by namespace, the outside networks and the nodes, one
// edge per source and destination weighted by the bytes they exchanged, and
// the edges an active alert calls new or forbidden marked in a warning
// colour. It renders Graphviz DOT, SVG through Graphviz's dot, and a
// self-contained HTML page.
package topology

import (
	"cmp"
	"slices"
	"time"

	"github.com/podflow/podflow/policy/prom"
)

// Kinds of endpoint podflow labels that are not workloads of a namespace.
const (
	KindNode    = "Node"
	KindNetwork = "Network"
)

// Endpoint is one side of an edge as podflow labels it.
type Endpoint = prom.Endpoint

// group is the box an endpoint is drawn in: its namespace, or one of the
// groups for outside networks, for nodes, and for addresses no informer
// knows.
func group(e Endpoint) string {
	switch {
	case e.Kind == KindNetwork:
		return "outside networks"
	case e.Kind == KindNode:
		return "nodes"
	case e.Namespace == "":
		return "unattributed"
	default:
		return "namespace " + e.Namespace
	}
}

// name is how the endpoint reads on its own: namespace/workload, or the bare
// name of a node or network.
func name(e Endpoint) string {
	if e.Namespace == "" {
		return e.Workload
	}
	return e.Namespace + "/" + e.Workload
}

func id(e Endpoint) string { return e.Kind + ":" + e.Namespace + "/" + e.Workload }

func compareEndpoints(a, b Endpoint) int {
	return cmp.Or(cmp.Compare(group(a), group(b)), cmp.Compare(a.Namespace, b.Namespace),
		cmp.Compare(a.Workload, b.Workload), cmp.Compare(a.Kind, b.Kind))
}

// Edge is the traffic from a source to a destination over the graph's range.
type Edge struct {
	Source, Destination Endpoint
	// Bytes in both directions, summed over every port.
	Bytes float64
	// Ports are "protocol/port" strings (TCP/5432, ICMP), sorted.
	Ports []string
	// Alerts names the active alerts about this pair (PodflowNewCommunication,
	// ...); an edge with any is drawn as new.
	Alerts []string
}

// New tells whether an active alert marks the edge.
func (e *Edge) New() bool { return len(e.Alerts) > 0 }

// Graph is what one picture shows.
type Graph struct {
	// End and Range are the window the bytes were summed over.
	End   time.Time
	Range time.Duration
	// Source names where the data came from (a Prometheus URL).
	Source string
	Edges  []Edge
}

// Endpoints returns every endpoint of the edges once, by group and name.
func (g *Graph) Endpoints() []Endpoint {
	seen := map[Endpoint]bool{}
	var out []Endpoint
	for i := range g.Edges {
		for _, ep := range []Endpoint{g.Edges[i].Source, g.Edges[i].Destination} {
			if !seen[ep] {
				seen[ep] = true
				out = append(out, ep)
			}
		}
	}
	slices.SortFunc(out, compareEndpoints)
	return out
}

// Sort orders the edges by source and destination, so that the same data
// always renders the same text.
func (g *Graph) Sort() {
	slices.SortFunc(g.Edges, func(a, b Edge) int {
		return cmp.Or(compareEndpoints(a.Source, b.Source), compareEndpoints(a.Destination, b.Destination))
	})
}

// NewEdges counts the edges an active alert marks.
func (g *Graph) NewEdges() int {
	n := 0
	for i := range g.Edges {
		if g.Edges[i].New() {
			n++
		}
	}
	return n
}
