package topology

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func ep(namespace, workload, kind string) Endpoint {
	return Endpoint{Namespace: namespace, Workload: workload, Kind: kind}
}

var (
	frontend = ep("shop", "frontend", "Deployment")
	checkout = ep("shop", "checkout", "Deployment")
	db       = ep("shop", "db", "StatefulSet")
	debug    = ep("shop", "debug", "Pod")
	report   = ep("batch", "report", "CronJob")
	corp     = ep("", "corp", KindNetwork)
	node1    = ep("", "node-1", KindNode)
)

// demoGraph is the sandbox's traffic after the unexpected connection.
func demoGraph() *Graph {
	g := &Graph{
		End:    time.Date(2026, 12, 7, 14, 0, 0, 0, time.UTC),
		Range:  15 * time.Minute,
		Source: "http://127.0.0.1:9090",
		Edges: []Edge{
			{Source: frontend, Destination: checkout, Bytes: 3.6e6, Ports: []string{"TCP/8080"}},
			{Source: checkout, Destination: db, Bytes: 1.8e6, Ports: []string{"TCP/5432"}},
			{Source: report, Destination: db, Bytes: 1.3e6, Ports: []string{"TCP/5432"}},
			{Source: frontend, Destination: corp, Bytes: 7.2e5, Ports: []string{"TCP/443"}},
			{Source: debug, Destination: db, Bytes: 1300, Ports: []string{"TCP/5432"}, Alerts: []string{"PodflowNewCommunication"}},
			{Source: node1, Destination: checkout, Bytes: 120, Ports: []string{"ICMP", "TCP/8080", "TCP/8081", "UDP/123", "UDP/53"}},
		},
	}
	g.Sort()
	return g
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the rendering (go test -update rewrites it):\n%s", path, got)
	}
}

func TestDOTGolden(t *testing.T) {
	var b bytes.Buffer
	if err := WriteDOT(&b, demoGraph()); err != nil {
		t.Fatal(err)
	}
	golden(t, "demo.dot", b.Bytes())
}

func TestDOTGroupsAndMarks(t *testing.T) {
	var b bytes.Buffer
	if err := WriteDOT(&b, demoGraph()); err != nil {
		t.Fatal(err)
	}
	dot := b.String()
	for _, group := range []string{"namespace shop", "namespace batch", "outside networks", "nodes"} {
		if n := strings.Count(dot, `label="`+group+`"`); n != 1 {
			t.Errorf("group %q drawn %d times, want once", group, n)
		}
	}
	// Exactly the alerted edge is new, in the warning colour, named by its alert.
	newEdges := regexp.MustCompile(`(?m)^  n\d+ -> n\d+ \[id="new_edge_\d+".*$`).FindAllString(dot, -1)
	if len(newEdges) != 1 {
		t.Fatalf("new edges %q, want exactly debug -> db", newEdges)
	}
	for _, want := range []string{`color="` + colourWarning + `"`, "PodflowNewCommunication", "shop/debug → shop/db"} {
		if !strings.Contains(newEdges[0], want) {
			t.Errorf("new edge %q lacks %s", newEdges[0], want)
		}
	}
	if strings.Count(dot, colourWarning) != 2+2 { // the edge (line, label) and its two ends
		t.Errorf("warning colour used %d times, want 4:\n%s", strings.Count(dot, colourWarning), dot)
	}
	if !strings.Contains(dot, `ICMP TCP/8080 TCP/8081 UDP/123 +1`) {
		t.Errorf("five ports not shortened to four and a count:\n%s", dot)
	}
}

func TestDOTQuotesNames(t *testing.T) {
	g := &Graph{Range: time.Hour, Edges: []Edge{{
		Source:      ep("a", `we"ird\name`, "Deployment"),
		Destination: ep("", "line\nbreak", KindNetwork),
		Bytes:       1,
	}}}
	var b bytes.Buffer
	if err := WriteDOT(&b, g); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`label="we\"ird\\name\nDeployment"`, `label="line\nbreak\nNetwork"`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("DOT lacks %s:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "line\nbreak") {
		t.Errorf("a raw line break reached the DOT text")
	}
}

func TestWidthAndBytes(t *testing.T) {
	for _, c := range []struct {
		b, lo, hi, want float64
	}{{0, 0, 0, 1}, {5, 5, 5, 1}, {1, 1, 1e6, 1}, {1e6, 1, 1e6, 5}, {1e3, 1, 1e6, 3}, {1e4, 1e2, 1e6, 3}} {
		if got := width(c.b, c.lo, c.hi); got < c.want-1e-9 || got > c.want+1e-9 {
			t.Errorf("width(%g, %g, %g) = %g, want %g", c.b, c.lo, c.hi, got, c.want)
		}
	}
	for b, want := range map[float64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 3 << 20: "3.0 MiB"} {
		if got := HumanBytes(b); got != want {
			t.Errorf("HumanBytes(%g) = %q, want %q", b, got, want)
		}
	}
	for d, want := range map[time.Duration]string{time.Hour: "1h", 30 * time.Minute: "30m", 90 * time.Second: "1m30s", 36 * time.Hour: "36h"} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestSVGAndHTML renders through the real Graphviz (installed by make setup).
func TestSVGAndHTML(t *testing.T) {
	dotPath, err := exec.LookPath("dot")
	if err != nil {
		t.Skip("Graphviz's dot is not installed: run make setup")
	}
	g := demoGraph()
	var d bytes.Buffer
	if err := WriteDOT(&d, g); err != nil {
		t.Fatal(err)
	}
	svg, err := SVG(context.Background(), dotPath, d.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(svg), `<g id="new_edge_`); n != 1 {
		t.Errorf("SVG has %d new edges, want 1", n)
	}
	if n := strings.Count(string(svg), `class="edge"`); n != len(g.Edges) {
		t.Errorf("SVG has %d edges, want %d", n, len(g.Edges))
	}
	var h bytes.Buffer
	if err := WriteHTML(&h, g, svg); err != nil {
		t.Fatal(err)
	}
	page := h.String()
	if strings.Contains(page, "<?xml") || !strings.Contains(page, "<svg") {
		t.Errorf("the page does not hold the bare <svg> element")
	}
	for _, ref := range []string{"src=", "href=\"http", "@import", "url("} {
		if strings.Contains(page, ref) {
			t.Errorf("the page loads something (%s): it must stand alone", ref)
		}
	}
	rows := regexp.MustCompile(`<tr( class="new")?><td>`).FindAllStringSubmatch(page, -1)
	if len(rows) != len(g.Edges) || rows[0][1] == "" {
		t.Fatalf("table rows %v: want %d, the new edge first", rows, len(g.Edges))
	}
	for _, r := range rows[1:] {
		if r[1] != "" {
			t.Errorf("a known edge is marked new in the table")
		}
	}
	if _, err := SVG(context.Background(), dotPath, []byte("digraph {")); err == nil {
		t.Errorf("dot accepted broken input")
	}
}

func TestSVGWithoutGraphviz(t *testing.T) {
	_, err := SVG(context.Background(), filepath.Join(t.TempDir(), "no-dot"), []byte("digraph {}"))
	if err == nil || !strings.Contains(err.Error(), "install Graphviz") {
		t.Errorf("missing dot: got %v, want a hint to install Graphviz", err)
	}
}
