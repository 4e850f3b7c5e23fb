package pipeline

import (
	"context"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podflow/podflow/exporter/internal/aggregate"
	"github.com/podflow/podflow/exporter/internal/attribute"
	"github.com/podflow/podflow/exporter/internal/conntrack"
	"github.com/podflow/podflow/exporter/internal/ctflow"
	"github.com/podflow/podflow/exporter/internal/flow"
)

// created is the logged first packet of a connection, as the connection
// mode table's "n" rule delivers it (the prefix: no tuple).
func created(l3 int) *flow.Record {
	return &flow.Record{Payload: udp4(client, server, 40000, 53, l3), Family: unix.AF_INET,
		CT: flow.Conntrack{Present: true, Info: flow.CTNew, Created: true}}
}

// untracked is a packet without a connection ("u").
func untracked(l3 int) *flow.Record {
	return &flow.Record{Payload: udp4(client, server, 40000, 53, l3), Family: unix.AF_INET}
}

func udpDelta(id uint32, orig, reply uint64) conntrack.Delta {
	return conntrack.Delta{
		Conn: conntrack.Conn{ID: id, Proto: 17,
			Orig:  conntrack.Tuple{Src: client, Dst: server, SrcPort: 40000, DstPort: 53},
			Reply: conntrack.Tuple{Src: server, Dst: client, SrcPort: 53, DstPort: 40000}},
		OrigPackets: orig, OrigBytes: orig * 100, ReplyPackets: reply, ReplyBytes: reply * 300,
	}
}

// TestConnectionModeCountsFromConntrack checks the split of connection
// mode: the logged first packet counts the connection alone, conntrack's
// deltas count the bytes and packets, untracked packets count as in
// packet mode, all into the series packet mode would use.
func TestConnectionModeCountsFromConntrack(t *testing.T) {
	p, tab := newPipeline(t, Config{Conns: ctflow.New(ctflow.Config{})})
	p.Handle(created(100))
	p.HandleConns([]conntrack.Delta{udpDelta(1, 5, 4), udpDelta(1, 2, 3)})
	p.Handle(untracked(60))
	p.Drain()

	s := onlyDNSSeries(t, tab)
	if s.Connections != 1 || s.Packets != [2]uint64{7 + 1, 7} || s.Bytes != [2]uint64{700 + 60, 2100} {
		t.Errorf("connections %d packets %v bytes %v, want 1 [8 7] [760 2100]", s.Connections, s.Packets, s.Bytes)
	}
}

// TestPacketModeCountsFirstPacket is the contrast: without a converter
// the first packet counts its bytes too, and deltas are ignored.
func TestPacketModeCountsFirstPacket(t *testing.T) {
	p, tab := newPipeline(t, Config{})
	p.Handle(created(100))
	p.HandleConns([]conntrack.Delta{udpDelta(1, 5, 4)})
	p.Drain()
	if s := tab.Snapshot(nil); len(s) != 1 || s[0].Bytes != [2]uint64{100, 0} || s[0].Connections != 1 {
		t.Fatalf("counted %+v, want the first packet's 100 bytes and its connection", s)
	}
}

func TestFullQueueDropsDeltasAndCounts(t *testing.T) {
	p, tab := newPipeline(t, Config{QueueSize: 1, Conns: ctflow.New(ctflow.Config{})})
	// A packet and 96 deltas (two flows each): the first batch (the
	// packet and 63 flows) waits in the queue, the next two are dropped,
	// one flow is left in the partial batch.
	p.Handle(untracked(60))
	ds := make([]conntrack.Delta, 3*BatchSize/2)
	for i := range ds {
		ds[i] = udpDelta(uint32(i), 1, 1)
	}
	p.HandleConns(ds)
	if s := p.Stats(); s.ConnsQueueFull != 2*BatchSize || s.QueueFull != 0 {
		t.Fatalf("queue_full %d, conntrack %d: want no packet and %d conntrack flows dropped", s.QueueFull, s.ConnsQueueFull, 2*BatchSize)
	}
	// A packet and 31 more deltas fill the partial batch: dropped too.
	p.Handle(untracked(60))
	p.HandleConns(ds[:31])
	if s := p.Stats(); s.ConnsQueueFull != 3*BatchSize-1 || s.QueueFull != 1 {
		t.Fatalf("queue_full %d, conntrack %d: want one packet and %d conntrack flows dropped", s.QueueFull, s.ConnsQueueFull, 3*BatchSize-1)
	}
	p.Drain()
	if s := tab.Snapshot(nil); len(s) != 1 || s[0].Packets != [2]uint64{1 + 32, 31} {
		t.Fatalf("counted %+v, want the first batch alone", s)
	}
}

