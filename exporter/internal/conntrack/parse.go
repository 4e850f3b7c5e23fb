package conntrack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// ctnetlink's wire format (linux/netfilter/nfnetlink_conntrack.h), read
// without allocating: a destroy event or a dump entry is one netlink
// message, a struct nfgenmsg, then nested attributes.
const (
	nlmsgHdrLen = 16
	nfgenHdrLen = 4
	nlaHdrLen   = 4

	nlaTypeMask = 0x3fff // without NLA_F_NESTED and NLA_F_NET_BYTEORDER

	subsysCTNetlink = 1 // NFNL_SUBSYS_CTNETLINK
	msgCTNew        = 0 // IPCTNL_MSG_CT_NEW: a dump entry (or a new/update event)
	msgCTGet        = 1 // IPCTNL_MSG_CT_GET
	msgCTDelete     = 2 // IPCTNL_MSG_CT_DELETE: a destroy event

	ctaTupleOrig     = 1
	ctaTupleReply    = 2
	ctaStatus        = 3
	ctaCountersOrig  = 9
	ctaCountersReply = 10
	ctaID            = 12
	ctaZone          = 18

	ctaTupleIP    = 1
	ctaTupleProto = 2

	ctaIPv4Src = 1
	ctaIPv4Dst = 2
	ctaIPv6Src = 3
	ctaIPv6Dst = 4

	ctaProtoNum     = 1
	ctaProtoSrcPort = 2
	ctaProtoDstPort = 3

	ctaCountersPackets   = 1 // 64 bits
	ctaCountersBytes     = 2 // 64 bits
	ctaCountersPackets32 = 3 // old kernels
	ctaCountersBytes32   = 4
)

var errMalformed = errors.New("malformed ctnetlink message")

// attrs iterates over the netlink attributes in b.
type attrs struct {
	b   []byte
	typ uint16
	val []byte
	err error
}

func (a *attrs) next() bool {
	if len(a.b) < nlaHdrLen {
		if len(a.b) != 0 {
			a.err = errMalformed
		}
		return false
	}
	n := int(binary.NativeEndian.Uint16(a.b[0:2]))
	if n < nlaHdrLen || n > len(a.b) {
		a.err = errMalformed
		return false
	}
	a.typ = binary.NativeEndian.Uint16(a.b[2:4]) & nlaTypeMask
	a.val = a.b[nlaHdrLen:n]
	adv := (n + 3) &^ 3
	if adv > len(a.b) {
		adv = len(a.b)
	}
	a.b = a.b[adv:]
	return true
}

// parseConn decodes the attributes of one ctnetlink conntrack message
// (after its nfgenmsg) into s. Attributes podflow does not use are
// skipped; absent counters (accounting off) read as zero.
func parseConn(b []byte, s *sample) error {
	*s = sample{}
	a := attrs{b: b}
	var hasOrig bool
	for a.next() {
		var err error
		switch a.typ {
		case ctaTupleOrig:
			s.Proto, err = parseTuple(a.val, &s.Orig)
			hasOrig = true
		case ctaTupleReply:
			_, err = parseTuple(a.val, &s.Reply)
		case ctaStatus:
			s.Status, err = be32(a.val)
		case ctaID:
			s.ID, err = be32(a.val)
		case ctaZone:
			s.Zone, err = be16(a.val)
		case ctaCountersOrig:
			s.origPackets, s.origBytes, err = parseCounters(a.val)
		case ctaCountersReply:
			s.replyPackets, s.replyBytes, err = parseCounters(a.val)
		}
		if err != nil {
			return err
		}
	}
	if a.err != nil {
		return a.err
	}
	if !hasOrig || !s.Orig.Src.IsValid() || !s.Orig.Dst.IsValid() {
		return fmt.Errorf("%w: no original tuple", errMalformed)
	}
	return nil
}

