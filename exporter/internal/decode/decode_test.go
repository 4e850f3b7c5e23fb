package decode

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"testing"

	"github.com/podflow/podflow/exporter/internal/flow"
)

type want struct {
	reason           Reason
	src, dst         string
	proto            flow.Protocol
	sport, dport     uint16
	length           uint32
	tcpFlags, icmpTy uint8
	// headerLen is checked when set.
	headerLen uint16
	bigTCP    bool
}

func check(t *testing.T, name string, rec *flow.Record, w want) {
	t.Helper()
	var p flow.Packet
	got := Decode(rec, &p)
	if got != w.reason {
		t.Fatalf("%s: reason %v, want %v", name, got, w.reason)
	}
	if p.CT != rec.CT {
		t.Errorf("%s: conntrack not copied: %+v", name, p)
	}
	if w.reason != OK {
		return
	}
	if p.Src != netip.MustParseAddr(w.src) || p.Dst != netip.MustParseAddr(w.dst) {
		t.Errorf("%s: %v -> %v, want %s -> %s", name, p.Src, p.Dst, w.src, w.dst)
	}
	if p.Proto != w.proto || p.SrcPort != w.sport || p.DstPort != w.dport {
		t.Errorf("%s: %v %d -> %d, want %v %d -> %d", name, p.Proto, p.SrcPort, p.DstPort, w.proto, w.sport, w.dport)
	}
	if p.Length != w.length {
		t.Errorf("%s: length %d, want %d", name, p.Length, w.length)
	}
	if w.headerLen != 0 && p.HeaderLen != w.headerLen {
		t.Errorf("%s: header length %d, want %d", name, p.HeaderLen, w.headerLen)
	}
	if p.BigTCP != w.bigTCP {
		t.Errorf("%s: BIG TCP %v, want %v", name, p.BigTCP, w.bigTCP)
	}
	if p.TCPFlags != w.tcpFlags || p.ICMPType != w.icmpTy {
		t.Errorf("%s: tcp flags %#x icmp type %d, want %#x %d", name, p.TCPFlags, p.ICMPType, w.tcpFlags, w.icmpTy)
	}
}

const (
	a4, b4 = "10.201.0.1", "10.201.0.2"
	a6, b6 = "fd00:201::1", "fd00:201::2"
)