// TestConntrackNamesTheService checks destination_service from the
// original tuple of a translated connection, through the Attributor.
func TestConntrackNamesTheService(t *testing.T) {
	vip := netip.MustParseAddr("10.96.0.53")
	r := resolver{client: ids[client], server: ids[server], vip: {Namespace: "b", Workload: "dns", Kind: flow.KindService}}
	tab := aggregate.New(aggregate.Config{})
	p := New(&Config{Conns: ctflow.New(ctflow.Config{})}, attribute.New(r, attribute.Config{Labels: attribute.Labels{DestinationService: true}}), tab)
	d := udpDelta(1, 1, 1)
	d.Orig.Dst, d.Status = vip, conntrack.StatusDstNAT
	p.HandleConns([]conntrack.Delta{d})
	p.Drain()
	if s := tab.Snapshot(nil); len(s) != 1 || s[0].Key.DstService != "dns" || s[0].Key.DstWorkload != "server" {
		t.Fatalf("counted %+v, want server's series named after Service dns", s)
	}
}

func TestHandleConnsAllocatesNothing(t *testing.T) {
	p, _ := newPipeline(t, Config{QueueSize: 4, Conns: ctflow.New(ctflow.Config{})})
	ds := []conntrack.Delta{udpDelta(1, 3, 2), udpDelta(2, 1, 0)}
	n := testing.AllocsPerRun(10*BatchSize, func() {
		p.HandleConns(ds)
		if len(p.queue) == cap(p.queue) {
			p.process(<-p.queue)
		}
	})
	if n != 0 {
		t.Fatalf("HandleConns allocates %v times per call", n)
	}
}

// BenchmarkHandleConns is the cost of one delta of two directions:
// conversion, hand-off, attribution and aggregation.
func BenchmarkHandleConns(b *testing.B) {
	p, _ := newPipeline(b, Config{Conns: ctflow.New(ctflow.Config{})})
	ds := make([]conntrack.Delta, 256)
	for i := range ds {
		ds[i] = udpDelta(uint32(i), 3, 2)
	}
	b.ReportAllocs()
	for b.Loop() {
		p.HandleConns(ds)
		for len(p.queue) > 0 {
			p.process(<-p.queue)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ds)), "ns/delta")
}

// TestHandleConnsLetsTheAggregatorKeepPace hands over a dump's deltas,
// many times the queue, on one core (GOMAXPROCS 1, as a pod limited to
// one CPU runs): the aggregator must get to run between batches, so that
// nothing is dropped while it is idle.
func TestHandleConnsLetsTheAggregatorKeepPace(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	p, tab := newPipeline(t, Config{QueueSize: 2, FlushInterval: time.Hour, Conns: ctflow.New(ctflow.Config{})})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	ds := make([]conntrack.Delta, 50*BatchSize) // 100 batches of two flows a delta
	for i := range ds {
		ds[i] = udpDelta(uint32(i), 1, 1) //nolint:gosec // small
	}
	p.HandleConns(ds)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s := p.Stats(); s.ConnsQueueFull != 0 {
		t.Errorf("%d conntrack flows dropped at the hand-off, want none", s.ConnsQueueFull)
	}
	if s := onlyDNSSeries(t, tab); s.Packets != [2]uint64{uint64(len(ds)), uint64(len(ds))} {
		t.Errorf("packets %v, want %d each way", s.Packets, len(ds))
	}
}
