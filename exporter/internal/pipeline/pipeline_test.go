package pipeline

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/podflow/podflow/exporter/internal/aggregate"
	"github.com/podflow/podflow/exporter/internal/attribute"
	"github.com/podflow/podflow/exporter/internal/collector"
	"github.com/podflow/podflow/exporter/internal/decode"
	"github.com/podflow/podflow/exporter/internal/flow"
)

type resolver map[netip.Addr]flow.Endpoint

func (r resolver) Lookup(a netip.Addr) (flow.Endpoint, bool) {
	ep, ok := r[a]
	return ep, ok
}

var (
	client = netip.MustParseAddr("10.0.0.1")
	server = netip.MustParseAddr("10.0.0.2")
	ids    = resolver{
		client: {Namespace: "a", Workload: "client", Kind: flow.KindDeployment},
		server: {Namespace: "b", Workload: "server", Kind: flow.KindStatefulSet},
	}
)

// udp4 builds an IPv4 UDP packet of total length l3 from src:sport to
// dst:dport, as NFLOG would deliver its first bytes.
func udp4(src, dst netip.Addr, sport, dport uint16, l3 int) []byte {
	b := make([]byte, 28)
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(l3))
	b[8] = 64
	b[9] = 17
	s, d := src.As4(), dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	binary.BigEndian.PutUint16(b[20:], sport)
	binary.BigEndian.PutUint16(b[22:], dport)
	binary.BigEndian.PutUint16(b[24:], uint16(l3-20))
	return b
}

func newPipeline(t testing.TB, cfg Config) (*Pipeline, *aggregate.Table) {
	t.Helper()
	tab := aggregate.New(aggregate.Config{})
	return New(&cfg, attribute.New(ids, attribute.Config{}), tab), tab
}

func request(l3 int) *flow.Record {
	return &flow.Record{Payload: udp4(client, server, 40000, 53, l3), Family: unix.AF_INET,
		CT: flow.Conntrack{Present: true, Info: flow.CTNew, OrigSrc: client, OrigDst: server, OrigSrcPort: 40000, OrigDstPort: 53}}
}

func response(l3 int) *flow.Record {
	return &flow.Record{Payload: udp4(server, client, 53, 40000, l3), Family: unix.AF_INET,
		CT: flow.Conntrack{Present: true, Info: flow.CTEstablishedReply, OrigSrc: client, OrigDst: server, OrigSrcPort: 40000, OrigDstPort: 53}}
}

