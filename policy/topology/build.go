package topology

import (
	"fmt"
	"slices"
	"strings"

	"github.com/podflow/podflow/policy/prom"
)

// DefaultAlerts are the alerts that mark an edge as new: a pair, port or
// outside network never seen in the baseline, and the policy alerts.
var DefaultAlerts = []string{
	"PodflowNewCommunication",
	"PodflowNewDestinationPort",
	"PodflowNewExternalNetwork",
	"PodflowDenylistedDestination",
	"PodflowForbiddenCommunication",
}

// Filter selects what a picture shows.
type Filter struct {
	// Namespaces keeps the edges with at least one end in one of them (and
	// so the networks and nodes those talk to); empty keeps every edge.
	Namespaces []string
}

func (f Filter) keep(e *Edge) bool {
	return len(f.Namespaces) == 0 ||
		slices.Contains(f.Namespaces, e.Source.Namespace) || slices.Contains(f.Namespaces, e.Destination.Namespace)
}

// Build folds the pairs (one per port and protocol, prom.ObservedPairs) into
// one edge per source and destination, and marks the edges the alerts name.
// An alert about a pair with no traffic in the window still draws its edge:
// the picture must not hide what an alert reports.
func Build(pairs []prom.Pair, alerts []prom.PairAlert, f Filter) []Edge {
	type key struct{ src, dst Endpoint }
	byKey := map[key]*Edge{}
	var order []key
	edge := func(src, dst Endpoint) *Edge {
		k := key{src, dst}
		e, ok := byKey[k]
		if !ok {
			e = &Edge{Source: src, Destination: dst}
			byKey[k] = e
			order = append(order, k)
		}
		return e
	}
	for i := range pairs {
		p := &pairs[i]
		e := edge(p.Source, p.Destination)
		e.Bytes += p.Bytes
		port := p.Protocol
		if p.Port != 0 {
			port = fmt.Sprintf("%s/%d", p.Protocol, p.Port)
		}
		if !slices.Contains(e.Ports, port) {
			e.Ports = append(e.Ports, port)
		}
	}
	for _, a := range alerts {
		e := edge(a.Source, a.Destination)
		name := a.Name
		if !a.Firing {
			name += " (pending)"
		}
		if !slices.Contains(e.Alerts, name) {
			e.Alerts = append(e.Alerts, name)
		}
	}
	out := make([]Edge, 0, len(order))
	for _, k := range order {
		e := *byKey[k]
		if !f.keep(&e) {
			continue
		}
		slices.SortFunc(e.Ports, comparePorts)
		slices.Sort(e.Alerts)
		out = append(out, e)
	}
	return out
}

// comparePorts orders "TCP/80" before "TCP/443": by protocol, then by number.
func comparePorts(a, b string) int {
	pa, na, _ := strings.Cut(a, "/")
	pb, nb, _ := strings.Cut(b, "/")
	if c := strings.Compare(pa, pb); c != 0 {
		return c
	}
	if len(na) != len(nb) {
		return len(na) - len(nb)
	}
	return strings.Compare(na, nb)
}
