package flow

import "net/netip"

// Flow is a packet oriented to its connection: who initiated it, who
// responds, on which port, and which way this packet goes.
type Flow struct {
	// Initiator opened the connection; Responder answers it, as addressed
	// after destination NAT (a Service's ClusterIP already translated to a
	// pod).
	Initiator, Responder netip.Addr
	// Service is the destination the initiator addressed before DNAT, when
	// it differs from Responder; the zero Addr otherwise.
	Service netip.Addr
	// ServicePort is the port the initiator dialled with Service: a
	// Service's port, node port or load balancer port.
	ServicePort uint16
	// Port is the responder's port; zero for protocols without ports.
	Port  uint16
	Proto Protocol
	Dir   Direction
	// Bytes is the packet's L3 length.
	Bytes uint32
	// NewConn marks the packet that opens a connection.
	NewConn bool
	// DNAT is set when this node translated the connection's destination
	// (conntrack's DNAT status): this node saw the initiator's own
	// address, before any source NAT of its own.
	DNAT bool
	Hook Hook
}

// Endpoint is the identity of one side of a flow. Its strings are shared
// with the source of identity and must not be modified.
type Endpoint struct {
	Namespace string
	// Workload is the owner's name for pods, the node's name for KindNode,
	// the Service's name for KindService and the network's name for
	// KindNetwork.
	Workload string
	Kind     Kind
	// Pod is the pod's name, empty when the endpoint is not a pod.
	Pod string
	// Node is the node the endpoint runs on (the node itself for
	// KindNode); empty outside the cluster or when unknown.
	Node string
}
