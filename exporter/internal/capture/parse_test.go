package capture

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/podflow/podflow/exporter/internal/flow"
	"github.com/podflow/podflow/exporter/internal/nft"
)

// The vectors are built with the layouts of linux/netlink.h,
// linux/netfilter/nfnetlink_log.h and nfnetlink_conntrack.h: nlmsghdr,
// nfgenmsg, then NFULA_* attributes, as nfulnl_log_packet() emits them.

func nla(typ uint16, v []byte) []byte { return attr(nil, typ, v) }

func nested(typ uint16, parts ...[]byte) []byte {
	var v []byte
	for _, p := range parts {
		v = append(v, p...)
	}
	return nla(typ|0x8000, v) // NLA_F_NESTED
}

type pkt struct {
	family  uint8
	hook    uint8
	seq     int64 // -1: no NFULA_SEQ
	payload []byte
	ct      []byte // encoded NFULA_CT, nil for none
	ctInfo  int64  // -1: none
}

func (p pkt) msg(nlseq uint32) []byte { return p.msgPrefix(nlseq, nil) }

// msgPrefix is msg with an NFULA_PREFIX of the given bytes (none when
// nil), where the kernel puts it: right after the packet header.
func (p pkt) msgPrefix(nlseq uint32, prefix []byte) []byte {
	var attrs []byte
	attrs = append(attrs, nla(nfulaPacketHdr, []byte{0x08, 0x00, p.hook, 0})...)
	if prefix != nil {
		attrs = append(attrs, nla(nfulaPrefix, prefix)...)
	}
	attrs = append(attrs, nla(5, be32(3))...) // NFULA_IFINDEX_OUTDEV, ignored
	if p.payload != nil {
		attrs = append(attrs, nla(nfulaPayload, p.payload)...)
	}
	if p.seq >= 0 {
		attrs = append(attrs, nla(nfulaSeq, be32(uint32(p.seq)))...)
	}
	if p.ct != nil {
		attrs = append(attrs, p.ct...)
	}
	if p.ctInfo >= 0 {
		attrs = append(attrs, nla(nfulaCTInfo, be32(uint32(p.ctInfo)))...)
	}
	n := nlmsgHdrLen + nfgenHdrLen + len(attrs)
	b := make([]byte, n)
	binary.NativeEndian.PutUint32(b[0:4], uint32(n))
	binary.NativeEndian.PutUint16(b[4:6], msgPacket)
	binary.NativeEndian.PutUint16(b[6:8], 0x2) // NLM_F_MULTI
	binary.NativeEndian.PutUint32(b[8:12], nlseq)
	b[16] = p.family
	binary.BigEndian.PutUint16(b[18:20], 100)
	copy(b[20:], attrs)
	return b
}

func done() []byte {
	b := make([]byte, nlmsgHdrLen+4)
	binary.NativeEndian.PutUint32(b[0:4], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:6], nlmsgDone)
	return b
}

func ackMsg(seq uint32, errno int32) []byte {
	b := make([]byte, nlmsgHdrLen+20)
	binary.NativeEndian.PutUint32(b[0:4], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:6], nlmsgError)
	binary.NativeEndian.PutUint32(b[8:12], seq)
	binary.NativeEndian.PutUint32(b[16:20], uint32(errno)) // the kernel sends -errno
	return b
}

func ctTuple(src, dst netip.Addr, proto uint8, sport, dport uint16) []byte {
	ipSrc, ipDst := uint16(ctaIPv4Src), uint16(ctaIPv4Dst)
	if src.Is6() {
		ipSrc, ipDst = ctaIPv6Src, ctaIPv6Dst
	}
	port := func(p uint16) []byte { return binary.BigEndian.AppendUint16(nil, p) }
	tuple := func(typ uint16, s, d netip.Addr, sp, dp uint16) []byte {
		return nested(typ,
			nested(ctaTupleIP, nla(ipSrc, s.AsSlice()), nla(ipDst, d.AsSlice())),
			nested(ctaTupleProto, nla(1, []byte{proto}), nla(ctaProtoSrc, port(sp)), nla(ctaProtoDst, port(dp))),
		)
	}
	return nested(nfulaCT,
		tuple(ctaTupleOrig, src, dst, sport, dport),
		tuple(2, dst, src, dport, sport), // CTA_TUPLE_REPLY, ignored
		nla(3, be32(0x188)),              // CTA_STATUS
		nla(12, be32(7)),                 // CTA_ID
	)
}

