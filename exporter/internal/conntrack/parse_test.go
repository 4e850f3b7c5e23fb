package conntrack

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/mdlayher/netlink"
	ct "github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"
)

// The messages here are built the way the kernel's ctnetlink_fill_info
// lays them out (attribute types from nfnetlink_conntrack.h), and each is
// also read by ti-mo/conntrack as the reference decoder.

func nla(typ uint16, v []byte) []byte {
	b := binary.NativeEndian.AppendUint16(nil, uint16(nlaHdrLen+len(v))) //nolint:gosec // test attributes are small
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, v...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func nest(typ uint16, children ...[]byte) []byte {
	var v []byte
	for _, c := range children {
		v = append(v, c...)
	}
	return nla(typ|unix.NLA_F_NESTED, v)
}

func encTuple(typ uint16, proto uint8, t Tuple) []byte {
	src, dst := uint16(ctaIPv4Src), uint16(ctaIPv4Dst)
	if t.Src.Is6() {
		src, dst = ctaIPv6Src, ctaIPv6Dst
	}
	return nest(typ,
		nest(ctaTupleIP, nla(src, t.Src.AsSlice()), nla(dst, t.Dst.AsSlice())),
		nest(ctaTupleProto,
			nla(ctaProtoNum, []byte{proto}),
			nla(ctaProtoSrcPort, binary.BigEndian.AppendUint16(nil, t.SrcPort)),
			nla(ctaProtoDstPort, binary.BigEndian.AppendUint16(nil, t.DstPort))),
	)
}

// encMsg is the netlink message the kernel sends for s: a destroy event
// (msgCTDelete) or a dump entry (msgCTNew); noCounters as with
// accounting off.
func encMsg(s sample, msg uint16, noCounters bool) []byte {
	attrs := append(encTuple(ctaTupleOrig, s.Proto, s.Orig), encTuple(ctaTupleReply, s.Proto, s.Reply)...)
	if s.Zone != 0 {
		attrs = append(attrs, nla(ctaZone, binary.BigEndian.AppendUint16(nil, s.Zone))...)
	}
	if !noCounters {
		counters := func(typ uint16, p, b uint64) []byte {
			return nest(typ,
				nla(ctaCountersPackets, binary.BigEndian.AppendUint64(nil, p)),
				nla(ctaCountersBytes, binary.BigEndian.AppendUint64(nil, b)))
		}
		attrs = append(attrs, counters(ctaCountersOrig, s.origPackets, s.origBytes)...)
		attrs = append(attrs, counters(ctaCountersReply, s.replyPackets, s.replyBytes)...)
	}
	attrs = append(attrs, nla(ctaStatus, binary.BigEndian.AppendUint32(nil, s.Status))...)
	attrs = append(attrs, nla(ctaID, binary.BigEndian.AppendUint32(nil, s.ID))...)
	family := byte(unix.AF_INET)
	if s.Orig.Src.Is6() {
		family = unix.AF_INET6
	}
	n := nlmsgHdrLen + nfgenHdrLen + len(attrs)
	b := binary.NativeEndian.AppendUint32(nil, uint32(n)) //nolint:gosec // small
	b = binary.NativeEndian.AppendUint16(b, subsysCTNetlink<<8|msg)
	b = binary.NativeEndian.AppendUint16(b, 0)
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = append(b, family, unix.NFNETLINK_V0, 0, 0)
	return append(b, attrs...)
}

// viaLibrary decodes one message with ti-mo/conntrack.
func viaLibrary(t *testing.T, b []byte) (s sample, ok bool) {
	t.Helper()
	var m netlink.Message
	if err := m.UnmarshalBinary(b); err != nil {
		return s, false
	}
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	var ev ct.Event
	if err := ev.Unmarshal(m); err != nil || ev.Flow == nil {
		return s, false
	}
	return fromFlow(ev.Flow), true
}

// fromFlow is what podflow keeps of a ti-mo/conntrack Flow.
func fromFlow(f *ct.Flow) sample {
	tuple := func(t *ct.Tuple) Tuple {
		return Tuple{Src: t.IP.SourceAddress, Dst: t.IP.DestinationAddress, SrcPort: t.Proto.SourcePort, DstPort: t.Proto.DestinationPort}
	}
	return sample{
		Conn: Conn{
			ID: f.ID, Proto: f.TupleOrig.Proto.Protocol,
			Orig: tuple(&f.TupleOrig), Reply: tuple(&f.TupleReply),
			Status: uint32(f.Status), Zone: f.Zone,
		},
		origPackets: f.CountersOrig.Packets, origBytes: f.CountersOrig.Bytes,
		replyPackets: f.CountersReply.Packets, replyBytes: f.CountersReply.Bytes,
	}
}

func parseOne(b []byte) (sample, error) {
	var s sample
	ms := messages{b: b}
	if !ms.next() {
		return s, errMalformed
	}
	body, ok := ms.m.conntrack(msgCTDelete)
	if !ok {
		body, ok = ms.m.conntrack(msgCTNew)
	}
	if !ok {
		return s, errMalformed
	}
	return s, parseConn(body, &s)
}

func testSamples() []struct {
	name       string
	s          sample
	noCounters bool
} {
	v4 := conn(0xdeadbeef, 40000)
	v4.Status = StatusDstNAT | 0x8
	v4.Reply.Src = netip.MustParseAddr("10.244.1.7") // after DNAT
	v6 := Conn{
		ID: 7, Proto: 6, Zone: 3,
		Orig:  Tuple{Src: netip.MustParseAddr("fd00::1"), Dst: netip.MustParseAddr("fd00::2"), SrcPort: 51000, DstPort: 443},
		Reply: Tuple{Src: netip.MustParseAddr("fd00::2"), Dst: netip.MustParseAddr("fd00::1"), SrcPort: 443, DstPort: 51000},
	}
	return []struct {
		name       string
		s          sample
		noCounters bool
	}{
		{"ipv4 dnat", at(v4, 3, 180, 2, 1<<40), false},
		{"ipv6 zone", at(v6, 1<<33, 1<<50, 9, 900), false},
		{"accounting off", at(conn(5, 1), 0, 0, 0, 0), true},
	}
}

func TestParseConnMatchesLibrary(t *testing.T) {
	for _, tc := range testSamples() {
		t.Run(tc.name, func(t *testing.T) {
			for _, msg := range []uint16{msgCTDelete, msgCTNew} {
				b := encMsg(tc.s, msg, tc.noCounters)
				got, err := parseOne(b)
				if err != nil {
					t.Fatal(err)
				}
				if got != tc.s {
					t.Errorf("parsed %+v\nwant   %+v", got, tc.s)
				}
				lib, ok := viaLibrary(t, b)
				if !ok {
					t.Fatal("ti-mo/conntrack rejects the message")
				}
				if lib != got {
					t.Errorf("ti-mo/conntrack reads %+v\nparseConn reads   %+v", lib, got)
				}
			}
		})
	}
}

func TestParseConnRejectsTruncated(t *testing.T) {
	b := encMsg(testSamples()[0].s, msgCTDelete, false)
	for n := nlmsgHdrLen + nfgenHdrLen; n < len(b); n++ {
		c := append([]byte(nil), b[:n]...)
		binary.NativeEndian.PutUint32(c[0:4], uint32(n)) //nolint:gosec // small
		if s, err := parseOne(c); err == nil && s == testSamples()[0].s {
			t.Errorf("cut at %d of %d bytes: parsed whole", n, len(b))
		}
	}
}

// FuzzParseConn checks that no input panics the decoder and that, when
// both decoders accept a message, they read the same connection.
func FuzzParseConn(f *testing.F) {
	for _, tc := range testSamples() {
		f.Add(encMsg(tc.s, msgCTDelete, tc.noCounters))
		f.Add(encMsg(tc.s, msgCTNew, tc.noCounters))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := parseOne(b)
		if err != nil {
			return
		}
		if !smallTypes(b[min(len(b), nlmsgHdrLen+nfgenHdrLen):]) {
			return // ti-mo/conntrack reads attribute types as 8 bits
		}
		if lib, ok := viaLibrary(t, b); ok && lib != got {
			t.Errorf("ti-mo/conntrack reads %+v\nparseConn reads   %+v", lib, got)
		}
	})
}

// smallTypes reports whether every attribute type in b, nested ones
// included, fits in 8 bits, as all of ctnetlink's do.
func smallTypes(b []byte) bool {
	a := attrs{b: b}
	for a.next() {
		if a.typ > 0xff {
			return false
		}
		if len(a.val) >= nlaHdrLen && !smallTypes(a.val) {
			return false
		}
	}
	return true
}

func BenchmarkParseEvent(b *testing.B) {
	msg := encMsg(testSamples()[0].s, msgCTDelete, false)
	dst := make([]sample, 0, 1)
	b.ReportAllocs()
	for b.Loop() {
		ms := messages{b: msg}
		for ms.next() {
			body, _ := ms.m.conntrack(msgCTDelete)
			dst = append(dst[:0], sample{})
			if err := parseConn(body, &dst[0]); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkParseEventLibrary(b *testing.B) {
	msg := encMsg(testSamples()[0].s, msgCTDelete, false)
	var m netlink.Message
	if err := m.UnmarshalBinary(msg); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		var ev ct.Event
		if err := ev.Unmarshal(m); err != nil {
			b.Fatal(err)
		}
		_ = fromFlow(ev.Flow)
	}
}
