package ctflow

import (
	"math"
	"net/netip"
	"testing"

	"github.com/podflow/podflow/exporter/internal/conntrack"
	"github.com/podflow/podflow/exporter/internal/flow"
)

var (
	pod      = netip.MustParseAddr("10.244.1.5")
	backend  = netip.MustParseAddr("10.244.2.7")
	cluster  = netip.MustParseAddr("10.96.0.10")
	nodeIP   = netip.MustParseAddr("192.168.1.10")
	outside  = netip.MustParseAddr("203.0.113.9")
	loopback = netip.MustParseAddr("127.0.0.1")
)

func tuple(src netip.Addr, sport uint16, dst netip.Addr, dport uint16) conntrack.Tuple {
	return conntrack.Tuple{Src: src, Dst: dst, SrcPort: sport, DstPort: dport}
}

func delta(id uint32, proto uint8, orig, reply conntrack.Tuple, status uint32, counts [4]uint64) conntrack.Delta {
	return conntrack.Delta{
		Conn:        conntrack.Conn{ID: id, Proto: proto, Orig: orig, Reply: reply, Status: status},
		OrigPackets: counts[0], OrigBytes: counts[1], ReplyPackets: counts[2], ReplyBytes: counts[3],
	}
}

type locals map[netip.Addr]bool

func (l locals) Local(a netip.Addr) bool { return l[a] || a.IsLoopback() }

