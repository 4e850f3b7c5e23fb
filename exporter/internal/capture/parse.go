package capture

import (
	"encoding/binary"
	"net/netip"

	"github.com/podflow/podflow/exporter/internal/flow"
)

// Netlink, nfnetlink_log and ctnetlink constants from the kernel's UAPI
// headers (linux/netlink.h, linux/netfilter/nfnetlink_log.h,
// linux/netfilter/nfnetlink_conntrack.h). go-nflog keeps its own copies
// unexported, so they are repeated here.
const (
	nlmsgHdrLen  = 16
	nlaHdrLen    = 4
	nfgenHdrLen  = 4
	nlmsgError   = 2
	nlmsgDone    = 3
	nlaTypeMask  = 0x3fff            // without NLA_F_NESTED and NLA_F_NET_BYTEORDER
	nfnlSubsysUL = 4                 // NFNL_SUBSYS_ULOG
	msgPacket    = nfnlSubsysUL << 8 // | NFULNL_MSG_PACKET, which is 0
	msgConfig    = nfnlSubsysUL<<8 | 1

	nfulaPacketHdr = 1
	nfulaPayload   = 9
	nfulaPrefix    = 10
	nfulaSeq       = 12
	nfulaCT        = 18
	nfulaCTInfo    = 19

	ctaTupleOrig  = 1
	ctaTupleIP    = 1
	ctaTupleProto = 2
	ctaIPv4Src    = 1
	ctaIPv4Dst    = 2
	ctaIPv6Src    = 3
	ctaIPv6Dst    = 4
	ctaProtoSrc   = 2
	ctaProtoDst   = 3

	hookLocalIn = 1 // NF_INET_LOCAL_IN
)

// parser walks the netlink messages of one read without allocating and
// hands each logged packet over as a reused flow.Record.
type parser struct {
	rec flow.Record

	// Sequence tracking: NFULA_SEQ counts the messages of the group's
	// instance; a jump means the kernel or the socket lost some.
	haveSeq bool
	nextSeq uint32

	// Counters, owned by the reader goroutine and published by the
	// reader.
	received, lost, malformed uint64

	// The acknowledgement the reader waits for while configuring.
	wantSeq  uint32
	ackSeen  bool
	ackErrno int32
}

func align4(n int) int { return (n + 3) &^ 3 }

// parse walks one buffer of netlink messages. A message whose length is
// impossible ends the walk, since nothing after it can be trusted.
func (p *parser) parse(b []byte, h Handler) {
	for len(b) >= nlmsgHdrLen {
		n := int(binary.NativeEndian.Uint32(b[0:4]))
		if n < nlmsgHdrLen || n > len(b) {
			p.malformed++
			return
		}
		typ := binary.NativeEndian.Uint16(b[4:6])
		seq := binary.NativeEndian.Uint32(b[8:12])
		msg := b[nlmsgHdrLen:n]
		switch typ {
		case msgPacket:
			p.packet(msg, h)
		case nlmsgError:
			if len(msg) >= 4 && seq == p.wantSeq && !p.ackSeen {
				p.ackSeen = true
				p.ackErrno = -int32(binary.NativeEndian.Uint32(msg[0:4])) //nolint:gosec // the kernel's int error, negative errno
			}
		case nlmsgDone:
		}
		next := align4(n)
		if next >= len(b) {
			return
		}
		b = b[next:]
	}
	if len(b) > 0 {
		p.malformed++
	}
}

// packet reads one NFULNL_MSG_PACKET: nfgenmsg, then attributes.
func (p *parser) packet(msg []byte, h Handler) {
	if len(msg) < nfgenHdrLen {
		p.malformed++
		return
	}
	rec := &p.rec
	*rec = flow.Record{Family: msg[0], Hook: flow.HookPostrouting}
	var (
		seq     uint32
		haveSeq bool
		payload bool
		ctInfo  bool  // NFULA_CT_INFO seen: the glue's state wins
		fromLog uint8 // the state the log prefix names, noState for none
		dnat    bool  // the log prefix carries the DNAT flag
	)
	fromLog = noState
	attrs := msg[nfgenHdrLen:]
	for len(attrs) >= nlaHdrLen {
		l := int(binary.NativeEndian.Uint16(attrs[0:2]))
		if l < nlaHdrLen || l > len(attrs) {
			p.malformed++
			return
		}
		typ := binary.NativeEndian.Uint16(attrs[2:4]) & nlaTypeMask
		v := attrs[nlaHdrLen:l]
		switch typ {
		case nfulaPacketHdr:
			if len(v) >= 3 && v[2] == hookLocalIn {
				rec.Hook = flow.HookInput
			}
		case nfulaPayload:
			rec.Payload = v
			payload = true
		case nfulaSeq:
			if len(v) >= 4 {
				seq, haveSeq = binary.BigEndian.Uint32(v), true
			}
		case nfulaCT:
			if !parseCT(v, &rec.CT) {
				p.malformed++
				return
			}
		case nfulaCTInfo:
			if len(v) >= 4 {
				rec.CT.Info = v[3] // a big-endian ip_conntrack_info, below 8
				ctInfo = true
			}
		case nfulaPrefix:
			fromLog, dnat = prefixState(v)
			rec.PreDNAT = isPreDNAT(v)
		}
		next := align4(l)
		if next >= len(attrs) {
			break
		}
		attrs = attrs[next:]
	}
	if haveSeq {
		if p.haveSeq && seq != p.nextSeq {
			// uint32 arithmetic keeps counting across the wrap; a
			// sequence that went backwards means a new instance.
			if gap := seq - p.nextSeq; gap < 1<<31 {
				p.lost += uint64(gap)
			}
		}
		p.haveSeq, p.nextSeq = true, seq+1
	}
	if !payload {
		p.malformed++
		return
	}
	if !ctInfo && fromLog != noState {
		// No conntrack glue in this kernel: the state and direction
		// come from the log rule that matched, without the original
		// tuple.
		rec.CT.Present, rec.CT.Info = true, fromLog
	}
	rec.CT.DNAT = dnat && rec.CT.Present
	p.received++
	h.Handle(rec)
}