// TestCapturedVectors decodes the packets of testdata/vectors.txt; the
// expected fields are read off tcpdump's summary line of each vector.
func TestCapturedVectors(t *testing.T) {
	vs := loadVectors(t)
	tests := map[string]want{
		"ipv4-icmp-echo-request":    {src: a4, dst: b4, proto: flow.ProtoICMP, length: 84, icmpTy: 8},
		"ipv4-icmp-echo-reply":      {src: b4, dst: a4, proto: flow.ProtoICMP, length: 84, icmpTy: 0},
		"ipv4-options-record-route": {src: a4, dst: b4, proto: flow.ProtoICMP, length: 124, icmpTy: 8, headerLen: 60},
		"ipv4-tcp-syn":              {src: a4, dst: b4, proto: flow.ProtoTCP, sport: 40100, dport: 8080, length: 60, tcpFlags: flow.TCPSyn, headerLen: 60},
		"ipv4-tcp-synack":           {src: b4, dst: a4, proto: flow.ProtoTCP, sport: 8080, dport: 40101, length: 60, tcpFlags: flow.TCPSyn | flow.TCPAck},
		"ipv4-udp":                  {src: a4, dst: b4, proto: flow.ProtoUDP, sport: 40000, dport: 5353, length: 34, headerLen: 28},
		"ipv4-first-fragment":       {src: a4, dst: b4, proto: flow.ProtoICMP, length: 1500, icmpTy: 8},
		"ipv4-non-first-fragment":   {reason: Fragment},
		"ipv4-sctp-init":            {src: a4, dst: b4, proto: flow.ProtoSCTP, sport: 5000, dport: 3868, length: 52},
		"ipv4-gre":                  {src: a4, dst: b4, proto: 47, length: 44},
		"ipv6-icmpv6-echo-request":  {src: a6, dst: b6, proto: flow.ProtoICMPv6, length: 104, icmpTy: 128},
		"ipv6-icmpv6-echo-reply":    {src: b6, dst: a6, proto: flow.ProtoICMPv6, length: 104, icmpTy: 129},
		"ipv6-tcp-syn":              {src: a6, dst: b6, proto: flow.ProtoTCP, sport: 40102, dport: 8080, length: 80, tcpFlags: flow.TCPSyn},
		"ipv6-udp":                  {src: a6, dst: b6, proto: flow.ProtoUDP, sport: 40000, dport: 5353, length: 54},
		"ipv6-first-fragment":       {src: a6, dst: b6, proto: flow.ProtoICMPv6, length: 1496, icmpTy: 128},
		"ipv6-non-first-fragment":   {reason: Fragment},
		"ipv6-hopbyhop-dstopts-udp": {src: a6, dst: b6, proto: flow.ProtoUDP, sport: 40001, dport: 5353, length: 77},
		"ipv6-dstopts-tcp-syn":      {src: a6, dst: b6, proto: flow.ProtoTCP, sport: 40103, dport: 8080, length: 88, tcpFlags: flow.TCPSyn, headerLen: 88},
	}
	if len(vs) != len(tests) {
		t.Errorf("%d vectors in the file, %d expectations", len(vs), len(tests))
	}
	for name, w := range tests {
		v, ok := vs[name]
		if !ok {
			t.Errorf("vector %s missing", name)
			continue
		}
		if len(v.data) > 128 {
			t.Errorf("%s: %d bytes, more than the snaplen", name, len(v.data))
		}
		rec := &flow.Record{Payload: v.data, Family: v.family,
			CT: flow.Conntrack{Present: true, Info: flow.CTNew}}
		t.Run(name, func(t *testing.T) { check(t, name, rec, w) })
	}
}

// edit returns a copy of b with f applied.
func edit(b []byte, f func(b []byte) []byte) []byte {
	return f(bytes.Clone(b))
}

