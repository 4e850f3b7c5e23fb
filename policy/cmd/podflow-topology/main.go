// Command podflow-topology draws the workload communication graph that
// podflow recorded in Prometheus: workloads grouped by namespace, the
// outside networks and the nodes, edges as thick as the bytes exchanged
// over the range, and in a warning colour the edges an active alert calls
// new (a new pair, port or outside network, or a policy alert). It writes
// Graphviz DOT, SVG (through Graphviz's dot) and a self-contained HTML page.
package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/podflow/podflow/policy/prom"
	"github.com/podflow/podflow/policy/topology"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// config is every flag, parsed.
type config struct {
	prom        prom.Config
	rng         time.Duration
	at          string
	namespaces  []string
	alerts      []string
	matchers    string
	jobSelector string
	dotPath     string
	outDOT      string
	outSVG      string
	outHTML     string
}

func (c *config) validate() (time.Time, error) {
	if c.rng < time.Minute {
		return time.Time{}, fmt.Errorf("--range %s: want at least 1m", c.rng)
	}
	return parseTime(c.at)
}

// parseTime takes RFC 3339 or Unix seconds, as Prometheus' API does; empty
// means now.
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Unix(0, int64(f*1e9)), nil
	}
	return time.Time{}, fmt.Errorf("--time %q: want RFC 3339 (2026-12-07T14:00:00Z) or Unix seconds", s)
}

func run(args []string, stdout, stderr io.Writer) int {
	var c config
	app := kingpin.New("podflow-topology", "Draw the workload communication graph podflow recorded in Prometheus (DOT, SVG, HTML).")
	app.UsageWriter(stderr)
	app.ErrorWriter(stderr)
	c.prom.RegisterFlags(app)
	app.Flag("range", "How far back from --time the bytes and alerts reach.").Default("1h").DurationVar(&c.rng)
	app.Flag("time", "End of the range: RFC 3339 or Unix seconds (default: now).").StringVar(&c.at)
	app.Flag("namespace", "Show only edges with an end in this namespace (repeatable).").StringsVar(&c.namespaces)
	app.Flag("alert", "Alert that marks an edge as new (repeatable; default: the new-communication and policy alerts).").
		Default(topology.DefaultAlerts...).StringsVar(&c.alerts)
	app.Flag("selector", `Extra label matchers for every series read, without braces (cluster="prod").`).StringVar(&c.matchers)
	app.Flag("job-selector", `Matcher of podflow's scrape job.`).Default(`job="podflow"`).StringVar(&c.jobSelector)
	app.Flag("dot.path", "Graphviz's dot command, for SVG and HTML.").Default("dot").StringVar(&c.dotPath)
	app.Flag("output.dot", "Write DOT here ('-': standard output; the default when no output is named).").StringVar(&c.outDOT)
	app.Flag("output.svg", "Write SVG here.").StringVar(&c.outSVG)
	app.Flag("output.html", "Write a self-contained HTML page here.").StringVar(&c.outHTML)
	if _, err := app.Parse(args); err != nil {
		fmt.Fprintln(stderr, "podflow-topology:", err)
		return 2
	}
	end, err := c.validate()
	if err != nil {
		fmt.Fprintln(stderr, "podflow-topology:", err)
		return 2
	}
	if c.outDOT == "" && c.outSVG == "" && c.outHTML == "" {
		c.outDOT = "-"
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := draw(ctx, &c, end, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "podflow-topology:", err)
		return 1
	}
	return 0
}

func draw(ctx context.Context, c *config, end time.Time, stdout, stderr io.Writer) error {
	api, err := prom.NewAPI(c.prom)
	if err != nil {
		return err
	}
	g, err := topology.Read(ctx, api, c.prom.URL, &topology.Query{
		Range: c.rng, End: end, Matchers: c.matchers, JobSelector: c.jobSelector,
		Alerts: c.alerts, Filter: topology.Filter{Namespaces: c.namespaces},
	})
	if err != nil {
		return err
	}
	var dot bytes.Buffer
	if err := topology.WriteDOT(&dot, g); err != nil {
		return err
	}
	if err := write(c.outDOT, dot.Bytes(), stdout); err != nil {
		return err
	}
	if c.outSVG != "" || c.outHTML != "" {
		svg, err := topology.SVG(ctx, c.dotPath, dot.Bytes())
		if err != nil {
			return err
		}
		if err := write(c.outSVG, svg, stdout); err != nil {
			return err
		}
		if c.outHTML != "" {
			var page bytes.Buffer
			if err := topology.WriteHTML(&page, g, svg); err != nil {
				return err
			}
			if err := write(c.outHTML, page.Bytes(), stdout); err != nil {
				return err
			}
		}
	}
	fmt.Fprintf(stderr, "podflow-topology: %d edges (%d new) over %s\n", len(g.Edges), g.NewEdges(), c.rng)
	return nil
}

// write puts data at path: nowhere when path is empty, standard output for
// "-", else a file replaced whole.
func write(path string, data []byte, stdout io.Writer) error {
	switch path {
	case "":
		return nil
	case "-":
		_, err := stdout.Write(data)
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil { //nolint:gosec // a picture for people to open
		return err
	}
	return os.Rename(tmp, path)
}
