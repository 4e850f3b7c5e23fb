package orient

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/podflow/podflow/exporter/internal/flow"
)

var (
	client   = netip.MustParseAddr("10.0.1.5")   // a pod that connects
	backend  = netip.MustParseAddr("10.0.2.7")   // the pod behind a Service
	cluster  = netip.MustParseAddr("10.96.0.10") // the Service's ClusterIP
	client6  = netip.MustParseAddr("fd00:10::5")
	backend6 = netip.MustParseAddr("fd00:10::7")
	cluster6 = netip.MustParseAddr("fd00:96::a")
)

func ct(info uint8, origSrc, origDst netip.Addr, sport, dport uint16) flow.Conntrack {
	return flow.Conntrack{Present: true, Info: info, OrigSrc: origSrc, OrigDst: origDst, OrigSrcPort: sport, OrigDstPort: dport}
}

func pkt(proto flow.Protocol, src netip.Addr, sport uint16, dst netip.Addr, dport uint16) flow.Packet {
	return flow.Packet{Src: src, Dst: dst, SrcPort: sport, DstPort: dport, Proto: proto, Length: 60, Hook: flow.HookPostrouting}
}

func with(p flow.Packet, f func(*flow.Packet)) flow.Packet { f(&p); return p }

func TestOrient(t *testing.T) {
	tests := []struct {
		name string
		p    flow.Packet
		want flow.Flow
	}{
		// Conntrack.
		{"conntrack new, original: DNAT'd to a Service backend",
			with(pkt(flow.ProtoTCP, client, 40000, backend, 8080), func(p *flow.Packet) {
				p.CT = ct(flow.CTNew, client, cluster, 40000, 80)
				p.TCPFlags = flow.TCPSyn
			}),
			flow.Flow{Initiator: client, Responder: backend, Service: cluster, ServicePort: 80, Port: 8080, Dir: flow.Original, NewConn: true}},
		{"conntrack reply of the DNAT'd connection: source still the backend pod",
			with(pkt(flow.ProtoTCP, backend, 8080, client, 40000), func(p *flow.Packet) {
				p.CT = ct(flow.CTEstablishedReply, client, cluster, 40000, 80)
				p.TCPFlags = flow.TCPSyn | flow.TCPAck
			}),
			flow.Flow{Initiator: client, Responder: backend, Service: cluster, ServicePort: 80, Port: 8080, Dir: flow.Reply}},
		{"conntrack established, original, no DNAT: no Service",
			with(pkt(flow.ProtoTCP, client, 40000, backend, 8080), func(p *flow.Packet) {
				p.CT = ct(flow.CTEstablished, client, backend, 40000, 8080)
				p.TCPFlags = flow.TCPAck
			}),
			flow.Flow{Initiator: client, Responder: backend, Port: 8080, Dir: flow.Original}},
		{"conntrack beats the port heuristic: a reply from the higher port",
			with(pkt(flow.ProtoUDP, backend, 50000, client, 53), func(p *flow.Packet) {
				p.CT = ct(flow.CTEstablishedReply, client, backend, 53, 50000)
			}),
			flow.Flow{Initiator: client, Responder: backend, Port: 50000, Dir: flow.Reply}},
		{"conntrack new UDP over IPv6 through a Service",
			with(pkt(flow.ProtoUDP, client6, 40000, backend6, 5353), func(p *flow.Packet) {
				p.CT = ct(flow.CTNew, client6, cluster6, 40000, 53)
			}),
			flow.Flow{Initiator: client6, Responder: backend6, Service: cluster6, ServicePort: 53, Port: 5353, Dir: flow.Original, NewConn: true}},
		{"conntrack IPv6 reply through a Service",
			with(pkt(flow.ProtoUDP, backend6, 5353, client6, 40000), func(p *flow.Packet) {
				p.CT = ct(flow.CTEstablishedReply, client6, cluster6, 40000, 53)
			}),
			flow.Flow{Initiator: client6, Responder: backend6, Service: cluster6, ServicePort: 53, Port: 5353, Dir: flow.Reply}},
		{"conntrack related reply: an ICMP error back to the initiator, port 0",
			with(pkt(flow.ProtoICMP, backend, 0, client, 0), func(p *flow.Packet) {
				p.CT = ct(flow.CTRelatedReply, client, backend, 40000, 8080)
				p.ICMPType = 3
			}),
			flow.Flow{Initiator: client, Responder: backend, Dir: flow.Reply}},
		{"conntrack related, original: not a new connection",
			with(pkt(flow.ProtoICMP, client, 0, backend, 0), func(p *flow.Packet) {
				p.CT = ct(flow.CTRelated, client, backend, 0, 0)
				p.ICMPType = 3
			}),
			flow.Flow{Initiator: client, Responder: backend, Dir: flow.Original}},
		{"conntrack present with an out-of-range state falls back to flags",
			with(pkt(flow.ProtoTCP, backend, 8080, client, 40000), func(p *flow.Packet) {
				p.CT = ct(7, client, backend, 40000, 8080)
				p.TCPFlags = flow.TCPSyn | flow.TCPAck
			}),
			flow.Flow{Initiator: client, Responder: backend, Port: 8080, Dir: flow.Reply}},
		{"conntrack not present: its fields are ignored",
			with(pkt(flow.ProtoTCP, client, 40000, backend, 8080), func(p *flow.Packet) {
				p.CT = flow.Conntrack{Info: flow.CTEstablishedReply, OrigDst: cluster}
				p.TCPFlags = flow.TCPAck
			}),
			flow.Flow{Initiator: client, Responder: backend, Port: 8080, Dir: flow.Original}},

		{"conntrack original destination IPv4-mapped: unmapped",
			with(pkt(flow.ProtoTCP, client, 40000, backend, 8080), func(p *flow.Packet) {
				p.CT = ct(flow.CTEstablished, client, netip.AddrFrom16(cluster.As16()), 40000, 80)
			}),
			flow.Flow{Initiator: client, Responder: backend, Service: cluster, ServicePort: 80, Port: 8080, Dir: flow.Original}},
		{"conntrack original destination is the responder, IPv4-mapped: no Service",
			with(pkt(flow.ProtoTCP, client, 40000, backend, 8080), func(p *flow.Packet) {
				p.CT = ct(flow.CTEstablished, client, netip.AddrFrom16(backend.As16()), 40000, 8080)
			}),
			flow.Flow{Initiator: client, Responder: backend, Port: 8080, Dir: flow.Original}},

		// Conntrack from the log prefix: state and direction, no tuple.
		{"log prefix new: original and new, no Service from the zero tuple",
			with(pkt(flow.ProtoUDP, client, 40000, backend, 5353), func(p *flow.Packet) {
				p.CT = flow.Conntrack{Present: true, Info: flow.CTNew}
			}),
			flow.Flow{Initiator: client, Responder: backend, Port: 5353, Dir: flow.Original, NewConn: true}},
		{"log prefix original: beats the port heuristic, not new",
			with(pkt(flow.ProtoUDP, client, 53, backend, 50000), func(p *flow.Packet) {
				p.CT = flow.Conntrack{Present: true, Info: flow.CTEstablished}
			}),
			flow.Flow{Initiator: client, Responder: backend, Port: 50000, Dir: flow.Original}},
		{"log prefix reply: a SYN+ACK, no Service",
			with(pkt(flow.ProtoTCP, backend6, 8080, client6, 40000), func(p *flow.Packet) {
				p.CT = flow.Conntrack{Present: true, Info: flow.CTEstablishedReply}
				p.TCPFlags = flow.TCPSyn | flow.TCPAck
			}),
			flow.Flow{Initiator: client6, Responder: backend6, Port: 8080, Dir: flow.Reply}},
		{"log prefix new on an ICMP echo request: a new connection",
			with(pkt(flow.ProtoICMP, client, 0, backend, 0), func(p *flow.Packet) {
				p.CT = flow.Conntrack{Present: true, Info: flow.CTNew}
				p.ICMPType = 8
			}),
			flow.Flow{Initiator: client, Responder: backend, Dir: flow.Original, NewConn: true}},

		// TCP flags.
		{"SYN without ACK from the higher-port side is original and new",
			with(pkt(flow.ProtoTCP, client, 20, backend, 40000), func(p *flow.Packet) { p.TCPFlags = flow.TCPSyn }),
			flow.Flow{Initiator: client, Responder: backend, Port: 40000, Dir: flow.Original, NewConn: true}},
		{"SYN+ACK is a reply",
			with(pkt(flow.ProtoTCP, backend, 40000, client, 20), func(p *flow.Packet) { p.TCPFlags = flow.TCPSyn | flow.TCPAck }),
			flow.Flow{Initiator: client, Responder: backend, Port: 40000, Dir: flow.Reply}},
		{"SYN with ECN bits is still a SYN",
			with(pkt(flow.ProtoTCP, client, 40000, backend, 443), func(p *flow.Packet) { p.TCPFlags = flow.TCPSyn | 0xc0 }),
			flow.Flow{Initiator: client, Responder: backend, Port: 443, Dir: flow.Original, NewConn: true}},

		// Ports.
		{"TCP ACK to a well-known port",
			with(pkt(flow.ProtoTCP, client, 40000, backend, 443), func(p *flow.Packet) { p.TCPFlags = flow.TCPAck }),
			flow.Flow{Initiator: client, Responder: backend, Port: 443, Dir: flow.Original}},
		{"TCP FIN from a service port below the ephemeral range is a reply",
			with(pkt(flow.ProtoTCP, backend, 8080, client, 40000), func(p *flow.Packet) { p.TCPFlags = flow.TCPFin | flow.TCPAck }),
			flow.Flow{Initiator: client, Responder: backend, Port: 8080, Dir: flow.Reply}},
		{"UDP answer from port 53",
			pkt(flow.ProtoUDP, backend, 53, client, 51000),
			flow.Flow{Initiator: client, Responder: backend, Port: 53, Dir: flow.Reply}},
		{"UDP between two ephemeral ports: the lower one is the responder's",
			pkt(flow.ProtoUDP, client, 50001, backend, 40000),
			flow.Flow{Initiator: client, Responder: backend, Port: 40000, Dir: flow.Original}},
		{"SCTP to 3868",
			pkt(flow.ProtoSCTP, client, 5000, backend, 3868),
			flow.Flow{Initiator: client, Responder: backend, Port: 3868, Dir: flow.Original}},
		{"equal ports: the lower address is the responder",
			pkt(flow.ProtoUDP, backend, 123, client, 123),
			flow.Flow{Initiator: backend, Responder: client, Port: 123, Dir: flow.Original}},
		{"equal ports, the other way",
			pkt(flow.ProtoUDP, client, 123, backend, 123),
			flow.Flow{Initiator: backend, Responder: client, Port: 123, Dir: flow.Reply}},

		// ICMP.
		{"ICMP echo request",
			with(pkt(flow.ProtoICMP, client, 0, backend, 0), func(p *flow.Packet) { p.ICMPType = 8 }),
			flow.Flow{Initiator: client, Responder: backend, Dir: flow.Original}},
		{"ICMP echo reply",
			with(pkt(flow.ProtoICMP, backend, 0, client, 0), func(p *flow.Packet) { p.ICMPType = 0 }),
			flow.Flow{Initiator: client, Responder: backend, Dir: flow.Reply}},
		{"ICMP timestamp reply",
			with(pkt(flow.ProtoICMP, backend, 0, client, 0), func(p *flow.Packet) { p.ICMPType = 14 }),
			flow.Flow{Initiator: client, Responder: backend, Dir: flow.Reply}},
		{"ICMP destination unreachable: from its sender",
			with(pkt(flow.ProtoICMP, backend, 0, client, 0), func(p *flow.Packet) { p.ICMPType = 3 }),
			flow.Flow{Initiator: backend, Responder: client, Dir: flow.Original}},
		{"ICMPv6 echo request",
			with(pkt(flow.ProtoICMPv6, client6, 0, backend6, 0), func(p *flow.Packet) { p.ICMPType = 128 }),
			flow.Flow{Initiator: client6, Responder: backend6, Dir: flow.Original}},
		{"ICMPv6 echo reply",
			with(pkt(flow.ProtoICMPv6, backend6, 0, client6, 0), func(p *flow.Packet) { p.ICMPType = 129 }),
			flow.Flow{Initiator: client6, Responder: backend6, Dir: flow.Reply}},
		{"ICMPv6 packet too big: from its sender",
			with(pkt(flow.ProtoICMPv6, backend6, 0, client6, 0), func(p *flow.Packet) { p.ICMPType = 2 }),
			flow.Flow{Initiator: backend6, Responder: client6, Dir: flow.Original}},

		// Other protocols.
		{"GRE from the higher address: original",
			pkt(47, backend, 0, client, 0),
			flow.Flow{Initiator: backend, Responder: client, Dir: flow.Original}},
		{"GRE from the lower address: reply",
			pkt(47, client, 0, backend, 0),
			flow.Flow{Initiator: backend, Responder: client, Dir: flow.Reply}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.want
			want.Proto, want.Bytes, want.Hook = tt.p.Proto, tt.p.Length, tt.p.Hook
			f := flow.Flow{Service: cluster, NewConn: true, Port: 9} // stale values must go
			Orient(&tt.p, &f)
			if f != want {
				t.Errorf("got  %+v\nwant %+v", f, want)
			}
		})
	}
}

