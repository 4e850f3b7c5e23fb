package prom

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// Endpoint is one side of a pair as podflow labels it: Kind is the owner kind
// of pods (Deployment, StatefulSet, ...), Node, Service, Network or Unknown;
// Workload of a Node is the node's name and of a Network the network's name.
type Endpoint struct {
	Namespace string
	Workload  string
	Kind      string
}

// String is namespace/workload (kind), or the bare name of an endpoint
// outside every namespace.
func (e Endpoint) String() string {
	if e.Namespace == "" {
		return e.Workload + " (" + e.Kind + ")"
	}
	return e.Namespace + "/" + e.Workload + " (" + e.Kind + ")"
}

// Pair is one observed source, destination, port and protocol.
type Pair struct {
	Source      Endpoint
	Destination Endpoint
	// Port is the responder's port after DNAT (the pod port, which is what
	// NetworkPolicy matches); 0 for ICMP and ICMPv6.
	Port int
	// Protocol is TCP, UDP, SCTP, ICMP or ICMPv6.
	Protocol string
	// Bytes is the L3 volume of the pair in both directions over the
	// window. The Hourly tier records volume per pair, not per port, so
	// there every port of a pair carries the pair's total: count it once
	// per pair.
	Bytes float64
	// ActiveHours counts the hours of the window in which this port of the
	// pair was seen (Hourly tier only; 0 for Raw).
	ActiveHours int
}

// Tier is which series a query reads.
type Tier int

const (
	// Hourly reads the hourly recorded series the rules keep for the
	// baseline: one sample per pair and hour, cheap over 35 days. It is what
	// the new-communication alerts compare against.
	Hourly Tier = iota
	// Raw reads podflow's counters: volume per port, current to the last
	// scrape, for windows within the raw retention.
	Raw
)

// Query selects the pairs to read.
type Query struct {
	// Window is how far back from End the pairs reach.
	Window time.Duration
	// End is the evaluation time; zero means now.
	End  time.Time
	Tier Tier
	// Matchers are extra label matchers without braces (cluster="prod"),
	// applied to every series read.
	Matchers string
	// JobSelector selects podflow's raw series (Raw tier); the rules'
	// job_selector, job="podflow" when empty.
	JobSelector string
}

// Recorded series the Hourly tier reads; rules/podflow-recording.rules.yaml
// records them in its podflow.hourly-downsample group.
const (
	seriesPortPresent1h = "workload_pair_port:podflow_packets:present1h"
	seriesBytesRate1h   = "workload_pair:podflow_bytes:rate1h"
	seriesUpPresent1h   = "cluster:podflow_up:present1h"
)

var pairLabels = []string{
	"source_namespace", "source_workload", "source_kind",
	"destination_namespace", "destination_workload", "destination_kind",
}

func (q Query) end() time.Time {
	if q.End.IsZero() {
		return time.Now()
	}
	return q.End
}

func (q Query) validate() error {
	if q.Window < time.Minute {
		return fmt.Errorf("window %s: want at least a minute", q.Window)
	}
	if strings.ContainsAny(q.Matchers+q.JobSelector, "{}") {
		return fmt.Errorf("matchers %q %q: want label matchers without braces", q.Matchers, q.JobSelector)
	}
	return nil
}

func selector(parts ...string) string {
	var nonEmpty []string
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			nonEmpty = append(nonEmpty, p)
		}
	}
	if len(nonEmpty) == 0 {
		return ""
	}
	return "{" + strings.Join(nonEmpty, ",") + "}"
}

// PairQueries returns the PromQL of a query: the one giving a sample per pair,
// port and protocol, and the one giving bytes (per pair for Hourly, per port
// for Raw).
func PairQueries(q Query) (ports, bytes string) {
	rng := model.Duration(q.Window).String()
	by := strings.Join(append(slices.Clone(pairLabels), "destination_port", "protocol"), ", ")
	if q.Tier == Raw {
		job := q.JobSelector
		if job == "" {
			job = `job="podflow"`
		}
		sel := selector(job, q.Matchers)
		ports = fmt.Sprintf("sum by (%s) (increase(podflow_bytes_total%s[%s]))", by, sel, rng)
		return ports, ports
	}
	sel := selector(q.Matchers)
	ports = fmt.Sprintf("sum by (%s) (count_over_time(%s%s[%s]))", by, seriesPortPresent1h, sel, rng)
	bytes = fmt.Sprintf("sum by (%s) (sum_over_time(%s%s[%s])) * 3600",
		strings.Join(pairLabels, ", "), seriesBytesRate1h, sel, rng)
	return ports, bytes
}