func TestCountsEveryPacketOnce(t *testing.T) {
	p, tab := newPipeline(t, Config{SampleRate: 2, FlushInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()

	// 150 requests of 100 bytes and 150 replies of 300: two full batches
	// cross the queue, the rest is drained at the end.
	for range 150 {
		p.Handle(request(100))
		p.Handle(response(300))
	}
	p.Handle(&flow.Record{Payload: []byte{0x45, 0}, Family: unix.AF_INET}) // truncated
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	s := onlyDNSSeries(t, tab)
	// Sampling at 1 in 2: each packet counts twice.
	if s.Packets != [2]uint64{300, 300} || s.Bytes != [2]uint64{30000, 90000} {
		t.Errorf("packets %v bytes %v", s.Packets, s.Bytes)
	}
	st := p.Stats()
	if st.DecodeErrors[decode.Truncated] != 1 || st.QueueFull != 0 {
		t.Errorf("stats = queue_full %d truncated %d", st.QueueFull, st.DecodeErrors[decode.Truncated])
	}
}

// onlyDNSSeries returns the one series tab holds, which must be the client's
// UDP to the server's port 53.
func onlyDNSSeries(t *testing.T, tab *aggregate.Table) aggregate.Series {
	t.Helper()
	snap := tab.Snapshot(nil)
	if len(snap) != 1 {
		t.Fatalf("%d series, want 1: %+v", len(snap), snap)
	}
	s := snap[0]
	want := flow.Key{SrcNamespace: "a", SrcWorkload: "client", SrcKind: flow.KindDeployment,
		DstNamespace: "b", DstWorkload: "server", DstKind: flow.KindStatefulSet, DstPort: 53, Proto: flow.ProtoUDP}
	if s.Key != want {
		t.Errorf("key = %+v, want %+v", s.Key, want)
	}
	return s
}

func TestFullQueueDropsAndCounts(t *testing.T) {
	p, tab := newPipeline(t, Config{QueueSize: 1})
	// No aggregator running: the first full batch fills the queue, the
	// next two are dropped whole.
	for range 3 * BatchSize {
		p.Handle(request(100))
	}
	p.Handle(request(100)) // partial batch
	if got := p.Stats().QueueFull; got != 2*BatchSize {
		t.Fatalf("queue_full = %d, want %d", got, 2*BatchSize)
	}
	p.Drain()
	if s := tab.Snapshot(nil); len(s) != 1 || s[0].Packets[flow.Original] != BatchSize+1 {
		t.Fatalf("counted %+v, want %d packets", s, BatchSize+1)
	}
}

func TestPartialBatchIsFlushed(t *testing.T) {
	p, tab := newPipeline(t, Config{FlushInterval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = p.Run(ctx) }()
	p.Handle(request(100))
	deadline := time.Now().Add(10 * time.Second)
	for tab.Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a lone packet was never counted")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestIdleSeriesAreEvicted(t *testing.T) {
	now := time.Unix(1000, 0)
	tab := aggregate.New(aggregate.Config{IdleTimeout: time.Minute, Now: func() time.Time { return now }})
	p := New(&Config{EvictInterval: 5 * time.Millisecond, Now: func() time.Time { return now }}, attribute.New(ids, attribute.Config{}), tab)
	p.Handle(request(100))
	p.Drain()
	if tab.Len() != 1 {
		t.Fatal("not counted")
	}
	now = now.Add(2 * time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = p.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for tab.Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the idle series was never evicted")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHandleAllocatesNothing(t *testing.T) {
	p, _ := newPipeline(t, Config{QueueSize: 4, MTUs: linkMTU(1500)})
	recs := []*flow.Record{request(100), {Payload: tcp4(20000), Family: unix.AF_INET, OutIf: 3}}
	i := 0
	n := testing.AllocsPerRun(10*BatchSize, func() {
		p.Handle(recs[i&1])
		i++
		if len(p.queue) == cap(p.queue) {
			p.process(<-p.queue)
		}
	})
	if n != 0 {
		t.Fatalf("Handle allocates %v times per packet", n)
	}
}

// BenchmarkPipeline is the per-packet cost of decode, orient, hand-off,
// attribution and aggregation.
func BenchmarkPipeline(b *testing.B) {
	run := func(b *testing.B, cfg Config, recs ...*flow.Record) {
		p, _ := newPipeline(b, cfg)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			p.Handle(recs[i%len(recs)])
			i++
			if len(p.queue) > 0 {
				p.process(<-p.queue)
			}
		}
	}
	b.Run("small", func(b *testing.B) { run(b, Config{}, request(100), response(1500)) })
	// With the MTUs known, as in production, and one in three packets a
	// TSO super-packet.
	b.Run("offload", func(b *testing.B) {
		run(b, Config{MTUs: linkMTU(1500)}, request(100), response(1500), &flow.Record{Payload: tcp4(20000), Family: unix.AF_INET, OutIf: 3})
	})
}

func TestDropsUntilSynced(t *testing.T) {
	synced := false
	tab := aggregate.New(aggregate.Config{})
	p := New(&Config{Synced: func() bool { return synced }}, attribute.New(ids, attribute.Config{}), tab)
	for range 3 {
		p.Handle(request(100))
	}
	p.Drain()
	if tab.Len() != 0 || p.Stats().NotSynced != 3 {
		t.Fatalf("before sync: %d series, not_synced %d; want 0 and 3", tab.Len(), p.Stats().NotSynced)
	}
	synced = true
	p.Handle(request(100))
	p.Drain()
	if s := tab.Snapshot(nil); len(s) != 1 || s[0].Packets[flow.Original] != 1 {
		t.Fatalf("after sync: %+v", s)
	}
}

// TestUnnamedProtocolsShareOneSeries sends GRE and IPv6-in-IPv4 between
// the same endpoints: both show protocol="other", so they must be one
// series, and the scrape podflow serves must pass the pedantic registry's
// checks (two series with one label set fail the whole scrape).
func TestUnnamedProtocolsShareOneSeries(t *testing.T) {
	p, tab := newPipeline(t, Config{})
	for _, proto := range []byte{47, 41, 47} {
		b := udp4(client, server, 0, 0, 100)[:20]
		b[9] = proto
		p.Handle(&flow.Record{Payload: b, Family: unix.AF_INET})
	}
	p.Drain()

	flows := collector.NewFlows(tab, attribute.Labels{})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(flows)
	if _, err := reg.Gather(); err != nil {
		t.Fatalf("pedantic registry: %v", err)
	}
	// The production scrape path skips the registry's checks: it must
	// agree with the checked one on its own.
	mfs, err := collector.Gatherers{Flows: flows, Self: prometheus.NewRegistry()}.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	packets := 0.0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			id := mf.GetName() + fmt.Sprint(m.GetLabel())
			if seen[id] {
				t.Errorf("two samples with one label set: %s", id)
			}
			seen[id] = true
			if mf.GetName() == "podflow_packets_total" {
				packets += m.GetCounter().GetValue()
			}
		}
	}
	if packets != 3 || tab.Len() != 1 {
		t.Errorf("%v packets in %d series, want 3 in 1", packets, tab.Len())
	}
}

// linkMTU is a fake of offload.Links: every interface has the same MTU.
type linkMTU uint32

func (m linkMTU) MTU(in, out uint32) uint32 {
	if in == 0 && out == 0 {
		return 0
	}
	return uint32(m)
}

// tcp4 builds the first 40 bytes of an IPv4 TCP segment (no options) from
// client:40000 to server:80 whose total length field says l3.
func tcp4(l3 uint16) []byte {
	b := make([]byte, 40)
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], l3)
	b[8], b[9] = 64, 6
	s, d := client.As4(), server.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	binary.BigEndian.PutUint16(b[20:], 40000)
	binary.BigEndian.PutUint16(b[22:], 80)
	b[32], b[33] = 5<<4, flow.TCPAck
	return b
}

