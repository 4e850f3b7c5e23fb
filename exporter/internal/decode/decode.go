// Package decode turns a logged packet's header bytes into the fields
// podflow counts: addresses, protocol, ports, TCP flags, ICMP type and the
// packet's L3 length.
//
// Input comes from NFLOG with a header-only snaplen (128 bytes by
// default), so the payload is usually cut short: the length counted is
// always the one the IP header states (IPv4 total length, IPv6 40 plus
// the payload length), never the number of captured bytes.
//
// What is decoded:
//
//   - IPv4 with options (IHL), IPv6 with its extension header chain:
//     hop-by-hop, routing, fragment, destination options, AH, and the
//     other headers of the uniform format (mobility, HIP, shim6, the
//     experimental 253 and 254). ESP and "no next header" end the chain
//     and are reported as the protocol. An IPv4 packet carrying AH is
//     decoded the same way. The addresses are the ones of the fixed IP
//     header: a routing header's final destination is not substituted.
//   - TCP (ports, flag byte), UDP and SCTP (ports), ICMP and ICMPv6
//     (type). Only the bytes podflow reads must be present: 14 for TCP
//     (up to the flag byte), 4 for UDP and SCTP, 1 for ICMP.
//   - Any other transport protocol is decoded as OK with its protocol
//     number and ports 0: its traffic is still counted between the right
//     endpoints; only broken headers are errors.
//
// A non-first fragment carries no transport header. It is not counted in
// the pair counters but reported as Fragment: attributing it without ports
// would create a series on port 0 that no connection has and would raise
// "new port" alerts. On a node with conntrack loaded netfilter reassembles
// fragments before podflow's chains, so the reason stays near zero there.
// A first fragment (offset 0) holds the transport header and is decoded.
//
// GSO packets above 64 KiB (BIG TCP) carry a zero length field. An IPv6
// Jumbo Payload option, where the kernel adds one, gives the exact length.
// Otherwise a TCP packet is decoded with the least length a zero field
// can stand for (65536 bytes of IPv4 packet, or of IPv6 payload) and
// BigTCP set: NFLOG reports no length of its own beyond the captured
// bytes, so its true length is unknown, but its endpoints are not and it
// is counted. A zero length field on any other protocol is not BIG TCP
// and is reported as Jumbo.
//
// HeaderLen, the bytes each segment of a segmentation offload
// super-packet repeats, is the IP headers plus the TCP header with its
// options, or plus the UDP header; the IP headers alone otherwise.
//
// Decode never allocates and never panics on any input (fuzzed).
package decode

import (
	"encoding/binary"
	"math"
	"net/netip"

	"github.com/podflow/podflow/exporter/internal/flow"
)

// Protocol families as NFLOG reports them (unix.AF_INET, unix.AF_INET6
// on Linux), spelled out so that the package builds on every platform.
const (
	afInet  = 2
	afInet6 = 10
)

// IP protocol numbers of the headers walked before the transport header.
const (
	ipv6HopByHop = 0
	ipv6Routing  = 43
	ipv6Fragment = 44
	ipAH         = 51
	ipv6DstOpts  = 60
	ipv6Mobility = 135
	ipv6HIP      = 139
	ipv6Shim6    = 140
	ipv6Exp1     = 253
	ipv6Exp2     = 254
)

const (
	ipv4MinHeader = 20
	ipv6Header    = 40
	// bigTCPMin is the least length a zero IPv4 total length or IPv6
	// payload length stands for.
	bigTCPMin = 1 << 16
	// optJumbo is the IPv6 Jumbo Payload option type (RFC 2675).
	optJumbo = 0xc2
)

// Decode decodes rec's payload into p, overwriting all of p. It copies
// rec.CT and the interfaces into p. p is meaningful only when the result is OK.
func Decode(rec *flow.Record, p *flow.Packet) Reason {
	*p = flow.Packet{CT: rec.CT, InIf: rec.InIf, OutIf: rec.OutIf}
	b := rec.Payload
	if len(b) == 0 {
		return Truncated
	}
	switch version := b[0] >> 4; {
	case version == 4 && rec.Family == afInet:
		return decode4(b, p)
	case version == 6 && rec.Family == afInet6:
		return decode6(b, p)
	}
	return BadVersion
}