// ipv4UDP is the first 28 bytes of a UDP datagram 10.0.0.1:40000 ->
// 10.0.0.2:53.
var ipv4UDP = []byte{
	0x45, 0, 0, 60, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
	0x9c, 0x40, 0, 53, 0, 40, 0, 0,
}

type recorder struct{ recs []flow.Record }

func (r *recorder) Handle(rec *flow.Record) {
	c := *rec
	c.Payload = append([]byte(nil), rec.Payload...)
	r.recs = append(r.recs, c)
}

func TestParseBatch(t *testing.T) {
	c, s := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	c6, s6 := netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2")
	var buf []byte
	buf = append(buf, pkt{2, 4, 7, ipv4UDP, ctTuple(c, s, 17, 40000, 53), int64(flow.CTNew)}.msg(0)...)
	buf = append(buf, pkt{2, 1, 8, ipv4UDP, ctTuple(c, s, 17, 40000, 53), int64(flow.CTEstablishedReply)}.msg(0)...)
	buf = append(buf, pkt{10, 4, 10, make([]byte, 48), ctTuple(c6, s6, 6, 1234, 443), int64(flow.CTEstablished)}.msg(0)...)
	buf = append(buf, pkt{2, 4, 11, ipv4UDP, nil, -1}.msg(0)...)
	buf = append(buf, done()...)

	var p parser
	var r recorder
	p.parse(buf, &r)
	if len(r.recs) != 4 || p.received != 4 || p.malformed != 0 {
		t.Fatalf("records = %d, received = %d, malformed = %d; want 4, 4, 0", len(r.recs), p.received, p.malformed)
	}
	if p.lost != 1 {
		t.Errorf("lost = %d, want 1 (sequence 9 missing)", p.lost)
	}
	want := []flow.Record{
		{Payload: ipv4UDP, Family: 2, Hook: flow.HookPostrouting, CT: flow.Conntrack{Present: true, Info: flow.CTNew, OrigSrc: c, OrigDst: s, OrigSrcPort: 40000, OrigDstPort: 53}},
		{Payload: ipv4UDP, Family: 2, Hook: flow.HookInput, CT: flow.Conntrack{Present: true, Info: flow.CTEstablishedReply, OrigSrc: c, OrigDst: s, OrigSrcPort: 40000, OrigDstPort: 53}},
		{Payload: make([]byte, 48), Family: 10, Hook: flow.HookPostrouting, CT: flow.Conntrack{Present: true, Info: flow.CTEstablished, OrigSrc: c6, OrigDst: s6, OrigSrcPort: 1234, OrigDstPort: 443}},
		{Payload: ipv4UDP, Family: 2, Hook: flow.HookPostrouting},
	}
	for i, w := range want {
		g := r.recs[i]
		if string(g.Payload) != string(w.Payload) || g.Family != w.Family || g.Hook != w.Hook || g.CT != w.CT {
			t.Errorf("record %d = %+v, want %+v", i, g, w)
		}
	}
}

