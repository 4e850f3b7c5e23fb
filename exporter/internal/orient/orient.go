// Package orient turns a decoded packet into a flow of its connection:
// the source is the connection's initiator, the destination its responder,
// the port the responder's port, and the direction says which way this
// packet goes.
//
// The evidence, strongest first:
//
//  1. Conntrack, when capture delivered it (Present, and a state from
//     ESTABLISHED to RELATED_REPLY): from NFLOG's conntrack attributes
//     where the kernel has the glue, else from the prefix of the log rule
//     that matched, which gives the state and direction but no original
//     tuple (OrigSrc and OrigDst are zero, so no Service). A packet in
//     the reply direction goes from the responder to the initiator.
//     podflow's chains run after destination NAT and before source NAT,
//     so in both directions the packet carries the translated backend
//     address, and in the reply direction its source is still the
//     responding pod. Service is the
//     conntrack original destination when it differs from the responder:
//     the ClusterIP (or other pre-DNAT address) the initiator addressed.
//     NewConn is set for a packet in state NEW. Conntrack keeps a
//     connection NEW until the first reply, so retransmitted SYNs and UDP
//     datagrams that are never answered each count as a connection.
//  2. Without conntrack, TCP flags: a SYN without ACK comes from the
//     initiator (and opens a connection: NewConn), a SYN with ACK from the
//     responder.
//  3. ICMP and ICMPv6 queries: an echo request (and the timestamp,
//     information and address mask requests, ICMPv6 node information
//     query) comes from the initiator, the matching reply from the
//     responder. Errors and every other type are oriented from their
//     sender. The port is always 0.
//  4. Otherwise, for TCP, UDP and SCTP, the ports: the lower port is the
//     responder's. This puts a well-known port (below 1024) and a port
//     below the ephemeral range (32768 and up) on the responder's side
//     whenever one side has one. Equal ports, and protocols without ports,
//     fall back to the addresses: the lower address is the responder.
//     The rule depends only on the unordered pair of endpoints, so a
//     packet and its reply always give the same initiator, responder and
//     port, in opposite directions.
//
// Without conntrack, only a TCP SYN counts as a new connection.
package orient

import "github.com/podflow/podflow/exporter/internal/flow"

// ICMP and ICMPv6 types that answer a query.
const (
	icmpEchoReply      = 0
	icmpTimestampReply = 14
	icmpInfoReply      = 16
	icmpMaskReply      = 18
	icmp6EchoReply     = 129
	icmp6NodeInfoReply = 140
)

// Orient fills f from p, overwriting all of f.
func Orient(p *flow.Packet, f *flow.Flow) {
	*f = flow.Flow{Proto: p.Proto, Bytes: p.Length, Hook: p.Hook}
	if ct := &p.CT; ct.Present && ct.Info <= flow.CTRelatedReply {
		orientAs(p, f, ct.Reply())
		f.NewConn = ct.Info == flow.CTNew
		f.DNAT = ct.DNAT
		if svc := ct.OrigDst.Unmap(); svc.IsValid() && svc != f.Responder.Unmap() {
			f.Service, f.ServicePort = svc, ct.OrigDstPort
		}
		return
	}
	orientAs(p, f, isReply(p))
	f.NewConn = p.Proto == flow.ProtoTCP && p.TCPFlags&(flow.TCPSyn|flow.TCPAck) == flow.TCPSyn
}

// orientAs sets the endpoints and port for a packet that travels in the
// reply direction (reply) or the original one.
func orientAs(p *flow.Packet, f *flow.Flow, reply bool) {
	if reply {
		f.Dir = flow.Reply
		f.Initiator, f.Responder, f.Port = p.Dst, p.Src, p.SrcPort
		return
	}
	f.Dir = flow.Original
	f.Initiator, f.Responder, f.Port = p.Src, p.Dst, p.DstPort
}

// isReply guesses the direction of a packet without conntrack.
func isReply(p *flow.Packet) bool {
	switch p.Proto {
	case flow.ProtoTCP:
		if p.TCPFlags&flow.TCPSyn != 0 {
			return p.TCPFlags&flow.TCPAck != 0
		}
		return byPorts(p)
	case flow.ProtoUDP, flow.ProtoSCTP:
		return byPorts(p)
	case flow.ProtoICMP:
		switch p.ICMPType {
		case icmpEchoReply, icmpTimestampReply, icmpInfoReply, icmpMaskReply:
			return true
		}
		return false
	case flow.ProtoICMPv6:
		return p.ICMPType == icmp6EchoReply || p.ICMPType == icmp6NodeInfoReply
	}
	return byAddrs(p)
}

// byPorts reports whether the source holds the responder's port: the
// lower one.
func byPorts(p *flow.Packet) bool {
	if p.SrcPort != p.DstPort {
		return p.SrcPort < p.DstPort
	}
	return byAddrs(p)
}

// byAddrs reports whether the source is the responder: the lower address.
// A packet to itself is original.
func byAddrs(p *flow.Packet) bool {
	return p.Src.Compare(p.Dst) < 0
}