func decode4(b []byte, p *flow.Packet) Reason {
	if len(b) < ipv4MinHeader {
		return Truncated
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < ipv4MinHeader {
		return BadHeaderLength
	}
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if total == 0 {
		if flow.Protocol(b[9]) != flow.ProtoTCP {
			return Jumbo
		}
		total, p.BigTCP = bigTCPMin, true
	}
	if total < ihl {
		return BadLength
	}
	if len(b) < ihl {
		return Truncated
	}
	p.Src = netip.AddrFrom4([4]byte(b[12:16]))
	p.Dst = netip.AddrFrom4([4]byte(b[16:20]))
	p.Proto = flow.Protocol(b[9])
	p.Length = uint32(total)
	// The fragment offset is the low 13 bits; the flags above it do not
	// matter: a first fragment (offset 0, more fragments set) is decoded.
	if binary.BigEndian.Uint16(b[6:8])&0x1fff != 0 {
		return Fragment
	}
	off := ihl
	if p.Proto == ipAH {
		if r := need(b, off, 2, total); r != OK {
			return r
		}
		p.Proto = flow.Protocol(b[off])
		off += (int(b[off+1]) + 2) * 4
	}
	return transport(b, off, total, p)
}

func decode6(b []byte, p *flow.Packet) Reason {
	if len(b) < ipv6Header {
		return Truncated
	}
	p.Src = netip.AddrFrom16([16]byte(b[8:24]))
	p.Dst = netip.AddrFrom16([16]byte(b[24:40]))
	length := ipv6Header + uint32(binary.BigEndian.Uint16(b[4:6]))
	if length == ipv6Header {
		var r Reason
		if length, r = jumboLength(b, p); r != OK {
			return r
		}
	}
	p.Length = length
	l3 := int(length)
	next := b[6]
	off := ipv6Header
	// Every header is at least 8 bytes long, so the walk ends within the
	// captured bytes after a bounded number of steps.
	for {
		switch next {
		case ipv6HopByHop, ipv6Routing, ipv6DstOpts, ipv6Mobility, ipv6HIP, ipv6Shim6, ipv6Exp1, ipv6Exp2:
			if r := need(b, off, 2, l3); r != OK {
				return r
			}
			next = b[off]
			off += (int(b[off+1]) + 1) * 8
		case ipAH:
			if r := need(b, off, 2, l3); r != OK {
				return r
			}
			next = b[off]
			off += (int(b[off+1]) + 2) * 4
		case ipv6Fragment:
			if r := need(b, off, 8, l3); r != OK {
				return r
			}
			next = b[off]
			if binary.BigEndian.Uint16(b[off+2:off+4])&^7 != 0 {
				p.Proto = flow.Protocol(next)
				return Fragment
			}
			off += 8
		default:
			p.Proto = flow.Protocol(next)
			return transport(b, off, l3, p)
		}
	}
}

// jumboLength returns the L3 length of an IPv6 packet whose payload length
// is zero: 40 plus the Jumbo Payload option of its hop-by-hop header, or
// for BIG TCP without one, the least length it can have.
func jumboLength(b []byte, p *flow.Packet) (uint32, Reason) {
	if b[6] == byte(flow.ProtoTCP) {
		p.BigTCP = true
		return ipv6Header + bigTCPMin, OK
	}
	if b[6] != ipv6HopByHop {
		return 0, Jumbo
	}
	if len(b) < ipv6Header+2 {
		return 0, Truncated
	}
	end := ipv6Header + (int(b[ipv6Header+1])+1)*8
	if len(b) < end {
		return 0, Truncated
	}
	for i := ipv6Header + 2; i < end; {
		typ := b[i]
		if typ == 0 { // Pad1 has no length byte.
			i++
			continue
		}
		if i+2 > end {
			break
		}
		n := int(b[i+1])
		if typ == optJumbo && n == 4 && i+6 <= end {
			jumbo := binary.BigEndian.Uint32(b[i+2 : i+6])
			// RFC 2675: a jumbogram is longer than 65535 bytes.
			if jumbo <= math.MaxUint16 || jumbo > math.MaxUint32-ipv6Header {
				return 0, BadLength
			}
			return ipv6Header + jumbo, OK
		}
		i += 2 + n
	}
	return 0, Jumbo
}

// transport reads the transport header at off. l3 is the IP packet's
// length, which may exceed the captured bytes.
func transport(b []byte, off, l3 int, p *flow.Packet) Reason {
	p.HeaderLen = uint16(min(off, l3)) //nolint:gosec // off is below the captured bytes, at most 64 KiB
	var n int
	switch p.Proto {
	case flow.ProtoTCP:
		n = 14 // through the flag byte
	case flow.ProtoUDP, flow.ProtoSCTP:
		n = 4
	case flow.ProtoICMP, flow.ProtoICMPv6:
		n = 1
	default:
		return OK
	}
	if r := need(b, off, n, l3); r != OK {
		return r
	}
	h := b[off : off+n]
	switch p.Proto {
	case flow.ProtoICMP, flow.ProtoICMPv6:
		p.ICMPType = h[0]
		return OK
	case flow.ProtoTCP:
		if h[12]>>4 < 5 {
			return BadHeaderLength
		}
		p.TCPFlags = h[13]
		p.HeaderLen = uint16(min(off+int(h[12]>>4)*4, l3)) //nolint:gosec // as above
	case flow.ProtoUDP:
		p.HeaderLen = uint16(min(off+8, l3)) //nolint:gosec // as above
	}
	p.SrcPort = binary.BigEndian.Uint16(h[0:2])
	p.DstPort = binary.BigEndian.Uint16(h[2:4])
	return OK
}

// need checks that n bytes at off lie inside the IP packet (l3 bytes) and
// inside the captured bytes.
func need(b []byte, off, n, l3 int) Reason {
	switch {
	case off+n > l3:
		return BadLength
	case off+n > len(b):
		return Truncated
	}
	return OK
}