// TestParsePrefix checks the conntrack state carried by the log rule's
// prefix: a NUL-terminated NFULA_PREFIX, as nfulnl_log_packet() copies it
// with strlen + 1 bytes.
func TestParsePrefix(t *testing.T) {
	c, s := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	glue := ctTuple(c, s, 17, 40000, 53)
	for _, tc := range []struct {
		name   string
		prefix []byte
		ct     []byte
		ctInfo int64
		want   flow.Conntrack
	}{
		{"new", []byte("n\x00"), nil, -1, flow.Conntrack{Present: true, Info: flow.CTNew}},
		{"original", []byte("o\x00"), nil, -1, flow.Conntrack{Present: true, Info: flow.CTEstablished}},
		{"reply", []byte("r\x00"), nil, -1, flow.Conntrack{Present: true, Info: flow.CTEstablishedReply}},
		{"untracked", []byte("u\x00"), nil, -1, flow.Conntrack{}},
		{"empty prefix of a rule without one", []byte("\x00"), nil, -1, flow.Conntrack{}},
		{"another rule's prefix", []byte("new\x00"), nil, -1, flow.Conntrack{}},
		{"another rule's prefix starting alike", []byte("o \x00"), nil, -1, flow.Conntrack{}},
		{"without the NUL", []byte("r"), nil, -1, flow.Conntrack{Present: true, Info: flow.CTEstablishedReply}},
		{"empty attribute", []byte{}, nil, -1, flow.Conntrack{}},
		{"glue wins", []byte("o\x00"), glue, int64(flow.CTNew), flow.Conntrack{Present: true, Info: flow.CTNew, OrigSrc: c, OrigDst: s, OrigSrcPort: 40000, OrigDstPort: 53}},
		{"glue wins in reply", []byte("n\x00"), glue, int64(flow.CTRelatedReply), flow.Conntrack{Present: true, Info: flow.CTRelatedReply, OrigSrc: c, OrigDst: s, OrigSrcPort: 40000, OrigDstPort: 53}},
		{"new, DNAT here", []byte("nd\x00"), nil, -1, flow.Conntrack{Present: true, Info: flow.CTNew, DNAT: true}},
		{"reply, DNAT here", []byte("rd\x00"), nil, -1, flow.Conntrack{Present: true, Info: flow.CTEstablishedReply, DNAT: true}},
		{"unknown flag", []byte("nx\x00"), nil, -1, flow.Conntrack{}},
		{"before DNAT: no state", []byte("p\x00"), nil, -1, flow.Conntrack{}},
		{"glue with the DNAT flag", []byte("od\x00"), glue, int64(flow.CTEstablished), flow.Conntrack{Present: true, Info: flow.CTEstablished, OrigSrc: c, OrigDst: s, OrigSrcPort: 40000, OrigDstPort: 53, DNAT: true}},
		{"glue without a prefix", nil, glue, int64(flow.CTEstablished), flow.Conntrack{Present: true, Info: flow.CTEstablished, OrigSrc: c, OrigDst: s, OrigSrcPort: 40000, OrigDstPort: 53}},
	} {
		var p parser
		var r recorder
		p.parse(pkt{2, 4, 0, ipv4UDP, tc.ct, tc.ctInfo}.msgPrefix(0, tc.prefix), &r)
		if len(r.recs) != 1 || p.malformed != 0 {
			t.Errorf("%s: records = %d, malformed = %d; want 1, 0", tc.name, len(r.recs), p.malformed)
			continue
		}
		if got := r.recs[0].CT; got != tc.want {
			t.Errorf("%s: conntrack %+v, want %+v", tc.name, got, tc.want)
		}
		if got, want := r.recs[0].PreDNAT, string(tc.prefix) == nft.PrefixPreDNAT+"\x00"; got != want {
			t.Errorf("%s: pre-DNAT %v, want %v", tc.name, got, want)
		}
	}

	// The exact bytes of one message as the kernel sends it for
	// "ct state new log prefix \"n\" group 100": nlmsghdr, nfgenmsg,
	// NFULA_PACKET_HDR, NFULA_PREFIX (length 6: "n\0" and two bytes of
	// padding), NFULA_PAYLOAD.
	msg := []byte{
		0, 0, 0, 0, 0x00, 0x04, 0x02, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, // nlmsghdr, length set below
		0x02, 0x00, 0x00, 0x64, // nfgenmsg: AF_INET, version 0, group 100
		0x08, 0x00, 0x01, 0x00, 0x08, 0x00, 0x01, 0x00, // NFULA_PACKET_HDR: 0x0800, hook 1
		0x06, 0x00, 0x0a, 0x00, 'n', 0x00, 0x00, 0x00, // NFULA_PREFIX "n\0"
		0x20, 0x00, 0x09, 0x00, // NFULA_PAYLOAD, 28 bytes
	}
	msg = append(msg, ipv4UDP...)
	binary.NativeEndian.PutUint32(msg[0:4], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:6], msgPacket)
	var p parser
	var r recorder
	p.parse(msg, &r)
	if len(r.recs) != 1 || p.malformed != 0 {
		t.Fatalf("kernel bytes: records = %d, malformed = %d; want 1, 0", len(r.recs), p.malformed)
	}
	if g := r.recs[0]; g.Hook != flow.HookInput || g.CT != (flow.Conntrack{Present: true, Info: flow.CTNew}) || string(g.Payload) != string(ipv4UDP) {
		t.Errorf("kernel bytes: record %+v, want a new connection into the node", g)
	}
}

