package flow

import "net/netip"

// Conntrack states of a packet (enum ip_conntrack_info in the kernel), as
// NFLOG reports them in NFULA_CT_INFO.
const (
	CTEstablished      uint8 = 0
	CTRelated          uint8 = 1
	CTNew              uint8 = 2
	CTEstablishedReply uint8 = 3
	CTRelatedReply     uint8 = 4
)

// Conntrack is what the kernel's connection tracker knows of a packet's
// connection, when NFLOG was asked for it.
type Conntrack struct {
	// Present is false when the packet came without conntrack data.
	Present bool
	// Info is the packet's ip_conntrack_info (CTNew, CTEstablishedReply...).
	Info uint8
	// The connection's original tuple: the initiator's view, before any NAT.
	OrigSrc, OrigDst         netip.Addr
	OrigSrcPort, OrigDstPort uint16
	// DNAT is set when this node translated the connection's destination
	// (a Service's ClusterIP, node port or load balancer address): this
	// node then saw the initiator before any source NAT hid it.
	DNAT bool
}

// Reply reports whether the packet travels in the connection's reply
// direction.
func (c *Conntrack) Reply() bool { return c.Info >= CTEstablishedReply }

// Hook says where on the node a packet was seen.
type Hook uint8

// Hooks podflow logs from.
const (
	HookPostrouting Hook = iota
	HookInput
)

// Record is one logged packet as capture hands it over: the first bytes
// of its L3 header and what the kernel said about it. Payload points into
// capture's read buffer and is valid only during the call that received it.
type Record struct {
	Payload []byte
	// Family is the L3 protocol family from the NFLOG message
	// (unix.AF_INET or unix.AF_INET6).
	Family uint8
	Hook   Hook
	CT     Conntrack
	// PreDNAT marks the first packet of a connection logged before
	// destination NAT: what the client dialled, not traffic to count.
	PreDNAT bool
}

// Packet is a decoded packet: the fields of its headers that podflow uses.
type Packet struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Proto            Protocol
	// Length is the L3 length from the IP header (IPv4 total length, IPv6
	// payload length plus the fixed header), never the captured length.
	Length uint32
	// TCPFlags holds the TCP flag byte (FIN 0x01, SYN 0x02, RST 0x04,
	// PSH 0x08, ACK 0x10); zero for other protocols.
	TCPFlags uint8
	// ICMPType is the ICMP or ICMPv6 type; zero for other protocols.
	ICMPType uint8
	Hook     Hook
	CT       Conntrack
}

// TCP flag bits.
const (
	TCPFin uint8 = 0x01
	TCPSyn uint8 = 0x02
	TCPRst uint8 = 0x04
	TCPAck uint8 = 0x10
)
