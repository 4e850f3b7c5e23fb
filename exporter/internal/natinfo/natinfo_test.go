package natinfo

import (
	"net/netip"
	"testing"

	"github.com/podflow/podflow/exporter/internal/flow"
)

var (
	client4  = netip.MustParseAddr("10.244.1.2")
	cluster4 = netip.MustParseAddr("10.96.0.10")
	backend4 = netip.MustParseAddr("10.244.2.2")
	other4   = netip.MustParseAddr("10.244.1.9")
)

func udp(src netip.Addr, sport uint16, dst netip.Addr, dport uint16) *flow.Packet {
	return &flow.Packet{Proto: flow.ProtoUDP, Src: src, SrcPort: sport, Dst: dst, DstPort: dport}
}

// name orients p the way orient does for a packet with conntrack state:
// reply or original, new or not, translated here or not.
func name(t *Table, p *flow.Packet, dir flow.Direction, newConn, dnat bool) flow.Flow {
	f := flow.Flow{Proto: p.Proto, Dir: dir, NewConn: newConn, DNAT: dnat}
	t.Name(p, &f)
	return f
}

func TestNamesEveryPacketOfATranslatedConnection(t *testing.T) {
	tab := New(0)
	tab.Remember(udp(client4, 40000, cluster4, 80))
	for i, c := range []struct {
		p       *flow.Packet
		dir     flow.Direction
		newConn bool
	}{
		{udp(client4, 40000, backend4, 7001), flow.Original, true},
		{udp(backend4, 7001, client4, 40000), flow.Reply, false},
		{udp(client4, 40000, backend4, 7001), flow.Original, false},
	} {
		f := name(tab, c.p, c.dir, c.newConn, true)
		if f.Service != cluster4 || f.ServicePort != 80 {
			t.Errorf("packet %d: service %v:%d, want %v:80", i, f.Service, f.ServicePort, cluster4)
		}
	}
	if s := tab.Stats(); s.Named != 3 || s.Missed != 0 {
		t.Errorf("stats %+v, want 3 named", s)
	}
}

func TestLeavesUntranslatedAndUnknownConnections(t *testing.T) {
	tab := New(0)
	// Not translated here: the pre-DNAT record is consumed, nothing named.
	tab.Remember(udp(client4, 40001, backend4, 7001))
	if f := name(tab, udp(client4, 40001, backend4, 7001), flow.Original, true, false); f.Service.IsValid() {
		t.Errorf("untranslated connection named %v", f.Service)
	}
	if len(tab.first) != 0 {
		t.Errorf("pre-DNAT record of an untranslated connection kept: %v", tab.first)
	}
	// Translated, but its first packet was never seen: a counted miss.
	if f := name(tab, udp(other4, 40002, backend4, 7001), flow.Original, false, true); f.Service.IsValid() {
		t.Errorf("connection without a first packet named %v", f.Service)
	}
	// Conntrack already named it (the glue): left as it is.
	tab.Remember(udp(client4, 40003, cluster4, 80))
	f := flow.Flow{Proto: flow.ProtoUDP, Dir: flow.Original, NewConn: true, DNAT: true, Service: cluster4, ServicePort: 80}
	tab.Name(udp(client4, 40003, backend4, 7001), &f)
	if s := tab.Stats(); s.Named != 0 || s.Missed != 1 {
		t.Errorf("stats %+v, want 1 miss", s)
	}
}

// TestSampledFirstPacket: the kernel sampled the first packet's post-DNAT
// record out; the next packet of the connection finds its pre-DNAT one.
func TestSampledFirstPacket(t *testing.T) {
	tab := New(0)
	tab.Remember(udp(client4, 40000, cluster4, 80))
	if f := name(tab, udp(backend4, 7001, client4, 40000), flow.Reply, false, true); f.Service != cluster4 {
		t.Errorf("service %v, want %v", f.Service, cluster4)
	}
}