// parseTuple decodes a CTA_TUPLE_* nest and returns its protocol.
func parseTuple(b []byte, t *Tuple) (proto uint8, err error) {
	a := attrs{b: b}
	for a.next() {
		switch a.typ {
		case ctaTupleIP:
			ip := attrs{b: a.val}
			for ip.next() {
				switch ip.typ {
				case ctaIPv4Src, ctaIPv6Src:
					t.Src, err = addr(ip.val)
				case ctaIPv4Dst, ctaIPv6Dst:
					t.Dst, err = addr(ip.val)
				}
				if err != nil {
					return 0, err
				}
			}
			if ip.err != nil {
				return 0, ip.err
			}
		case ctaTupleProto:
			p := attrs{b: a.val}
			for p.next() {
				switch p.typ {
				case ctaProtoNum:
					if len(p.val) < 1 {
						return 0, errMalformed
					}
					proto = p.val[0]
				case ctaProtoSrcPort:
					t.SrcPort, err = be16(p.val)
				case ctaProtoDstPort:
					t.DstPort, err = be16(p.val)
				}
				if err != nil {
					return 0, err
				}
			}
			if p.err != nil {
				return 0, p.err
			}
		}
	}
	return proto, a.err
}

func parseCounters(b []byte) (packets, bytes uint64, err error) {
	a := attrs{b: b}
	for a.next() {
		switch a.typ {
		case ctaCountersPackets, ctaCountersPackets32:
			packets, err = beUint(a.val)
		case ctaCountersBytes, ctaCountersBytes32:
			bytes, err = beUint(a.val)
		}
		if err != nil {
			return 0, 0, err
		}
	}
	return packets, bytes, a.err
}

func addr(b []byte) (netip.Addr, error) {
	switch len(b) {
	case 4:
		return netip.AddrFrom4([4]byte(b)), nil
	case 16:
		return netip.AddrFrom16([16]byte(b)), nil
	}
	return netip.Addr{}, errMalformed
}

func be16(b []byte) (uint16, error) {
	if len(b) < 2 {
		return 0, errMalformed
	}
	return binary.BigEndian.Uint16(b), nil
}

func be32(b []byte) (uint32, error) {
	if len(b) < 4 {
		return 0, errMalformed
	}
	return binary.BigEndian.Uint32(b), nil
}

func beUint(b []byte) (uint64, error) {
	switch len(b) {
	case 4:
		return uint64(binary.BigEndian.Uint32(b)), nil
	case 8:
		return binary.BigEndian.Uint64(b), nil
	}
	return 0, errMalformed
}

// message is one netlink message of a datagram.
type message struct {
	typ, flags uint16
	seq        uint32
	payload    []byte // after the netlink header
}

// messages iterates over the netlink messages in a datagram.
type messages struct {
	b   []byte
	m   message
	err error
}

func (ms *messages) next() bool {
	if len(ms.b) < nlmsgHdrLen {
		if len(ms.b) != 0 {
			ms.err = errMalformed
		}
		return false
	}
	n := int(binary.NativeEndian.Uint32(ms.b[0:4]))
	if n < nlmsgHdrLen || n > len(ms.b) {
		ms.err = errMalformed
		return false
	}
	ms.m = message{
		typ:     binary.NativeEndian.Uint16(ms.b[4:6]),
		flags:   binary.NativeEndian.Uint16(ms.b[6:8]),
		seq:     binary.NativeEndian.Uint32(ms.b[8:12]),
		payload: ms.b[nlmsgHdrLen:n],
	}
	adv := (n + 3) &^ 3
	if adv > len(ms.b) {
		adv = len(ms.b)
	}
	ms.b = ms.b[adv:]
	return true
}

// conntrackMsg reports whether m is a conntrack message of type msg and
// returns its attributes.
func (m *message) conntrack(msg uint16) ([]byte, bool) {
	if m.typ != subsysCTNetlink<<8|msg || len(m.payload) < nfgenHdrLen {
		return nil, false
	}
	return m.payload[nfgenHdrLen:], true
}
