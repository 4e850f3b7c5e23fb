// Package pipeline wires the packet path: capture hands each record to
// Handle, which decodes and orients it into a batch on the reader's
// goroutine; full batches cross a bounded queue (a full queue drops the
// batch and counts its packets); one aggregator goroutine attributes each
// flow and adds the batch to the table under one lock.
//
// In connection mode a second producer fills the same batches: the
// conntrack source hands its deltas to HandleConns on its own goroutine,
// which turns each into flows (package ctflow) that take the same path,
// through the same Attributor, into the same table. The logged packets
// are then only connections' first packets, which count a connection and
// nothing else, and untracked or invalid packets, which count as in
// packet mode.
package pipeline

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/podflow/podflow/exporter/internal/aggregate"
	"github.com/podflow/podflow/exporter/internal/conntrack"
	"github.com/podflow/podflow/exporter/internal/decode"
	"github.com/podflow/podflow/exporter/internal/flow"
	"github.com/podflow/podflow/exporter/internal/offload"
	"github.com/podflow/podflow/exporter/internal/orient"
)

// BatchSize is how many packets one hand-off carries.
const BatchSize = 64

// Config sizes the hand-off and sets the housekeeping intervals.
type Config struct {
	// QueueSize is how many full batches may wait for the aggregator
	// (--capture.queue-size).
	QueueSize int
	// SampleRate is the kernel's 1-in-N sampling rate; each packet
	// counts SampleRate times.
	SampleRate uint32
	// FlushInterval bounds how long a partial batch waits before it is
	// counted (and so how stale a scrape can be).
	FlushInterval time.Duration
	// EvictInterval is how often idle series are evicted.
	EvictInterval time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// MTUs names the MTU a packet's segments cross, so that a
	// segmentation offload super-packet counts as the packets on the wire
	// (package offload); nil counts every logged packet as one.
	MTUs MTUs
	// Services names the destination clients dialled before DNAT when
	// conntrack does not (natinfo.Table); nil leaves that to conntrack.
	Services ServiceNamer
	// Synced reports whether the source of identity knows the cluster.
	// Until it does, packets are dropped and counted: attributed now,
	// every node would report every connection under Unknown. Nil means
	// always synced.
	Synced func() bool
	// Conns turns conntrack deltas into flows (*ctflow.Converter), in
	// connection mode: the logged first packet of a connection then
	// counts the connection alone, its bytes and packets come from
	// conntrack. Nil is packet mode.
	Conns ConnConverter
}

// ConnConverter appends the flows of a conntrack delta to dst
// (*ctflow.Converter). It runs on the conntrack source's goroutine and
// must not block.
type ConnConverter interface {
	Convert(dst []flow.Flow, d *conntrack.Delta) []flow.Flow
}

// MTUs tells the smallest MTU of a packet's interfaces (ifindex in and
// out, 0 for none), or 0 when it knows neither (implemented by
// *offload.Links).
type MTUs interface {
	MTU(in, out uint32) uint32
}

// DefaultQueueSize is the default of --capture.queue-size: 256 batches of
// 64 packets, a quarter of a second at 65k packets per second.
const DefaultQueueSize = 256

type batch struct {
	n int
	// conns is how many of the n flows came from conntrack deltas.
	conns int
	flows [BatchSize]flow.Flow
}

// Stats are the pipeline's own counters.
type Stats struct {
	// QueueFull counts logged packets dropped because the queue was
	// full.
	QueueFull uint64
	// ConnsQueueFull counts the flows of conntrack deltas (one per
	// direction) dropped because the queue was full.
	ConnsQueueFull uint64
	// NotSynced counts packets dropped while the source of identity had
	// not synced yet, as the pair counters would have counted them: wire
	// packets, times the sample rate.
	NotSynced uint64
	// DecodeErrors counts undecodable packets, indexed by decode.Reason.
	DecodeErrors []uint64
}

// Attributor names a flow's series and says whether this node counts it
// (*attribute.Attributor).
type Attributor interface {
	Attribute(f *flow.Flow, k *flow.Key) bool
}

// Table counts attributed packets and forgets idle series
// (*aggregate.Table).
type Table interface {
	AddBatch(now time.Time, ups []aggregate.Update, scale uint32)
	Evict(now time.Time) int
}

