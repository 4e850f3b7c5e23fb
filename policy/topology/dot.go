package topology

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// Colours of the picture: calm for known traffic, a warning colour for what
// an alert calls new.
const (
	colourEdge    = "#7b8794"
	colourText    = "#3e4c59"
	colourWarning = "#d9480f"
	colourGroup   = "#cbd2d9"
)

// shapes gives each kind of endpoint a shape of its own.
var shapes = map[string]string{
	"Deployment":  "box",
	"StatefulSet": "cylinder",
	"DaemonSet":   "box3d",
	"Job":         "note",
	"CronJob":     "note",
	"ReplicaSet":  "box",
	"Pod":         "box",
	"Service":     "oval",
	KindNode:      "component",
	KindNetwork:   "hexagon",
	"Unknown":     "octagon",
}

var fills = map[string]string{
	KindNode:    "#f5f7fa",
	KindNetwork: "#fff4e6",
	"Unknown":   "#f5f7fa",
}

// WriteDOT writes the graph as Graphviz DOT: one cluster per group, nodes
// shaped by kind, edges as thick as the logarithm of their bytes, new edges
// in the warning colour with the alerts that mark them.
func WriteDOT(w io.Writer, g *Graph) error {
	var b bytes.Buffer
	eps := g.Endpoints()
	ids := make(map[Endpoint]string, len(eps))
	marked := map[Endpoint]bool{}
	lo, hi := math.Inf(1), 0.0
	for i := range g.Edges {
		e := &g.Edges[i]
		lo, hi = math.Min(lo, e.Bytes), math.Max(hi, e.Bytes)
		if e.New() {
			marked[e.Source], marked[e.Destination] = true, true
		}
	}

	fmt.Fprintf(&b, "digraph podflow {\n")
	fmt.Fprintf(&b, "  graph [rankdir=LR, fontname=\"Helvetica\", fontsize=12, labelloc=t, nodesep=0.35, ranksep=1.1, label=%s];\n", quote(Title(g)))
	fmt.Fprintf(&b, "  node [fontname=\"Helvetica\", fontsize=10, shape=box, style=\"rounded,filled\", fillcolor=\"#eef4fb\", color=\"#52606d\"];\n")
	fmt.Fprintf(&b, "  edge [fontname=\"Helvetica\", fontsize=9, color=%q, fontcolor=%q, arrowsize=0.7];\n", colourEdge, colourText)
	open := ""
	for i, ep := range eps {
		if group(ep) != open {
			if open != "" {
				b.WriteString("  }\n")
			}
			open = group(ep)
			fmt.Fprintf(&b, "  subgraph %s {\n    label=%s; style=rounded; color=%q; fontcolor=%q;\n",
				quote(fmt.Sprintf("cluster_%d", i)), quote(open), colourGroup, colourText)
		}
		ids[ep] = fmt.Sprintf("n%d", i)
		attrs := []string{
			"id=" + quote("node_"+sanitize(id(ep))),
			"label=" + quote(ep.Workload, ep.Kind),
			"tooltip=" + quote(name(ep)+" ("+ep.Kind+")"),
		}
		if s, ok := shapes[ep.Kind]; ok && s != "box" {
			attrs = append(attrs, "shape="+s)
		}
		if f, ok := fills[ep.Kind]; ok {
			attrs = append(attrs, "fillcolor="+quote(f))
		}
		if ep.Kind == "Unknown" || ep.Kind == "Pod" {
			attrs = append(attrs, `style="rounded,filled,dashed"`)
		}
		if marked[ep] {
			attrs = append(attrs, "color="+quote(colourWarning), "penwidth=2")
		}
		fmt.Fprintf(&b, "    %s [%s];\n", ids[ep], strings.Join(attrs, ", "))
	}
	if open != "" {
		b.WriteString("  }\n")
	}
	for i := range g.Edges {
		e := &g.Edges[i]
		label := []string{HumanBytes(e.Bytes)}
		if len(e.Ports) > 0 {
			label = append(label, portList(e.Ports))
		}
		w := width(e.Bytes, lo, hi)
		if e.New() {
			w = math.Max(w, 2.5)
		}
		attrs := []string{
			fmt.Sprintf("penwidth=%.2f", w),
			"tooltip=" + quote(name(e.Source)+" → "+name(e.Destination)+": "+HumanBytes(e.Bytes)),
		}
		edgeID := fmt.Sprintf("edge_%d", i)
		if e.New() {
			edgeID = "new_" + edgeID
			label = append([]string{strings.Join(e.Alerts, ", ")}, label...)
			attrs = append(attrs, "color="+quote(colourWarning), "fontcolor="+quote(colourWarning), "style=bold")
		}
		attrs = append([]string{"id=" + quote(edgeID), "label=" + quote(label...)}, attrs...)
		fmt.Fprintf(&b, "  %s -> %s [%s];\n", ids[e.Source], ids[e.Destination], strings.Join(attrs, ", "))
	}
	b.WriteString("}\n")
	_, err := w.Write(b.Bytes())
	return err
}

// Title says what the picture shows and over which window.
func Title(g *Graph) string {
	t := fmt.Sprintf("podflow: workload traffic over %s to %s", shortDuration(g.Range), g.End.UTC().Format("2006-01-02 15:04:05 UTC"))
	switch n := g.NewEdges(); n {
	case 0:
	case 1:
		t += ", 1 new edge"
	default:
		t += fmt.Sprintf(", %d new edges", n)
	}
	return t
}

// width maps bytes to a pen width from 1 (the quietest edge, lo) to 5 (the
// busiest, hi) on a logarithmic scale, so that a quiet pair stays visible
// next to a busy one.
func width(b, lo, hi float64) float64 {
	lo, b = math.Max(lo, 1), math.Max(b, 1)
	if hi <= lo || b <= lo {
		return 1
	}
	return 1 + 4*math.Log(b/lo)/math.Log(hi/lo)
}

// portList keeps an edge label short: the first ports, then how many more.
func portList(ports []string) string {
	const most = 4
	if len(ports) <= most {
		return strings.Join(ports, " ")
	}
	return strings.Join(ports[:most], " ") + fmt.Sprintf(" +%d", len(ports)-most)
}

// HumanBytes prints bytes in IEC units: 512 B, 1.5 KiB, 3.0 MiB.
func HumanBytes(b float64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%.0f B", b)
	}
	exp, v := 0, b/unit
	for v >= unit && exp < 5 {
		v /= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTPE"[exp])
}

func shortDuration(d time.Duration) string {
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d >= time.Minute && d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}

// quote makes a DOT string of lines joined by DOT's line break.
func quote(lines ...string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	parts := make([]string, len(lines))
	for i, l := range lines {
		parts[i] = r.Replace(l)
	}
	return `"` + strings.Join(parts, `\n`) + `"`
}

// sanitize keeps an SVG id to letters, digits and '_' (dot would write
// other characters as entities).
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '_'
	}, s)
}