type pairKey struct{ src, dst Endpoint }

func endpoints(m model.Metric) pairKey {
	return pairKey{
		src: Endpoint{string(m["source_namespace"]), string(m["source_workload"]), string(m["source_kind"])},
		dst: Endpoint{string(m["destination_namespace"]), string(m["destination_workload"]), string(m["destination_kind"])},
	}
}

// ObservedPairs returns every pair, port and protocol seen within the window,
// sorted by source, destination, protocol and port.
func ObservedPairs(ctx context.Context, api v1.API, q Query) ([]Pair, error) {
	if err := q.validate(); err != nil {
		return nil, err
	}
	portsQ, bytesQ := PairQueries(q)
	end := q.end()
	ports, err := vector(ctx, api, portsQ, end)
	if err != nil {
		return nil, err
	}
	out := make([]Pair, 0, len(ports))
	for _, s := range ports {
		k := endpoints(s.Metric)
		port, err := strconv.Atoi(string(s.Metric["destination_port"]))
		if err != nil || port < 0 || port > 65535 {
			return nil, fmt.Errorf("%s: destination_port %q is not a port", portsQ, s.Metric["destination_port"])
		}
		p := Pair{Source: k.src, Destination: k.dst, Port: port, Protocol: string(s.Metric["protocol"])}
		if q.Tier == Raw {
			p.Bytes = float64(s.Value)
		} else {
			p.ActiveHours = int(s.Value)
		}
		out = append(out, p)
	}
	if q.Tier == Hourly {
		vol, err := vector(ctx, api, bytesQ, end)
		if err != nil {
			return nil, err
		}
		byPair := make(map[pairKey]float64, len(vol))
		for _, s := range vol {
			byPair[endpoints(s.Metric)] += float64(s.Value)
		}
		for i := range out {
			out[i].Bytes = byPair[pairKey{out[i].Source, out[i].Destination}]
		}
	}
	SortPairs(out)
	return out, nil
}

// SortPairs orders pairs by source, destination, protocol and port.
func SortPairs(ps []Pair) {
	slices.SortFunc(ps, func(a, b Pair) int {
		return cmp.Or(
			compareEndpoints(a.Source, b.Source),
			compareEndpoints(a.Destination, b.Destination),
			cmp.Compare(a.Protocol, b.Protocol),
			cmp.Compare(a.Port, b.Port),
		)
	})
}

func compareEndpoints(a, b Endpoint) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Workload, b.Workload), cmp.Compare(a.Kind, b.Kind))
}

// LearnedHours returns how many hours of the window had at least one podflow
// exporter up: the cluster's learning clock, which the alerts gate on.
func LearnedHours(ctx context.Context, api v1.API, q Query) (int, error) {
	if err := q.validate(); err != nil {
		return 0, err
	}
	expr := fmt.Sprintf("max(count_over_time(%s%s[%s]))", seriesUpPresent1h, selector(q.Matchers), model.Duration(q.Window))
	v, err := vector(ctx, api, expr, q.end())
	if err != nil || len(v) == 0 {
		return 0, err
	}
	return int(v[0].Value), nil
}

func vector(ctx context.Context, api v1.API, expr string, at time.Time) (model.Vector, error) {
	res, warnings, _, err := api.Query(ctx, expr, at)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", expr, err)
	}
	if len(warnings) > 0 {
		// A partial answer would silently leave pairs out of a policy.
		return nil, fmt.Errorf("query %s: %s", expr, strings.Join(warnings, "; "))
	}
	v, ok := res.(model.Vector)
	if !ok {
		return nil, fmt.Errorf("query %s: want a vector, got %s", expr, res.Type())
	}
	return v, nil
}