// mirror returns the reply to p: addresses and ports swapped, the answer
// to a SYN or an ICMP query; ok is false when p has no reply of its own.
func mirror(p flow.Packet) (flow.Packet, bool) {
	m := p
	m.Src, m.Dst, m.SrcPort, m.DstPort = p.Dst, p.Src, p.DstPort, p.SrcPort
	switch p.Proto {
	case flow.ProtoTCP:
		switch p.TCPFlags & (flow.TCPSyn | flow.TCPAck) {
		case flow.TCPSyn:
			m.TCPFlags = p.TCPFlags | flow.TCPAck
		case flow.TCPSyn | flow.TCPAck:
			m.TCPFlags = p.TCPFlags &^ flow.TCPAck
		}
	case flow.ProtoICMP:
		pairs := map[uint8]uint8{8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 17: 18, 18: 17}
		t, ok := pairs[p.ICMPType]
		m.ICMPType = t
		return m, ok
	case flow.ProtoICMPv6:
		pairs := map[uint8]uint8{128: 129, 129: 128, 139: 140, 140: 139}
		t, ok := pairs[p.ICMPType]
		m.ICMPType = t
		return m, ok
	}
	return m, m != p
}

// TestMirrorSymmetry: without conntrack, a packet and its reply give the
// same initiator, responder and port, in opposite directions.
func TestMirrorSymmetry(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	addrs := []netip.Addr{client, backend, cluster, client6, backend6, netip.MustParseAddr("203.0.113.9")}
	ports := []uint16{0, 22, 53, 80, 443, 1023, 1024, 8080, 30080, 32767, 32768, 40000, 60999, 65535}
	protos := []flow.Protocol{flow.ProtoTCP, flow.ProtoUDP, flow.ProtoSCTP, flow.ProtoICMP, flow.ProtoICMPv6, 47, 50}
	icmpTypes := []uint8{0, 8, 13, 14, 15, 16, 17, 18, 128, 129, 139, 140}
	checked := 0
	for range 20000 {
		p := flow.Packet{
			Src: addrs[rng.IntN(len(addrs))], Dst: addrs[rng.IntN(len(addrs))],
			Proto: protos[rng.IntN(len(protos))], Length: uint32(rng.IntN(1500)),
		}
		switch {
		case p.Proto.HasPorts():
			p.SrcPort, p.DstPort = ports[rng.IntN(len(ports))], ports[rng.IntN(len(ports))]
			if rng.IntN(2) == 0 {
				p.SrcPort = uint16(rng.Uint32())
			}
			if p.Proto == flow.ProtoTCP {
				p.TCPFlags = uint8(rng.Uint32())
			}
		case p.Proto == flow.ProtoICMP || p.Proto == flow.ProtoICMPv6:
			p.ICMPType = icmpTypes[rng.IntN(len(icmpTypes))]
		}
		m, ok := mirror(p)
		if !ok {
			continue
		}
		var f, g flow.Flow
		Orient(&p, &f)
		Orient(&m, &g)
		if f.Initiator != g.Initiator || f.Responder != g.Responder || f.Port != g.Port || f.Dir == g.Dir {
			t.Fatalf("asymmetric:\n%+v -> %+v\n%+v -> %+v", p, f, m, g)
		}
		checked++
	}
	if checked < 10000 {
		t.Fatalf("only %d packets checked", checked)
	}
}

func TestOrientDoesNotAllocate(t *testing.T) {
	p := with(pkt(flow.ProtoTCP, client, 40000, backend, 8080), func(p *flow.Packet) {
		p.CT = ct(flow.CTNew, client, cluster, 40000, 80)
	})
	var f flow.Flow
	if n := testing.AllocsPerRun(100, func() { Orient(&p, &f) }); n != 0 {
		t.Errorf("%v allocations per call", n)
	}
}

func BenchmarkOrient(b *testing.B) {
	packets := map[string]flow.Packet{
		"conntrack": with(pkt(flow.ProtoTCP, backend, 8080, client, 40000), func(p *flow.Packet) {
			p.CT = ct(flow.CTEstablishedReply, client, cluster, 40000, 80)
		}),
		"heuristic": pkt(flow.ProtoUDP, backend6, 5353, client6, 40000),
	}
	for name, p := range packets {
		b.Run(name, func(b *testing.B) {
			var f flow.Flow
			b.ReportAllocs()
			for b.Loop() {
				Orient(&p, &f)
			}
		})
	}
}