func TestConvert(t *testing.T) {
	const udp, tcp, icmp = 17, 6, 1
	for _, tc := range []struct {
		name string
		d    conntrack.Delta
		want []flow.Flow
	}{
		{
			name: "pod to pod, both directions",
			d:    delta(1, tcp, tuple(pod, 40000, backend, 8080), tuple(backend, 8080, pod, 40000), 0, [4]uint64{10, 1000, 8, 5000}),
			want: []flow.Flow{
				{Initiator: pod, Responder: backend, Port: 8080, Proto: flow.ProtoTCP, Dir: flow.Original, Packets: 10, Bytes: 1000},
				{Initiator: pod, Responder: backend, Port: 8080, Proto: flow.ProtoTCP, Dir: flow.Reply, Packets: 8, Bytes: 5000},
			},
		},
		{
			name: "a direction without packets is left out",
			d:    delta(2, udp, tuple(pod, 40000, backend, 53), tuple(backend, 53, pod, 40000), 0, [4]uint64{3, 300, 0, 0}),
			want: []flow.Flow{{Initiator: pod, Responder: backend, Port: 53, Proto: flow.ProtoUDP, Dir: flow.Original, Packets: 3, Bytes: 300}},
		},
		{
			name: "nothing moved",
			d:    delta(3, udp, tuple(pod, 40000, backend, 53), tuple(backend, 53, pod, 40000), 0, [4]uint64{}),
		},
		{
			name: "pod to ClusterIP: the backend responds, the Service is the original destination",
			d: delta(4, tcp, tuple(pod, 40000, cluster, 80), tuple(backend, 8080, pod, 40000), conntrack.StatusDstNAT,
				[4]uint64{5, 500, 4, 4000}),
			want: []flow.Flow{
				{Initiator: pod, Responder: backend, Service: cluster, ServicePort: 80, Port: 8080, Proto: flow.ProtoTCP, Dir: flow.Original, Packets: 5, Bytes: 500, DNAT: true},
				{Initiator: pod, Responder: backend, Service: cluster, ServicePort: 80, Port: 8080, Proto: flow.ProtoTCP, Dir: flow.Reply, Packets: 4, Bytes: 4000, DNAT: true},
			},
		},
		{
			// externalTrafficPolicy: Cluster: the entry node translates
			// the node port and masquerades, so the reply tuple goes to
			// the node's own address; the initiator is still the client.
			name: "outside client to a NodePort, translated and masqueraded",
			d: delta(5, tcp, tuple(outside, 51000, nodeIP, 30080), tuple(backend, 8080, nodeIP, 61000), conntrack.StatusDstNAT|conntrack.StatusSrcNAT,
				[4]uint64{6, 600, 5, 5000}),
			want: []flow.Flow{
				{Initiator: outside, Responder: backend, Service: nodeIP, ServicePort: 30080, Port: 8080, Proto: flow.ProtoTCP, Dir: flow.Original, Packets: 6, Bytes: 600, DNAT: true},
				{Initiator: outside, Responder: backend, Service: nodeIP, ServicePort: 30080, Port: 8080, Proto: flow.ProtoTCP, Dir: flow.Reply, Packets: 5, Bytes: 5000, DNAT: true},
			},
		},
		{
			// The backend's node of the same connection sees it after
			// the entry node's masquerade: from that node, untranslated.
			name: "the same NodePort connection on the backend's node",
			d: delta(6, tcp, tuple(nodeIP, 61000, backend, 8080), tuple(backend, 8080, nodeIP, 61000), 0,
				[4]uint64{6, 600, 5, 5000}),
			want: []flow.Flow{
				{Initiator: nodeIP, Responder: backend, Port: 8080, Proto: flow.ProtoTCP, Dir: flow.Original, Packets: 6, Bytes: 600},
				{Initiator: nodeIP, Responder: backend, Port: 8080, Proto: flow.ProtoTCP, Dir: flow.Reply, Packets: 5, Bytes: 5000},
			},
		},
		{
			name: "source NAT alone (pod to outside) names no Service",
			d: delta(7, tcp, tuple(pod, 40000, outside, 443), tuple(outside, 443, nodeIP, 40000), conntrack.StatusSrcNAT,
				[4]uint64{1, 60, 1, 60}),
			want: []flow.Flow{
				{Initiator: pod, Responder: outside, Port: 443, Proto: flow.ProtoTCP, Dir: flow.Original, Packets: 1, Bytes: 60},
				{Initiator: pod, Responder: outside, Port: 443, Proto: flow.ProtoTCP, Dir: flow.Reply, Packets: 1, Bytes: 60},
			},
		},
		{
			name: "IPv4-mapped addresses are unmapped",
			d: delta(8, icmp, tuple(netip.AddrFrom16(pod.As16()), 0, netip.AddrFrom16(backend.As16()), 0),
				tuple(netip.AddrFrom16(backend.As16()), 0, netip.AddrFrom16(pod.As16()), 0), 0, [4]uint64{1, 84, 1, 84}),
			want: []flow.Flow{
				{Initiator: pod, Responder: backend, Proto: flow.ProtoICMP, Dir: flow.Original, Packets: 1, Bytes: 84},
				{Initiator: pod, Responder: backend, Proto: flow.ProtoICMP, Dir: flow.Reply, Packets: 1, Bytes: 84},
			},
		},
		{
			name: "loopback: both ends local",
			d:    delta(9, tcp, tuple(nodeIP, 40000, nodeIP, 10250), tuple(nodeIP, 10250, nodeIP, 40000), 0, [4]uint64{1, 60, 1, 60}),
		},
		{
			name: "loopback: 127.0.0.1 translated to a local address",
			d: delta(10, tcp, tuple(loopback, 40000, loopback, 30080), tuple(nodeIP, 8080, loopback, 40000), conntrack.StatusDstNAT,
				[4]uint64{1, 60, 1, 60}),
		},
		{
			name: "one local end is not loopback",
			d:    delta(11, tcp, tuple(nodeIP, 40000, backend, 8080), tuple(backend, 8080, nodeIP, 40000), 0, [4]uint64{1, 60, 0, 0}),
			want: []flow.Flow{{Initiator: nodeIP, Responder: backend, Port: 8080, Proto: flow.ProtoTCP, Dir: flow.Original, Packets: 1, Bytes: 60}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New(Config{Local: locals{nodeIP: true}})
			got := c.Convert(nil, &tc.d)
			if len(got) != len(tc.want) {
				t.Fatalf("%d flows, want %d: %+v", len(got), len(tc.want), got)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("flow %d:\n got %+v\nwant %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestConvertAppends(t *testing.T) {
	c := New(Config{})
	d := delta(1, 6, tuple(pod, 1, backend, 2), tuple(backend, 2, pod, 1), 0, [4]uint64{1, 1, 1, 1})
	dst := c.Convert(make([]flow.Flow, 1, 8), &d)
	if len(dst) != 3 || dst[0] != (flow.Flow{}) {
		t.Fatalf("Convert replaced or dropped what dst held: %+v", dst)
	}
}

// TestOverlays checks that the encapsulations the table leaves out are
// left out per direction as the table would match each packet: its
// destination port after DNAT (the responder's port one way, the
// initiator's the other), and counted.
func TestOverlays(t *testing.T) {
	c := New(Config{Overlays: []Overlay{
		{Name: "vxlan", Proto: 17, Port: 4789},
		{Name: "vxlan", Proto: 17, Port: 8472},
		{Name: "ipip", Proto: 4},
	}})
	if got := c.OverlayNames(); len(got) != 2 || got[0] != "vxlan" || got[1] != "ipip" {
		t.Fatalf("OverlayNames() = %v", got)
	}
	for _, d := range []conntrack.Delta{
		// VXLAN from a random source port to 4789: one way only.
		delta(1, 17, tuple(nodeIP, 50000, backend, 4789), tuple(backend, 4789, nodeIP, 50000), 0, [4]uint64{7, 700, 0, 0}),
		delta(2, 17, tuple(nodeIP, 50000, backend, 8472), tuple(backend, 8472, nodeIP, 50000), 0, [4]uint64{3, 300, 0, 0}),
		// IP-in-IP: both ways.
		delta(3, 4, tuple(nodeIP, 0, backend, 0), tuple(backend, 0, nodeIP, 0), 0, [4]uint64{2, 200, 5, 500}),
	} {
		if got := c.Convert(nil, &d); len(got) != 0 {
			t.Errorf("delta %d: %+v, want nothing", d.ID, got)
		}
	}
	// A reply to port 4789 is an encapsulated packet; the way out to
	// port 9000 is not.
	d := delta(4, 17, tuple(nodeIP, 4789, backend, 9000), tuple(backend, 9000, nodeIP, 4789), 0, [4]uint64{1, 100, 4, 400})
	got := c.Convert(nil, &d)
	if len(got) != 1 || got[0].Dir != flow.Original || got[0].Packets != 1 {
		t.Errorf("udp 4789 to 9000: %+v, want the original direction alone", got)
	}
	if s := c.Stats(); s.Overlay[0] != 7+3+4 || s.Overlay[1] != 7 {
		t.Errorf("overlay packets = %v, want [14 7]", s.Overlay)
	}
}

// TestSampling checks that sampling keeps about one connection in N,
// always the same ones, whole.
func TestSampling(t *testing.T) {
	const rate, conns = 4, 40000
	c := New(Config{SampleRate: rate})
	kept := 0
	for id := range uint32(conns) {
		d := delta(id*7919, 17, tuple(pod, 1, backend, 2), tuple(backend, 2, pod, 1), 0, [4]uint64{1, 10, 1, 10})
		n := len(c.Convert(nil, &d))
		if again := len(c.Convert(nil, &d)); again != n || (n != 0 && n != 2) {
			t.Fatalf("connection %d: %d flows, then %d", d.ID, n, again)
		}
		if n > 0 {
			kept++
		}
	}
	if want := conns / rate; kept < want*9/10 || kept > want*11/10 {
		t.Errorf("kept %d connections of %d at 1 in %d, want about %d", kept, conns, rate, want)
	}
	if s := c.Stats(); s.SampledOut != uint64(2*(conns-kept)) {
		t.Errorf("sampled out %d, want %d", s.SampledOut, 2*(conns-kept))
	}
}

// TestLargeCountsSplit checks that a direction past the 32 bits of a flow
// is split into flows that add up.
func TestLargeCountsSplit(t *testing.T) {
	c := New(Config{})
	const bytes, packets = 3*math.MaxUint32 + 5, math.MaxUint32 + 1
	d := delta(1, 6, tuple(pod, 1, backend, 2), tuple(backend, 2, pod, 1), 0, [4]uint64{packets, bytes, 0, 0})
	var sumB, sumP uint64
	for _, f := range c.Convert(nil, &d) {
		sumB += uint64(f.Bytes)
		sumP += uint64(f.Packets)
	}
	if sumB != bytes || sumP != packets {
		t.Errorf("split into %d bytes and %d packets, want %d and %d", sumB, sumP, uint64(bytes), uint64(packets))
	}
}

func TestConvertAllocatesNothing(t *testing.T) {
	c := New(Config{Local: locals{}, Overlays: []Overlay{{Name: "vxlan", Proto: 17, Port: 4789}}})
	d := delta(1, 6, tuple(pod, 1, cluster, 80), tuple(backend, 8080, pod, 1), conntrack.StatusDstNAT, [4]uint64{1, 1, 1, 1})
	dst := make([]flow.Flow, 0, 8)
	if n := testing.AllocsPerRun(100, func() { dst = c.Convert(dst[:0], &d) }); n != 0 {
		t.Errorf("%v allocations per delta", n)
	}
}