// noState marks a log prefix that names no conntrack state.
const noState = 0xff

// prefixState maps the NFULA_PREFIX of podflow's log rules (a
// NUL-terminated string: "n", "o", "r" or "u", then flags, see
// nft.PrefixNew and the others) to the ip_conntrack_info it stands for:
// NEW, ESTABLISHED in the original direction (RELATED included),
// ESTABLISHED_REPLY (RELATED_REPLY included); and whether the DNAT flag
// (nft.FlagDNAT) follows. Untracked packets, and prefixes of other rules
// logging to the group, give noState.
func prefixState(v []byte) (state uint8, dnat bool) {
	end := 0
	for end < len(v) && v[end] != 0 {
		end++
	}
	if end == 0 || end > 2 {
		return noState, false
	}
	if end == 2 {
		if v[1] != 'd' {
			return noState, false
		}
		dnat = true
	}
	switch v[0] {
	case 'n':
		return flow.CTNew, dnat
	case 'o':
		return flow.CTEstablished, dnat
	case 'r':
		return flow.CTEstablishedReply, dnat
	}
	return noState, false
}

// isPreDNAT reports the prefix of the rule that logs a connection's first
// packet before destination NAT ("p", nft.PrefixPreDNAT).
func isPreDNAT(v []byte) bool {
	return len(v) >= 1 && v[0] == 'p' && (len(v) == 1 || v[1] == 0)
}

// parseCT reads the original tuple from NFULA_CT's nested ctnetlink
// attributes. It reports false on a malformed nest.
func parseCT(b []byte, ct *flow.Conntrack) bool {
	ok := walk(b, func(typ uint16, v []byte) bool {
		if typ != ctaTupleOrig {
			return true
		}
		return walk(v, func(typ uint16, v []byte) bool {
			switch typ {
			case ctaTupleIP:
				return walk(v, func(typ uint16, v []byte) bool {
					switch {
					case (typ == ctaIPv4Src || typ == ctaIPv4Dst) && len(v) >= 4:
						a := netip.AddrFrom4([4]byte(v[:4]))
						if typ == ctaIPv4Src {
							ct.OrigSrc = a
						} else {
							ct.OrigDst = a
						}
					case (typ == ctaIPv6Src || typ == ctaIPv6Dst) && len(v) >= 16:
						a := netip.AddrFrom16([16]byte(v[:16]))
						if typ == ctaIPv6Src {
							ct.OrigSrc = a
						} else {
							ct.OrigDst = a
						}
					}
					return true
				})
			case ctaTupleProto:
				return walk(v, func(typ uint16, v []byte) bool {
					if len(v) >= 2 {
						switch typ {
						case ctaProtoSrc:
							ct.OrigSrcPort = binary.BigEndian.Uint16(v)
						case ctaProtoDst:
							ct.OrigDstPort = binary.BigEndian.Uint16(v)
						}
					}
					return true
				})
			}
			return true
		})
	})
	ct.Present = ok && ct.OrigSrc.IsValid() && ct.OrigDst.IsValid()
	return ok
}

// walk calls fn for each attribute in b and reports false when b is not a
// well-formed attribute list or fn returned false.
func walk(b []byte, fn func(typ uint16, v []byte) bool) bool {
	for len(b) >= nlaHdrLen {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		if l < nlaHdrLen || l > len(b) {
			return false
		}
		if !fn(binary.NativeEndian.Uint16(b[2:4])&nlaTypeMask, b[nlaHdrLen:l]) {
			return false
		}
		next := align4(l)
		if next >= len(b) {
			return true
		}
		b = b[next:]
	}
	return len(b) == 0
}