// TestSuperPacketsCountAsWirePackets: a GSO, GRO or BIG TCP super-packet
// counts as the segments a link of its interfaces' MTU carries, with the
// headers of each.
func TestSuperPacketsCountAsWirePackets(t *testing.T) {
	established := flow.Conntrack{Present: true, Info: flow.CTEstablished, OrigSrc: client, OrigDst: server, OrigSrcPort: 40000, OrigDstPort: 80}
	for _, tc := range []struct {
		name           string
		l3             uint16 // 0: BIG TCP
		outIf          uint32
		packets, bytes uint64
	}{
		{"fits the MTU", 1500, 3, 1, 1500},
		{"TSO: ten full segments and a short one", 40 + 10*1460 + 100, 3, 11, 40 + 10*1460 + 100 + 10*40},
		{"BIG TCP: at least 64 KiB", 0, 3, 45, 65536 + 44*40},
		{"no interface known: as logged", 40 + 10*1460, 0, 1, 40 + 10*1460},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tab := aggregate.New(aggregate.Config{})
			p := New(&Config{MTUs: linkMTU(1500)}, attribute.New(ids, attribute.Config{}), tab)
			p.Handle(&flow.Record{Payload: tcp4(tc.l3), Family: unix.AF_INET, CT: established, OutIf: tc.outIf})
			p.Drain()
			s := tab.Snapshot(nil)
			if len(s) != 1 || s[0].Packets[flow.Original] != tc.packets || s[0].Bytes[flow.Original] != tc.bytes {
				t.Fatalf("counted %+v, want %d packets of %d bytes in all", s, tc.packets, tc.bytes)
			}
		})
	}
}

// keepPort attributes only the flows to one port, under a key naming it.
type keepPort uint16

func (k keepPort) Attribute(f *flow.Flow, key *flow.Key) bool {
	*key = flow.Key{DstPort: f.Port, Proto: f.Proto}
	return f.Port == uint16(k)
}

// recordingTable keeps what the pipeline adds and how often it evicts.
type recordingTable struct {
	ups    []aggregate.Update
	scales []uint32
	evicts int
}

func (r *recordingTable) AddBatch(_ time.Time, ups []aggregate.Update, scale uint32) {
	r.ups = append(r.ups, ups...)
	r.scales = append(r.scales, scale)
}

func (r *recordingTable) Evict(time.Time) int { r.evicts++; return 0 }

// TestAnyAttributorAndTable runs the pipeline over its two seams alone:
// only what the attributor keeps reaches the table, once, with the
// sample rate.
func TestAnyAttributorAndTable(t *testing.T) {
	tab := &recordingTable{}
	p := New(&Config{SampleRate: 4, FlushInterval: time.Hour}, keepPort(53), tab)
	for range 3 {
		p.Handle(request(100))
		p.Handle(&flow.Record{Payload: udp4(client, server, 40000, 80, 100), Family: unix.AF_INET})
	}
	p.Drain()
	if len(tab.ups) != 3 {
		t.Fatalf("table got %d updates, want the 3 to port 53: %+v", len(tab.ups), tab.ups)
	}
	for _, u := range tab.ups {
		if u.Key.DstPort != 53 || u.Bytes != 100 || u.Dir != flow.Original {
			t.Errorf("update %+v, want 100 bytes to port 53, original", u)
		}
	}
	for _, s := range tab.scales {
		if s != 4 {
			t.Errorf("scale %d, want the sample rate 4", s)
		}
	}
}

// rememberingNamer names every flow with the last destination remembered.
type rememberingNamer struct{ last netip.Addr }

func (r *rememberingNamer) Remember(p *flow.Packet)           { r.last = p.Dst }
func (r *rememberingNamer) Name(_ *flow.Packet, f *flow.Flow) { f.Service = r.last }

// TestPreDNATRecordsNameButDoNotCount: a first packet logged before DNAT
// goes to the namer only; the connection's packets are named by it.
func TestPreDNATRecordsNameButDoNotCount(t *testing.T) {
	tab := &recordingTable{}
	namer := &rememberingNamer{}
	cluster := netip.MustParseAddr("10.96.0.10")
	p := New(&Config{FlushInterval: time.Hour, Services: namer}, serviceKey{}, tab)
	p.Handle(&flow.Record{Payload: udp4(client, cluster, 40000, 53, 100), Family: unix.AF_INET, PreDNAT: true})
	p.Handle(request(100))
	p.Drain()
	if len(tab.ups) != 1 || tab.ups[0].Key.DstService != cluster.String() {
		t.Fatalf("table got %+v, want one update named after %v", tab.ups, cluster)
	}
}

// serviceKey keeps every flow under its Service's address.
type serviceKey struct{}

func (serviceKey) Attribute(f *flow.Flow, k *flow.Key) bool {
	*k = flow.Key{DstService: f.Service.String()}
	return true
}