// ServiceNamer joins the first packet of each connection, logged before
// DNAT, with the connection's later packets (*natinfo.Table). It runs on
// capture's goroutine and must not block.
type ServiceNamer interface {
	// Remember takes a first packet as logged before DNAT.
	Remember(p *flow.Packet)
	// Name sets the flow's Service from what was remembered.
	Name(p *flow.Packet, f *flow.Flow)
}

// Pipeline is the hand-off between capture and aggregation.
type Pipeline struct {
	cfg   Config
	attr  Attributor
	table Table

	queue chan *batch
	free  chan *batch

	curMu sync.Mutex // taken by Handle and by the partial-batch flush
	cur   *batch
	pkt   flow.Packet // Handle's scratch, guarded by curMu

	queueFull      atomic.Uint64
	connsQueueFull atomic.Uint64
	notSynced      atomic.Uint64
	ctScratch      []flow.Flow // HandleConns' scratch, owned by its one caller
	decodeErrs     [256]atomic.Uint64

	ups []aggregate.Update // owned by Run
}

// New returns a pipeline that attributes with attr and counts into table.
func New(config *Config, attr Attributor, table Table) *Pipeline {
	cfg := *config
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.SampleRate == 0 {
		cfg.SampleRate = 1
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = 200 * time.Millisecond
	}
	if cfg.EvictInterval <= 0 {
		cfg.EvictInterval = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Synced == nil {
		cfg.Synced = func() bool { return true }
	}

	p := &Pipeline{
		cfg:   cfg,
		attr:  attr,
		table: table,
		queue: make(chan *batch, cfg.QueueSize),
		// Every batch is in the queue, with the aggregator, being filled
		// or here: QueueSize+2 of them never run out.
		free: make(chan *batch, cfg.QueueSize+2),
		ups:  make([]aggregate.Update, BatchSize),
		// A delta is up to two flows, more only past 4 GiB a direction.
		ctScratch: make([]flow.Flow, 0, 8),
	}
	for range cfg.QueueSize + 1 {
		p.free <- new(batch)
	}
	p.cur = new(batch)
	return p
}

// Handle decodes and orients one record into the current batch. It runs
// on capture's goroutine, never blocks and allocates nothing.
func (p *Pipeline) Handle(rec *flow.Record) {
	p.curMu.Lock()
	if r := decode.Decode(rec, &p.pkt); r != decode.OK {
		p.curMu.Unlock()
		p.decodeErrs[r].Add(1)
		return
	}
	if rec.PreDNAT {
		// What the client dialled, not traffic: only for naming.
		if p.cfg.Services != nil {
			p.cfg.Services.Remember(&p.pkt)
		}
		p.curMu.Unlock()
		return
	}
	b := p.cur
	f := &b.flows[b.n]
	orient.Orient(&p.pkt, f)
	if p.cfg.MTUs != nil && p.pkt.Length > offload.MinMTU {
		f.Packets, f.Bytes = offload.Wire(&p.pkt, p.cfg.MTUs.MTU(p.pkt.InIf, p.pkt.OutIf))
	}
	if p.cfg.Services != nil {
		p.cfg.Services.Name(&p.pkt, f)
	}
	if p.cfg.Conns != nil && f.NewConn {
		// Connection mode: the connection's bytes and packets, this
		// first packet's included, come from conntrack.
		f.Bytes, f.Packets = 0, 0
	}
	b.n++
	if b.n == BatchSize {
		p.cur = p.handOff(b)
	}
	p.curMu.Unlock()
}

// HandleConns turns conntrack deltas into flows in the current batch. It
// runs on the conntrack source's goroutine, one call at a time, never
// blocks and, in steady state, allocates nothing. It takes the batch's
// lock once per delta, not for the whole call: a dump hands over many
// thousands of deltas at once, and capture must not wait for them.
// Only in connection mode (Config.Conns).
func (p *Pipeline) HandleConns(ds []conntrack.Delta) {
	if p.cfg.Conns == nil {
		return
	}
	for i := range ds {
		p.ctScratch = p.cfg.Conns.Convert(p.ctScratch[:0], &ds[i])
		if len(p.ctScratch) == 0 {
			continue
		}
		handed := false
		p.curMu.Lock()
		for j := range p.ctScratch {
			b := p.cur
			b.flows[b.n] = p.ctScratch[j]
			b.n++
			b.conns++
			if b.n == BatchSize {
				p.cur = p.handOff(b)
				handed = true
			}
		}
		p.curMu.Unlock()
		if handed {
			// A dump hands over a whole table at once: yielding after
			// each full batch lets the aggregator on the same core keep
			// pace, as the capture reader does after each NFLOG batch,
			// instead of waiting for preemption while the queue
			// overflows.
			runtime.Gosched()
		}
	}
}

// handOff queues the full batch b and returns an empty batch; with the
// queue full it drops b's flows, counts them and returns b emptied.
// Called with curMu held.
func (p *Pipeline) handOff(b *batch) *batch {
	select {
	case p.queue <- b:
	default:
		p.queueFull.Add(uint64(b.n - b.conns)) //nolint:gosec // 0 <= conns <= n <= BatchSize
		p.connsQueueFull.Add(uint64(b.conns))  //nolint:gosec // as above
		b.n, b.conns = 0, 0
		return b
	}
	select {
	case nb := <-p.free:
		return nb
	default:
		return new(batch)
	}
}

// Run aggregates queued batches until ctx is done, then drains what is
// queued and the partial batch, and returns. Stop capture before
// cancelling ctx so that nothing is left behind.
func (p *Pipeline) Run(ctx context.Context) error {
	flush := time.NewTicker(p.cfg.FlushInterval)
	defer flush.Stop()
	evict := time.NewTicker(p.cfg.EvictInterval)
	defer evict.Stop()
	for {
		select {
		case b := <-p.queue:
			p.process(b)
		case <-flush.C:
			p.flushPartial()
		case <-evict.C:
			p.table.Evict(p.cfg.Now())
		case <-ctx.Done():
			p.Drain()
			return nil
		}
	}
}

// Drain counts every queued batch and the partial one.
func (p *Pipeline) Drain() {
	for {
		select {
		case b := <-p.queue:
			p.process(b)
		default:
			p.flushPartial()
			return
		}
	}
}

// flushPartial takes the batch being filled, if it holds anything, and
// counts it.
func (p *Pipeline) flushPartial() {
	p.curMu.Lock()
	b := p.cur
	if b.n == 0 {
		p.curMu.Unlock()
		return
	}
	select {
	case p.cur = <-p.free:
	default:
		p.cur = new(batch)
	}
	p.curMu.Unlock()
	p.process(b)
}

// process attributes a batch, adds it to the table and recycles it.
func (p *Pipeline) process(b *batch) {
	if !p.cfg.Synced() {
		n := uint64(0)
		for i := range b.n {
			n += uint64(b.flows[i].Packets)
		}
		p.notSynced.Add(n * scaleOf(p.cfg.SampleRate))
		p.recycle(b)
		return
	}
	n := 0
	for i := range b.n {
		f := &b.flows[i]
		u := &p.ups[n]
		if !p.attr.Attribute(f, &u.Key) {
			continue
		}
		u.Dir, u.Bytes, u.Packets, u.NewConn = f.Dir, f.Bytes, f.Packets, f.NewConn
		n++
	}
	p.table.AddBatch(p.cfg.Now(), p.ups[:n], p.cfg.SampleRate)
	p.recycle(b)
}

// recycle empties b and returns it to the free list.
func (p *Pipeline) recycle(b *batch) {
	b.n, b.conns = 0, 0
	select {
	case p.free <- b:
	default:
	}
}

// Stats returns the pipeline's counters.
func (p *Pipeline) Stats() Stats {
	s := Stats{QueueFull: p.queueFull.Load(), ConnsQueueFull: p.connsQueueFull.Load(), NotSynced: p.notSynced.Load(), DecodeErrors: make([]uint64, len(p.decodeErrs))}
	for i := range p.decodeErrs {
		s.DecodeErrors[i] = p.decodeErrs[i].Load()
	}
	return s
}

// scaleOf is how many packets one logged packet stands for at a 1-in-rate
// sampling rate.
func scaleOf(rate uint32) uint64 { return max(uint64(rate), 1) }
