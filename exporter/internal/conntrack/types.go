package conntrack

import "net/netip"

// Tuple is one direction of a connection as conntrack holds it. Ports are
// zero for protocols without them (ICMP, ICMPv6, GRE...).
type Tuple struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
}

// Conntrack status bits (IPS_* in linux/netfilter/nf_conntrack_common.h)
// that the consumer needs to read a Conn's NAT.
const (
	StatusSrcNAT uint32 = 1 << 4 // IPS_SRC_NAT: the original source is rewritten
	StatusDstNAT uint32 = 1 << 5 // IPS_DST_NAT: the original destination is rewritten
)

// Conn is a connection. Orig is what the initiator sent (before any NAT),
// Reply what the responder sends back: after DNAT, Reply.Src is the real
// destination; after SNAT, Reply.Dst is the translated source.
type Conn struct {
	ID     uint32
	Proto  uint8
	Orig   Tuple
	Reply  Tuple
	Status uint32 // IPS_* bits, see StatusSrcNAT and StatusDstNAT
	Zone   uint16
}

// Delta is what a connection sent since it was last reported: Orig*
// counts the initiator's packets and their L3 bytes, Reply* the
// responder's.
type Delta struct {
	Conn
	OrigPackets, OrigBytes, ReplyPackets, ReplyBytes uint64
	// Final is true when the connection ended (a destroy event): nothing
	// more will be reported for it. A final delta is emitted even when it
	// is zero; other deltas never are.
	Final bool
}

// sample is a connection with its counters as the kernel reported them,
// totals since the connection began.
type sample struct {
	Conn
	origPackets, origBytes, replyPackets, replyBytes uint64
}

// key identifies a connection across dumps and events. The kernel reuses
// IDs, so the original tuple, protocol and zone are part of it. Addresses
// are held as 16 bytes: a key has no pointer, so the tracker's map hashes
// and compares it as plain memory.
type key struct {
	src, dst         [16]byte
	srcPort, dstPort uint16
	id               uint32
	zone             uint16
	proto            uint8
	v4               bool
}

func (c *Conn) key() key {
	return key{
		src: c.Orig.Src.As16(), dst: c.Orig.Dst.As16(),
		srcPort: c.Orig.SrcPort, dstPort: c.Orig.DstPort,
		id: c.ID, zone: c.Zone, proto: c.Proto, v4: c.Orig.Src.Is4(),
	}
}