// TestBounded: the Table never holds more than its bound per generation,
// keeps what is in use, and counts what it forgets.
func TestBounded(t *testing.T) {
	const max = 8
	tab := New(max)
	open := func(port uint16) {
		tab.Remember(udp(client4, port, cluster4, 80))
		name(tab, udp(client4, port, backend4, 7001), flow.Original, true, true)
	}
	open(1)
	for port := uint16(2); port < 100; port++ {
		open(port)
		// Connection 1 stays busy: it is never forgotten.
		if f := name(tab, udp(client4, 1, backend4, 7001), flow.Original, false, true); f.Service != cluster4 {
			t.Fatalf("busy connection forgotten after %d others", port)
		}
		if len(tab.cur) > max || len(tab.old) > max || len(tab.first) > max {
			t.Fatalf("sizes %d, %d, %d over the bound %d", len(tab.cur), len(tab.old), len(tab.first), max)
		}
	}
	if f := name(tab, udp(client4, 2, backend4, 7001), flow.Original, false, true); f.Service.IsValid() {
		t.Errorf("an idle connection of long ago is still named")
	}
	if s := tab.Stats(); s.Forgotten == 0 || s.Missed != 1 {
		t.Errorf("stats %+v, want forgotten connections and one miss", s)
	}
	for port := uint16(1000); port < 1000+2*max; port++ {
		tab.Remember(udp(other4, port, cluster4, 80)) // never followed
	}
	if len(tab.first) > max {
		t.Errorf("%d pre-DNAT records kept, over the bound %d", len(tab.first), max)
	}
}

func TestNoAllocations(t *testing.T) {
	tab := New(0)
	pre, post, reply := udp(client4, 40000, cluster4, 80), udp(client4, 40000, backend4, 7001), udp(backend4, 7001, client4, 40000)
	tab.Remember(pre)
	name(tab, post, flow.Original, true, true)
	if n := testing.AllocsPerRun(1000, func() {
		name(tab, reply, flow.Reply, false, true)
		name(tab, post, flow.Original, false, true)
	}); n != 0 {
		t.Errorf("%v allocations per packet pair, want 0", n)
	}
}

func BenchmarkNewConnection(b *testing.B) {
	tab := New(0)
	var port uint16
	for b.Loop() {
		port++
		tab.Remember(udp(client4, port, cluster4, 80))
		name(tab, udp(client4, port, backend4, 7001), flow.Original, true, true)
	}
}

func BenchmarkPacket(b *testing.B) {
	tab := New(0)
	tab.Remember(udp(client4, 40000, cluster4, 80))
	p := udp(client4, 40000, backend4, 7001)
	name(tab, p, flow.Original, true, true)
	for b.Loop() {
		name(tab, p, flow.Original, false, true)
	}
}

// TestFirstOnlyRemembersNothingAfterTheFirstPacket checks connection
// mode's Table: the first packet is named, and nothing is kept for
// packets that the table no longer logs.
func TestFirstOnlyRemembersNothingAfterTheFirstPacket(t *testing.T) {
	tab := NewFirstOnly(0)
	tab.Remember(udp(client4, 40000, cluster4, 80))
	if f := name(tab, udp(client4, 40000, backend4, 7001), flow.Original, true, true); f.Service != cluster4 || f.ServicePort != 80 {
		t.Errorf("first packet: service %v:%d, want %v:80", f.Service, f.ServicePort, cluster4)
	}
	if len(tab.first) != 0 || len(tab.cur) != 0 || len(tab.old) != 0 {
		t.Errorf("kept %d first records and %d+%d connections, want none", len(tab.first), len(tab.cur), len(tab.old))
	}
	// A translated first packet without its pre-DNAT record is a miss;
	// an untranslated one consumes its record and is no miss.
	if f := name(tab, udp(other4, 40001, backend4, 7001), flow.Original, true, true); f.Service.IsValid() {
		t.Errorf("named %v without a pre-DNAT record", f.Service)
	}
	tab.Remember(udp(client4, 40002, backend4, 7001))
	name(tab, udp(client4, 40002, backend4, 7001), flow.Original, true, false)
	if s := tab.Stats(); s.Named != 1 || s.Missed != 1 || len(tab.first) != 0 {
		t.Errorf("stats %+v, %d first records: want 1 named, 1 missed, none kept", s, len(tab.first))
	}
}