// TestPrefixesMatchTheTable ties the parser to the prefixes of the log
// rules the nft package installs.
func TestPrefixesMatchTheTable(t *testing.T) {
	for prefix, want := range map[string]uint8{
		nft.PrefixNew:       flow.CTNew,
		nft.PrefixOriginal:  flow.CTEstablished,
		nft.PrefixReply:     flow.CTEstablishedReply,
		nft.PrefixUntracked: noState,
	} {
		if got, dnat := prefixState(append([]byte(prefix), 0)); got != want || dnat {
			t.Errorf("prefix %q: state %d, want %d", prefix, got, want)
		}
		if prefix == nft.PrefixUntracked {
			continue
		}
		if got, dnat := prefixState(append([]byte(prefix+nft.FlagDNAT), 0)); got != want || !dnat {
			t.Errorf("prefix %q: state %d, DNAT %v, want %d and DNAT", prefix+nft.FlagDNAT, got, dnat, want)
		}
	}
}

func TestParseSequence(t *testing.T) {
	for _, tc := range []struct {
		name string
		seqs []int64
		lost uint64
	}{
		{"contiguous", []int64{0, 1, 2, 3}, 0},
		{"gap", []int64{5, 6, 10}, 3},
		{"wrap", []int64{0xfffffffe, 0xffffffff, 0, 1}, 0},
		{"gap across wrap", []int64{0xfffffffe, 1}, 2},
		{"restart", []int64{100, 0, 1}, 0},
		{"first seen late", []int64{1000}, 0},
		{"no seq", []int64{-1, -1}, 0},
	} {
		var p parser
		var r recorder
		for _, s := range tc.seqs {
			p.parse(pkt{2, 4, s, ipv4UDP, nil, -1}.msg(0), &r)
		}
		if p.lost != tc.lost {
			t.Errorf("%s: lost = %d, want %d", tc.name, p.lost, tc.lost)
		}
	}
}

func TestParseAck(t *testing.T) {
	var p parser
	p.wantSeq = 7
	buf := append(pkt{2, 4, 0, ipv4UDP, nil, -1}.msg(0), ackMsg(6, -1)...)
	buf = append(buf, ackMsg(7, -1)...) // EPERM
	p.parse(buf, &recorder{})
	if !p.ackSeen || p.ackErrno != 1 {
		t.Errorf("ackSeen = %v, errno = %d; want true, 1 (EPERM)", p.ackSeen, p.ackErrno)
	}
	if p.received != 1 {
		t.Errorf("received = %d, want the packet before the acks", p.received)
	}
}

