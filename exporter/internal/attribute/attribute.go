// Package attribute names both ends of a flow, decides whether this node
// reports it, and projects it to the series key it is counted under.
package attribute

import (
	"fmt"
	"net/netip"
	"sync/atomic"

	"github.com/podflow/podflow/exporter/internal/flow"
)

// Resolver maps an address to the endpoint behind it. It reports false
// when it knows nothing of the address; the Attributor then labels the
// side Unknown and counts a miss. A source of identity that classifies
// addresses outside the cluster (kind Network) reports true for them.
type Resolver interface {
	Lookup(netip.Addr) (flow.Endpoint, bool)
}

// ServiceResolver is implemented by a Resolver that knows every address
// and port a Service answers on before DNAT: ClusterIPs, load balancer
// ingress addresses, and node ports on a node's address.
type ServiceResolver interface {
	Service(addr netip.Addr, port uint16, proto flow.Protocol) (flow.Endpoint, bool)
}

// The opt-in label names of --metrics.labels.
const (
	LabelSourcePod          = "source_pod"
	LabelDestinationPod     = "destination_pod"
	LabelDestinationService = "destination_service"
)

// Labels says which opt-in labels are enabled.
type Labels struct {
	SourcePod, DestinationPod, DestinationService bool
}

// ParseLabels turns --metrics.labels values into Labels.
func ParseLabels(names []string) (Labels, error) {
	var l Labels
	for _, n := range names {
		switch n {
		case LabelSourcePod:
			l.SourcePod = true
		case LabelDestinationPod:
			l.DestinationPod = true
		case LabelDestinationService:
			l.DestinationService = true
		default:
			return Labels{}, fmt.Errorf("unknown opt-in label %q (want %s, %s or %s)", n, LabelSourcePod, LabelDestinationPod, LabelDestinationService)
		}
	}
	return l, nil
}

// Names returns the enabled opt-in label names in exposition order.
func (l Labels) Names() []string {
	var n []string
	if l.SourcePod {
		n = append(n, LabelSourcePod)
	}
	if l.DestinationPod {
		n = append(n, LabelDestinationPod)
	}
	if l.DestinationService {
		n = append(n, LabelDestinationService)
	}
	return n
}

// Config configures an Attributor.
type Config struct {
	// Node is the name of the node this instance runs on: the reporter
	// of connections whose initiator or responder runs here. Empty means
	// a lone instance that reports every flow it sees.
	Node   string
	Labels Labels
}

// Stats are the attribution self-metrics. They count the packets of the
// flows (flow.Flow.Packets: wire packets, or a connection's packets read
// from conntrack), so that what one node leaves to another is what the
// other counts.
type Stats struct {
	// OtherNodeReports counts packets left to another node's instance.
	OtherNodeReports uint64
	// LinkLocal and Multicast count packets not counted as pairs: IPv6
	// link-local traffic (neighbour discovery, router advertisements) and
	// multicast or broadcast traffic belong to the link, not to a workload.
	LinkLocal, Multicast uint64
	// SourceMisses and DestinationMisses count packets whose initiator or
	// responder no source of identity knew.
	SourceMisses, DestinationMisses uint64
}

// Attributor turns flows into series keys. Attribute may be called from
// one goroutine at a time; Stats from any.
type Attributor struct {
	resolver Resolver
	services ServiceResolver // nil: Services by ClusterIP only
	node     string
	labels   Labels

	otherNode atomic.Uint64
	linkLocal atomic.Uint64
	multicast atomic.Uint64
	srcMiss   atomic.Uint64
	dstMiss   atomic.Uint64
}

// New returns an Attributor that looks addresses up in r.
func New(r Resolver, cfg Config) *Attributor {
	a := &Attributor{resolver: r, node: cfg.Node, labels: cfg.Labels}
	a.services, _ = r.(ServiceResolver)
	return a
}

