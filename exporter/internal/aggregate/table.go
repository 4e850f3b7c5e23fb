// Package aggregate counts bytes, packets and connections per series. A
// series is one flow.Key: flows are projected to their label set before
// they are counted, so two series never share the labels they are exposed
// with.
package aggregate

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/podflow/podflow/exporter/internal/flow"
)

// Counters are the running totals of one series. Bytes and Packets are
// indexed by flow.Direction.
type Counters struct {
	Bytes       [2]uint64
	Packets     [2]uint64
	Connections uint64
}

// Series is one series as Snapshot copies it.
type Series struct {
	Key flow.Key
	Counters
	// Created is when the series was first counted (Unix nanoseconds), so
	// that a series that comes back after an eviction is a visible reset.
	Created int64
}

// Update is one logged packet's contribution, as the batch API takes it:
// Packets wire packets (more than one for a segmentation offload
// super-packet) of Bytes bytes in all.
type Update struct {
	Key            flow.Key
	Dir            flow.Direction
	Bytes, Packets uint32
	NewConn        bool
}

// Config sets the table's limits.
type Config struct {
	// MaxSeries caps the number of series; a packet that would open a
	// series beyond it is dropped and counted. Zero means no cap.
	MaxSeries int
	// IdleTimeout is how long a series may go without a packet before
	// Evict removes it. Zero disables idle eviction.
	IdleTimeout time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Stats are the table's self-metrics.
type Stats struct {
	Series         int
	Limit          int
	Dropped        uint64 // packets whose new series the cap refused, scaled like the counters
	EvictedIdle    uint64
	EvictedDeleted uint64
}

type entry struct {
	Counters
	lastSeen int64
	created  int64
}

// Table holds the series. All methods are safe for concurrent use; the
// packet path takes the lock once per batch.
type Table struct {
	cfg Config

	mu     sync.Mutex
	series map[flow.Key]*entry

	count          atomic.Int64
	dropped        atomic.Uint64
	evictedIdle    atomic.Uint64
	evictedDeleted atomic.Uint64
}

// New returns an empty table.
func New(cfg Config) *Table {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxSeries < 0 {
		cfg.MaxSeries = 0
	}
	return &Table{cfg: cfg, series: make(map[flow.Key]*entry)}
}

// Add counts one packet, scaled by the sampling rate (scale packets of
// which one was logged; 0 counts as 1).
func (t *Table) Add(key flow.Key, dir flow.Direction, bytes uint32, newConn bool, scale uint32) { //nolint:gocritic // by value for callers' convenience; the packet path uses AddBatch
	now := t.cfg.Now().UnixNano()
	t.mu.Lock()
	t.add(now, &key, dir, bytes, 1, newConn, scaleOf(scale))
	t.mu.Unlock()
}

// AddBatch counts a batch of packets under one lock, all seen at now.
func (t *Table) AddBatch(now time.Time, ups []Update, scale uint32) {
	ns := now.UnixNano()
	s := scaleOf(scale)
	t.mu.Lock()
	for i := range ups {
		u := &ups[i]
		t.add(ns, &u.Key, u.Dir, u.Bytes, u.Packets, u.NewConn, s)
	}
	t.mu.Unlock()
}

func scaleOf(scale uint32) uint64 {
	if scale == 0 {
		return 1
	}
	return uint64(scale)
}

// add must be called with t.mu held.
func (t *Table) add(now int64, key *flow.Key, dir flow.Direction, bytes, packets uint32, newConn bool, scale uint64) {
	e, ok := t.series[*key]
	if !ok {
		if t.cfg.MaxSeries > 0 && len(t.series) >= t.cfg.MaxSeries {
			t.dropped.Add(uint64(packets) * scale)
			return
		}
		e = &entry{created: now}
		t.series[*key] = e
		t.count.Store(int64(len(t.series)))
	}
	d := dir & 1
	e.Bytes[d] += uint64(bytes) * scale
	e.Packets[d] += uint64(packets) * scale
	if newConn {
		e.Connections += scale
	}
	e.lastSeen = now
}

// Evict removes the series idle for longer than the idle timeout at now
// and returns how many it removed.
func (t *Table) Evict(now time.Time) int {
	if t.cfg.IdleTimeout <= 0 {
		return 0
	}
	deadline := now.Add(-t.cfg.IdleTimeout).UnixNano()
	n := 0
	t.mu.Lock()
	for k, e := range t.series {
		if e.lastSeen < deadline {
			delete(t.series, k)
			n++
		}
	}
	t.count.Store(int64(len(t.series)))
	t.mu.Unlock()
	t.evictedIdle.Add(uint64(n))
	return n
}

// Forget removes every series that names ep on either side: same
// namespace, workload and kind, and the same pod when ep.Pod is set (which
// matches only series that carry pod labels). It returns how many it
// removed.
func (t *Table) Forget(ep flow.Endpoint) int {
	ns := ep.Namespace
	if ep.Kind == flow.KindNode || ep.Kind == flow.KindNetwork {
		ns = ""
	}
	n := 0
	t.mu.Lock()
	for k := range t.series {
		src := k.SrcKind == ep.Kind && k.SrcWorkload == ep.Workload && k.SrcNamespace == ns &&
			(ep.Pod == "" || k.SrcPod == ep.Pod)
		dst := k.DstKind == ep.Kind && k.DstWorkload == ep.Workload && k.DstNamespace == ns &&
			(ep.Pod == "" || k.DstPod == ep.Pod)
		if src || dst {
			delete(t.series, k)
			n++
		}
	}
	t.count.Store(int64(len(t.series)))
	t.mu.Unlock()
	t.evictedDeleted.Add(uint64(n))
	return n
}

// Snapshot appends a copy of every series to dst[:0] and returns it. It
// holds the lock only while copying, so callers can reuse dst across
// scrapes and emit from it without blocking the packet path.
func (t *Table) Snapshot(dst []Series) []Series {
	dst = dst[:0]
	if n := t.Len(); cap(dst) < n {
		// Grow outside the lock; append covers series added meanwhile.
		dst = make([]Series, 0, n+n/8)
	}
	t.mu.Lock()
	for k, e := range t.series {
		dst = append(dst, Series{Key: k, Counters: e.Counters, Created: e.created})
	}
	t.mu.Unlock()
	return dst
}

// Len returns the number of series.
func (t *Table) Len() int { return int(t.count.Load()) }

// Stats returns the table's self-metrics.
func (t *Table) Stats() Stats {
	return Stats{
		Series:         int(t.count.Load()),
		Limit:          t.cfg.MaxSeries,
		Dropped:        t.dropped.Load(),
		EvictedIdle:    t.evictedIdle.Load(),
		EvictedDeleted: t.evictedDeleted.Load(),
	}
}