func insert(b []byte, at int, hdr []byte) []byte {
	out := append(bytes.Clone(b[:at]), hdr...)
	return append(out, b[at:]...)
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// ahHeader is an Authentication Header carrying next: payload length 4
// means (4+2)*4 = 24 bytes (RFC 4302): next header, length, reserved,
// SPI 0x100, sequence 1, a 12-byte ICV.
func ahHeader(next byte) []byte {
	return append([]byte{next, 4, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1}, make([]byte, 12)...)
}

func addLen4(b []byte, n int) []byte {
	binary.BigEndian.PutUint16(b[2:4], binary.BigEndian.Uint16(b[2:4])+uint16(n))
	return b
}

func addLen6(b []byte, n int) []byte {
	binary.BigEndian.PutUint16(b[4:6], binary.BigEndian.Uint16(b[4:6])+uint16(n))
	return b
}

// TestBuiltVectors covers what the capture namespaces cannot send (no
// IPsec or Mobile IPv6 in the test kernel) and malformed input. Each is a
// captured vector changed as its construction says.
func TestBuiltVectors(t *testing.T) {
	vs := loadVectors(t)
	udp4, udp6 := vs["ipv4-udp"].data, vs["ipv6-udp"].data
	syn4, rr4 := vs["ipv4-tcp-syn"].data, vs["ipv4-options-record-route"].data
	syn6 := vs["ipv6-tcp-syn"].data
	bigTCP := func(src, dst string, length uint32, headerLen uint16) want {
		return want{src: src, dst: dst, proto: flow.ProtoTCP, sport: 40100, dport: 8080, length: length, tcpFlags: flow.TCPSyn, headerLen: headerLen, bigTCP: true}
	}
	hbh6 := vs["ipv6-hopbyhop-dstopts-udp"].data
	okUDP4 := want{src: a4, dst: b4, proto: flow.ProtoUDP, sport: 40000, dport: 5353}
	okUDP6 := want{src: a6, dst: b6, proto: flow.ProtoUDP, sport: 40000, dport: 5353}
	with := func(w want, length uint32) want { w.length = length; return w }

	tests := []struct {
		name   string
		family uint8
		data   []byte
		want   want
	}{
		{"ipv4 AH then UDP: AH inserted after the header, protocol 51, total length +24", afInet,
			edit(udp4, func(b []byte) []byte {
				b = insert(b, 20, ahHeader(17))
				b[9] = ipAH
				return addLen4(b, 24)
			}), with(okUDP4, 58)},
		{"ipv6 AH then UDP: AH inserted after the fixed header, next header 51, payload length +24", afInet6,
			edit(udp6, func(b []byte) []byte {
				b = insert(b, 40, ahHeader(17))
				b[6] = ipAH
				return addLen6(b, 24)
			}), with(okUDP6, 78)},
		{"ipv6 routing header type 2 (24 bytes: next 17, length 2, type 2, segments left 1, home address) then UDP", afInet6,
			edit(udp6, func(b []byte) []byte {
				rh := append([]byte{17, 2, 2, 1, 0, 0, 0, 0}, netip.MustParseAddr("fd00:201::99").AsSlice()...)
				b = insert(b, 40, rh)
				b[6] = ipv6Routing
				return addLen6(b, 24)
			}), with(okUDP6, 78)},
		{"ipv6 ESP ends the chain: next header 50", afInet6,
			edit(udp6, func(b []byte) []byte { b[6] = 50; return b }),
			want{src: a6, dst: b6, proto: 50, length: 54}},
		{"ipv6 hop-by-hop then no next header (59)", afInet6,
			edit(hbh6, func(b []byte) []byte { b[40] = 59; return b }),
			want{src: a6, dst: b6, proto: 59, length: 77}},
		{"ipv6 jumbogram: payload length 0, hop-by-hop with Jumbo Payload 70000 (c2 04 00011170)", afInet6,
			edit(udp6, func(b []byte) []byte {
				b = insert(b, 40, mustHex("1100c20400011170"))
				b[6] = ipv6HopByHop
				binary.BigEndian.PutUint16(b[4:6], 0)
				return b
			}), with(okUDP6, 40+70000)},
		{"ipv6 Jumbo Payload below 65536 is invalid", afInet6,
			edit(udp6, func(b []byte) []byte {
				b = insert(b, 40, mustHex("1100c20400000100"))
				b[6] = ipv6HopByHop
				binary.BigEndian.PutUint16(b[4:6], 0)
				return b
			}), want{reason: BadLength}},
		{"ipv6 payload length 0 on UDP without Jumbo Payload: not BIG TCP", afInet6,
			edit(udp6, func(b []byte) []byte { binary.BigEndian.PutUint16(b[4:6], 0); return b }),
			want{reason: Jumbo}},
		{"ipv6 payload length 0 on TCP (BIG TCP GSO): the least length, 40+65536", afInet6,
			edit(syn6, func(b []byte) []byte { binary.BigEndian.PutUint16(b[4:6], 0); return b }),
			func() want { w := bigTCP(a6, b6, 40+65536, 80); w.sport = 40102; return w }()},
		{"ipv4 total length 0 on TCP (BIG TCP GSO): the least length, 65536", afInet,
			edit(syn4, func(b []byte) []byte { binary.BigEndian.PutUint16(b[2:4], 0); return b }),
			bigTCP(a4, b4, 65536, 60)},
		{"ipv4 total length 0 on UDP: not BIG TCP", afInet,
			edit(udp4, func(b []byte) []byte { binary.BigEndian.PutUint16(b[2:4], 0); return b }),
			want{reason: Jumbo}},
		{"ipv4 first fragment flag only (MF, offset 0) is decoded", afInet,
			edit(udp4, func(b []byte) []byte { b[6] = 0x20; return b }), with(okUDP4, 34)},
		{"empty payload", afInet, nil, want{reason: Truncated}},
		{"ipv4 bytes with the IPv6 family", afInet6, udp4, want{reason: BadVersion}},
		{"ipv6 bytes with the IPv4 family", afInet, udp6, want{reason: BadVersion}},
		{"unknown family", 7, udp4, want{reason: BadVersion}},
		{"version nibble 5", afInet, edit(udp4, func(b []byte) []byte { b[0] = 0x55; return b }), want{reason: BadVersion}},
		{"ipv4 IHL 4", afInet, edit(udp4, func(b []byte) []byte { b[0] = 0x44; return b }), want{reason: BadHeaderLength}},
		{"ipv4 total length 19 below IHL", afInet, edit(udp4, func(b []byte) []byte { b[3] = 19; return b }), want{reason: BadLength}},
		{"ipv4 cut at 19 bytes", afInet, udp4[:19], want{reason: Truncated}},
		{"ipv4 options cut (IHL 60, 40 bytes captured)", afInet, rr4[:40], want{reason: Truncated}},
		{"tcp cut before the flag byte (33 bytes)", afInet, syn4[:33], want{reason: Truncated}},
		{"tcp header past the total length (30)", afInet,
			edit(syn4, func(b []byte) []byte { b[3] = 30; return b }), want{reason: BadLength}},
		{"tcp data offset 4", afInet,
			edit(syn4, func(b []byte) []byte { b[32] = 0x40; return b }), want{reason: BadHeaderLength}},
		{"udp ports cut (22 bytes)", afInet, udp4[:22], want{reason: Truncated}},
		{"ipv6 cut at 39 bytes", afInet6, udp6[:39], want{reason: Truncated}},
		{"ipv6 extension chain cut inside the destination options (50 bytes)", afInet6, hbh6[:50], want{reason: Truncated}},
		{"ipv6 extension header past the payload length (10)", afInet6,
			edit(hbh6, func(b []byte) []byte { binary.BigEndian.PutUint16(b[4:6], 10); return b }),
			want{reason: BadLength}},
	}
	for _, tt := range tests {
		rec := &flow.Record{Payload: tt.data, Family: tt.family,
			CT: flow.Conntrack{Present: true, Info: flow.CTEstablishedReply}}
		t.Run(tt.name, func(t *testing.T) { check(t, tt.name, rec, tt.want) })
	}
}

func TestDecodeOverwritesPacket(t *testing.T) {
	vs := loadVectors(t)
	p := flow.Packet{TCPFlags: 0xff, ICMPType: 3, SrcPort: 1}
	rec := &flow.Record{Payload: vs["ipv4-gre"].data, Family: afInet}
	if r := Decode(rec, &p); r != OK {
		t.Fatal(r)
	}
	if p.TCPFlags != 0 || p.ICMPType != 0 || p.SrcPort != 0 {
		t.Errorf("stale fields left: %+v", p)
	}
}

func TestReasons(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range Reasons() {
		if r == OK {
			t.Error("Reasons() includes OK")
		}
		s := r.String()
		if s == "" || s == "unknown" || seen[s] {
			t.Errorf("reason %d: bad or duplicate label %q", r, s)
		}
		seen[s] = true
	}
	if len(seen) != int(numReasons)-1 {
		t.Errorf("%d reasons, want %d", len(seen), numReasons-1)
	}
	if Reason(200).String() != "unknown" {
		t.Error("out-of-range reason")
	}
}

func TestDecodeDoesNotAllocate(t *testing.T) {
	vs := loadVectors(t)
	var p flow.Packet
	for name, v := range vs {
		rec := &flow.Record{Payload: v.data, Family: v.family}
		if n := testing.AllocsPerRun(100, func() { Decode(rec, &p) }); n != 0 {
			t.Errorf("%s: %v allocations per decode", name, n)
		}
	}
}

func benchmarkDecode(b *testing.B, name string) {
	v := loadVectors(b)[name]
	rec := &flow.Record{Payload: v.data, Family: v.family}
	var p flow.Packet
	b.ReportAllocs()
	b.SetBytes(int64(len(v.data)))
	for b.Loop() {
		if Decode(rec, &p) != OK {
			b.Fatal("decode failed")
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	b.Run("ipv4-tcp", func(b *testing.B) { benchmarkDecode(b, "ipv4-tcp-syn") })
	b.Run("ipv6-extheaders-udp", func(b *testing.B) { benchmarkDecode(b, "ipv6-hopbyhop-dstopts-udp") })
}
