package flow

// Protocol is an IP protocol number.
type Protocol uint8

// The protocols podflow decodes.
const (
	ProtoICMP   Protocol = 1
	ProtoTCP    Protocol = 6
	ProtoUDP    Protocol = 17
	ProtoICMPv6 Protocol = 58
	ProtoSCTP   Protocol = 132
	// ProtoOther stands for every protocol the protocol label does not
	// name. 255 is reserved (RFC 5237) and never seen on the wire.
	ProtoOther Protocol = 255
)

// String returns the label value of the protocol. The names of the
// transport protocols are the ones Kubernetes uses in Service ports.
func (p Protocol) String() string {
	switch p {
	case ProtoTCP:
		return "TCP"
	case ProtoUDP:
		return "UDP"
	case ProtoSCTP:
		return "SCTP"
	case ProtoICMP:
		return "ICMP"
	case ProtoICMPv6:
		return "ICMPv6"
	}
	return "other"
}

// Label returns the protocol as its label tells it: a named protocol
// itself, any other ProtoOther. A series key holds this, never the number
// from the packet, so that GRE and IPv6-in-IPv4 between the same
// endpoints are one series, as they are one label set.
func (p Protocol) Label() Protocol {
	switch p {
	case ProtoTCP, ProtoUDP, ProtoSCTP, ProtoICMP, ProtoICMPv6:
		return p
	}
	return ProtoOther
}

// HasPorts reports whether the protocol carries ports.
func (p Protocol) HasPorts() bool {
	return p == ProtoTCP || p == ProtoUDP || p == ProtoSCTP
}

// Direction tells which way a packet goes relative to its connection.
type Direction uint8

// Directions, as in the direction label.
const (
	// Original is from the connection's initiator to its responder.
	Original Direction = iota
	// Reply is the way back.
	Reply
)

// String returns the label value of the direction.
func (d Direction) String() string {
	if d == Reply {
		return "reply"
	}
	return "original"
}