func TestParseMalformed(t *testing.T) {
	good := pkt{2, 4, 0, ipv4UDP, ctTuple(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 17, 1, 2), 2}.msg(0)

	// Every truncation of a valid message: never a panic, never a record
	// with a payload cut short by the truncation, and counted.
	for n := 1; n < len(good); n++ {
		var p parser
		var r recorder
		p.parse(good[:n], &r)
		if p.received+p.malformed == 0 {
			t.Errorf("truncated to %d of %d bytes: neither received nor counted as malformed", n, len(good))
		}
	}

	for _, tc := range []struct {
		name string
		buf  []byte
	}{
		{"nlmsg length below header", func() []byte { b := append([]byte(nil), good...); binary.NativeEndian.PutUint32(b, 8); return b }()},
		{"nlmsg length beyond buffer", func() []byte { b := append([]byte(nil), good...); binary.NativeEndian.PutUint32(b, 4096); return b }()},
		{"attribute length beyond message", func() []byte {
			b := append([]byte(nil), good...)
			binary.NativeEndian.PutUint16(b[20:22], 0xfff)
			return b
		}()},
		{"attribute length below header", func() []byte { b := append([]byte(nil), good...); binary.NativeEndian.PutUint16(b[20:22], 2); return b }()},
		{"no nfgenmsg", func() []byte {
			b := make([]byte, nlmsgHdrLen+2)
			binary.NativeEndian.PutUint32(b, uint32(len(b)))
			binary.NativeEndian.PutUint16(b[4:6], msgPacket)
			return b
		}()},
		{"no payload", pkt{2, 4, 0, nil, nil, -1}.msg(0)},
		{"broken conntrack nest", pkt{2, 4, 0, ipv4UDP, nla(nfulaCT, []byte{0xff, 0, 1, 0}), 2}.msg(0)},
		{"trailing garbage", append(append([]byte(nil), good...), 1, 2, 3)},
	} {
		var p parser
		var r recorder
		p.parse(tc.buf, &r)
		if p.malformed == 0 {
			t.Errorf("%s: malformed = 0, want it counted", tc.name)
		}
	}
}

func FuzzParse(f *testing.F) {
	c, s := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::2")
	f.Add(pkt{2, 4, 0, ipv4UDP, ctTuple(c, c, 17, 1, 2), 2}.msg(0))
	f.Add(pkt{10, 1, 5, make([]byte, 40), ctTuple(s, s, 6, 1, 2), 3}.msg(0))
	f.Add(append(pkt{2, 4, 1, ipv4UDP, nil, -1}.msg(0), done()...))
	f.Add(pkt{2, 1, 2, ipv4UDP, nil, -1}.msgPrefix(0, []byte("r\x00")))
	f.Add(ackMsg(1, -16))
	f.Fuzz(func(t *testing.T, b []byte) {
		var p parser
		p.parse(b, HandlerFunc(func(rec *flow.Record) {
			if rec.Payload == nil {
				t.Fatal("record without payload")
			}
		}))
	})
}

func benchBatch(n int) []byte {
	c, s := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	var buf []byte
	for i := range n {
		buf = append(buf, pkt{2, 4, int64(i), append(ipv4UDP, make([]byte, 100)...), ctTuple(c, s, 17, 40000, 53), 0}.msgPrefix(0, []byte("o\x00"))...)
	}
	return append(buf, done()...)
}

// BenchmarkParse reports the cost per packet of parsing a 64-packet batch
// with conntrack attributes and the log prefix.
func BenchmarkParse(b *testing.B) {
	buf := benchBatch(64)
	var p parser
	var sink int
	h := HandlerFunc(func(rec *flow.Record) { sink += len(rec.Payload) })
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		p.haveSeq = false
		p.parse(buf, h)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*64), "ns/packet")
	_ = sink
}

func TestParseAllocatesNothing(t *testing.T) {
	buf := benchBatch(16)
	var p parser
	h := HandlerFunc(func(*flow.Record) {})
	if a := testing.AllocsPerRun(100, func() { p.parse(buf, h) }); a != 0 {
		t.Errorf("parse allocates %v times per batch, want 0", a)
	}
}