// Attribute fills k with the series of f and reports true when this node
// reports f. A connection is reported by the node of its initiator when
// the initiator is in the cluster (a pod or a node), otherwise by the
// node that translated its destination, else by the node of its
// responder; when neither side names a node (no cluster around, as with
// static identities on a plain host), this node reports.
// Flows this node leaves to another are counted and not projected.
func (a *Attributor) Attribute(f *flow.Flow, k *flow.Key) bool {
	switch {
	case isMulticast(f.Initiator) || isMulticast(f.Responder):
		a.multicast.Add(uint64(f.Packets))
		return false
	case f.Initiator.Is6() && f.Initiator.IsLinkLocalUnicast(), f.Responder.Is6() && f.Responder.IsLinkLocalUnicast():
		// IPv4 link-local stays: 169.254.169.254 is the cloud metadata
		// service, a destination a security team wants to see.
		a.linkLocal.Add(uint64(f.Packets))
		return false
	}
	src, ok := a.resolver.Lookup(f.Initiator)
	if !ok {
		a.srcMiss.Add(uint64(f.Packets))
		src = unknown(&src)
	}
	dst, ok := a.resolver.Lookup(f.Responder)
	if !ok {
		a.dstMiss.Add(uint64(f.Packets))
		dst = unknown(&dst)
	}
	if r := reporter(&src, &dst, f.DNAT, a.node); r != "" && a.node != "" && r != a.node {
		a.otherNode.Add(uint64(f.Packets))
		return false
	}

	// Every field is projected to its label value (flow.Key).
	proto, port := f.Proto.Label(), f.Port
	if !proto.HasPorts() {
		port = 0
	}
	*k = flow.Key{
		SrcNamespace: namespace(&src),
		SrcWorkload:  src.Workload,
		SrcKind:      src.Kind.Label(),
		DstNamespace: namespace(&dst),
		DstWorkload:  dst.Workload,
		DstKind:      dst.Kind.Label(),
		DstPort:      port,
		Proto:        proto,
	}
	if a.labels.SourcePod {
		k.SrcPod = src.Pod
	}
	if a.labels.DestinationPod {
		k.DstPod = dst.Pod
	}
	if a.labels.DestinationService {
		k.DstService = a.service(f, &dst)
	}
	return true
}

// service names the Service of a flow: the one the initiator dialled
// before DNAT, or, for a flow to a node's node port that no node on this
// side translated, the Service behind that port.
func (a *Attributor) service(f *flow.Flow, dst *flow.Endpoint) string {
	switch {
	case f.Service.IsValid() && a.services != nil:
		if svc, ok := a.services.Service(f.Service, f.ServicePort, f.Proto); ok {
			return svc.Workload
		}
	case f.Service.IsValid():
		if svc, ok := a.resolver.Lookup(f.Service); ok && svc.Kind == flow.KindService {
			return svc.Workload
		}
	case dst.Kind == flow.KindNode && a.services != nil:
		if svc, ok := a.services.Service(f.Responder, f.Port, f.Proto); ok {
			return svc.Workload
		}
	}
	return ""
}

// isMulticast reports multicast and the IPv4 limited broadcast address.
func isMulticast(addr netip.Addr) bool {
	return addr.IsMulticast() || addr == limitedBroadcast
}

var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// unknown is the endpoint of an address no source of identity knows. It
// keeps the node a miss may still name (the node whose pod CIDR holds the
// address), so that while one node's informers lag behind another's the
// connection is still reported by its initiator's node alone.
func unknown(miss *flow.Endpoint) flow.Endpoint {
	return flow.Endpoint{Kind: flow.KindUnknown, Node: miss.Node}
}

// reporter returns the node that reports a flow between src and dst, or
// "" when neither names a node. here is this node, dnatHere whether this
// node translated the flow's destination.
//
// The initiator's node reports a connection whose initiator is in the
// cluster: every packet the initiator sends crosses it, before any
// translation. Otherwise (a client outside the cluster) the responder's
// node reports, unless this node translated the destination: a node port
// or load balancer address that this node forwards, usually with source
// NAT (kube-proxy masquerades such traffic for externalTrafficPolicy
// Cluster). Past this node the connection seems to come from this node,
// whose address names it as the initiator, so this node, the only one
// that saw the outside client, reports it.
func reporter(src, dst *flow.Endpoint, dnatHere bool, here string) string {
	if src.Node != "" && (src.Kind == flow.KindNode || src.Kind == flow.KindUnknown || isPod(src.Kind)) {
		return src.Node
	}
	if dnatHere {
		return here
	}
	return dst.Node
}

func isPod(k flow.Kind) bool {
	switch k {
	case flow.KindPod, flow.KindDeployment, flow.KindStatefulSet, flow.KindDaemonSet,
		flow.KindReplicaSet, flow.KindJob, flow.KindCronJob:
		return true
	}
	return false
}

func namespace(ep *flow.Endpoint) string {
	if ep.Kind == flow.KindNode || ep.Kind == flow.KindNetwork {
		return ""
	}
	return ep.Namespace
}

// Stats returns the attribution self-metrics.
func (a *Attributor) Stats() Stats {
	return Stats{
		OtherNodeReports:  a.otherNode.Load(),
		LinkLocal:         a.linkLocal.Load(),
		Multicast:         a.multicast.Load(),
		SourceMisses:      a.srcMiss.Load(),
		DestinationMisses: a.dstMiss.Load(),
	}
}
