package topology

import (
	"context"
	"time"

	"github.com/podflow/podflow/policy/prom"
)

// Query is what to read from Prometheus for one picture.
type Query struct {
	Range time.Duration
	// End of the range; zero means now.
	End time.Time
	// Matchers are extra label matchers without braces (cluster="prod").
	Matchers string
	// JobSelector selects podflow's series (job="podflow" when empty).
	JobSelector string
	// Alerts names the alerts that mark an edge as new.
	Alerts []string
	Filter Filter
}

// Read queries podflow's counters and the active alerts over the range and
// returns the graph, its edges sorted.
func Read(ctx context.Context, api prom.API, source string, q *Query) (*Graph, error) {
	end := q.End
	if end.IsZero() {
		end = time.Now()
	}
	pairs, err := prom.ObservedPairs(ctx, api, prom.Query{
		Window: q.Range, End: end, Tier: prom.Raw, Matchers: q.Matchers, JobSelector: q.JobSelector,
	})
	if err != nil {
		return nil, err
	}
	alerts, err := prom.PairAlerts(ctx, api, q.Alerts, q.Range, end, q.Matchers)
	if err != nil {
		return nil, err
	}
	g := &Graph{End: end, Range: q.Range, Source: source, Edges: Build(pairs, alerts, q.Filter)}
	g.Sort()
	return g, nil
}
