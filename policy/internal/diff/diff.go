// Package diff asks the policy engine about every observed pair: which of
// them the cluster's policies would deny.
package diff

import (
	"context"
	"net/netip"

	corev1 "k8s.io/api/core/v1"

	"github.com/podflow/podflow/policy/internal/inventory"
	"github.com/podflow/podflow/policy/internal/networks"
	"github.com/podflow/podflow/policy/prom"
)

// Verdict is the engine's answer for one observed pair and port.
type Verdict struct {
	Pair prom.Pair
	// Evaluated is false when the pair could not be put to the engine;
	// Reason says why.
	Evaluated bool
	Allowed   bool
	Reason    string
	Src, Dst  netip.Addr
}

// Engine is the policy engine's verdict on one connection.
type Engine interface {
	Allowed(ctx context.Context, src, dst netip.Addr, dstPort int, proto corev1.Protocol) bool
}

// Resolver names an address for each side of a pair.
type Resolver struct {
	Inv  *inventory.Inventory
	Nets networks.Networks
}

// candidates of an outside address for a network with no prefix of its own:
// documentation and private ranges, none of which the cluster routes.
var candidates = map[string][]netip.Addr{
	"internet": {netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("198.51.100.10"), netip.MustParseAddr("203.0.113.10")},
	"private":  {netip.MustParseAddr("10.255.255.254"), netip.MustParseAddr("172.31.255.254"), netip.MustParseAddr("192.168.255.254")},
}

// Addr returns an address podflow would have labelled as e.
func (r Resolver) Addr(e prom.Endpoint) (netip.Addr, string) {
	switch e.Kind {
	case "Unknown":
		return netip.Addr{}, "an Unknown peer has no address to evaluate"
	case "Service":
		return netip.Addr{}, "an untranslated ClusterIP is not evaluated"
	case "Node":
		if a := r.Inv.Nodes[e.Workload]; len(a) > 0 {
			return a[0], ""
		}
		return netip.Addr{}, "node " + e.Workload + " is not in the cluster"
	case "Network":
		if ps := r.Nets[e.Workload]; len(ps) > 0 {
			return ps[0].Addr(), ""
		}
		for _, a := range candidates[e.Workload] {
			if r.classify(a) == e.Workload {
				return a, ""
			}
		}
		return netip.Addr{}, "no address of network " + e.Workload + " is known"
	}
	a, ok := r.Inv.Addr(inventory.Key{Namespace: e.Namespace, Kind: e.Kind, Name: e.Workload})
	if !ok {
		return netip.Addr{}, e.String() + " has no running pod"
	}
	return a, ""
}

// classify tells whether a is in a named network.
func (r Resolver) classify(a netip.Addr) string {
	best, bits := "", -1
	for name, ps := range r.Nets {
		for _, p := range ps {
			if p.Contains(a) && p.Bits() > bits {
				best, bits = name, p.Bits()
			}
		}
	}
	if best != "" {
		return best
	}
	for _, p := range networks.Private {
		if p.Contains(a) {
			return "private"
		}
	}
	return "internet"
}

// Check evaluates every pair and returns the verdicts in the pairs' order.
func Check(ctx context.Context, e Engine, r Resolver, pairs []prom.Pair) []Verdict {
	out := make([]Verdict, 0, len(pairs))
	for _, p := range pairs {
		v := Verdict{Pair: p}
		if p.Protocol == "ICMP" || p.Protocol == "ICMPv6" {
			// NetworkPolicy has no ICMP rules: whether a policy drops it
			// (neighbour discovery above all) differs between CNIs.
			v.Reason = "NetworkPolicy cannot express " + p.Protocol
			out = append(out, v)
			continue
		}
		var why string
		if v.Src, why = r.Addr(p.Source); why == "" {
			v.Dst, why = r.Addr(p.Destination)
		}
		if why != "" {
			v.Reason = why
			out = append(out, v)
			continue
		}
		v.Evaluated = true
		v.Allowed = e.Allowed(ctx, v.Src, v.Dst, p.Port, corev1.Protocol(p.Protocol))
		out = append(out, v)
	}
	return out
}
