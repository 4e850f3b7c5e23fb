package conntrack

import (
	"net/netip"
	"testing"
)

// conn builds a UDP connection from 10.0.0.1:port to 10.0.0.2:53 with
// kernel ID id.
func conn(id uint32, port uint16) Conn {
	src, dst := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	return Conn{
		ID: id, Proto: 17,
		Orig:  Tuple{Src: src, Dst: dst, SrcPort: port, DstPort: 53},
		Reply: Tuple{Src: dst, Dst: src, SrcPort: 53, DstPort: port},
	}
}

// at is c with totals: op packets of ob bytes sent, rp of rb answered.
func at(c Conn, op, ob, rp, rb uint64) sample {
	return sample{Conn: c, origPackets: op, origBytes: ob, replyPackets: rp, replyBytes: rb}
}

// sums totals what the deltas counted per connection key, and finals.
type sums struct {
	t      *testing.T
	total  map[key][4]uint64
	finals map[key]int
}

func newSums(t *testing.T) *sums {
	return &sums{t: t, total: map[key][4]uint64{}, finals: map[key]int{}}
}

func (s *sums) take(tr *tracker) {
	for _, d := range tr.out {
		k := d.key()
		v := s.total[k]
		v[0] += d.OrigPackets
		v[1] += d.OrigBytes
		v[2] += d.ReplyPackets
		v[3] += d.ReplyBytes
		s.total[k] = v
		if d.Final {
			s.finals[k]++
		}
		if !d.Final && d.OrigPackets == 0 && d.OrigBytes == 0 && d.ReplyPackets == 0 && d.ReplyBytes == 0 {
			s.t.Errorf("zero delta emitted for %+v", d.Conn)
		}
	}
	tr.out = tr.out[:0]
}

func (s *sums) want(c Conn, op, ob, rp, rb uint64) {
	s.t.Helper()
	k := c.key()
	if got, want := s.total[k], [4]uint64{op, ob, rp, rb}; got != want {
		s.t.Errorf("conn %d:%d counted %v, want %v", c.ID, c.Orig.SrcPort, got, want)
	}
}

func dump(tr *tracker, entries ...sample) {
	tr.beginDump()
	tr.dumpEntries(entries)
	tr.endDump()
}

func TestBaselineThenCountFromZero(t *testing.T) {
	var st counters
	tr := newTracker(&st)
	s := newSums(t)
	old, fresh, late := conn(1, 1000), conn(2, 1001), conn(3, 1002)

	dump(tr, at(old, 10, 1000, 5, 500)) // baseline: not counted
	s.take(tr)
	s.want(old, 0, 0, 0, 0)
	if st.baseline.Load() != 1 {
		t.Errorf("Baseline = %d, want 1", st.baseline.Load())
	}

	dump(tr, at(old, 12, 1200, 6, 600), at(fresh, 3, 300, 1, 100))
	s.take(tr)
	s.want(old, 2, 200, 1, 100)
	s.want(fresh, 3, 300, 1, 100) // first seen after the baseline: from zero

	ev := at(late, 4, 400, 4, 400) // only ever seen at destroy
	tr.destroy(&ev)
	ev = at(fresh, 5, 500, 2, 200)
	tr.destroy(&ev)
	s.take(tr)
	s.want(late, 4, 400, 4, 400)
	s.want(fresh, 5, 500, 2, 200)
	if s.finals[ev.key()] != 1 {
		t.Errorf("fresh: %d final deltas, want 1", s.finals[ev.key()])
	}
	if _, ok := tr.conns[ev.key()]; ok {
		t.Error("a destroyed connection is still tracked")
	}
	if got := st.tracked.Load(); got != 1 {
		t.Errorf("Tracked = %d, want 1", got)
	}
}

func TestZeroDeltasSkipped(t *testing.T) {
	tr := newTracker(&counters{})
	c := conn(1, 1000)
	dump(tr)
	dump(tr, at(c, 1, 100, 0, 0))
	if len(tr.out) != 1 {
		t.Fatalf("%d deltas, want 1", len(tr.out))
	}
	tr.out = tr.out[:0]
	dump(tr, at(c, 1, 100, 0, 0))
	if len(tr.out) != 0 {
		t.Errorf("an idle connection emitted %+v", tr.out)
	}
}

func TestAccountingOffEntries(t *testing.T) {
	// Connections created while nf_conntrack_acct was 0 carry no
	// counters: they read as zero all their life.
	tr := newTracker(&counters{})
	s := newSums(t)
	c := conn(1, 1000)
	dump(tr)
	dump(tr, at(c, 0, 0, 0, 0))
	s.take(tr)
	ev := at(c, 0, 0, 0, 0)
	tr.destroy(&ev)
	s.take(tr)
	s.want(c, 0, 0, 0, 0)
	if s.finals[ev.key()] != 1 {
		t.Error("no final delta for a connection without counters")
	}
}

func TestDestroyDuringDumpNotCountedTwice(t *testing.T) {
	tr := newTracker(&counters{})
	s := newSums(t)
	a, b := conn(1, 1000), conn(2, 1001)
	dump(tr)
	dump(tr, at(a, 1, 100, 1, 100))
	s.take(tr)

	tr.beginDump()
	// Both end while the dump runs; the dump saw them before.
	evA, evB := at(a, 5, 500, 5, 500), at(b, 2, 200, 2, 200)
	tr.destroy(&evA)
	tr.destroy(&evB)
	s.take(tr)
	tr.dumpEntries([]sample{at(a, 3, 300, 3, 300), at(b, 1, 100, 1, 100)})
	tr.endDump()
	s.take(tr)
	s.want(a, 5, 500, 5, 500)
	s.want(b, 2, 200, 2, 200)
	if len(tr.conns) != 0 {
		t.Errorf("dump brought back %d ended connections", len(tr.conns))
	}
	// Later dumps must not list them again, and nothing is lost.
	dump(tr)
	dump(tr)
	s.take(tr)
	s.want(a, 5, 500, 5, 500)
	if got := tr.st.lost.Load(); got != 0 {
		t.Errorf("Lost = %d, want 0", got)
	}
}

func TestDestroyJustBeforeDump(t *testing.T) {
	// The kernel announces the destroy before it unlinks the entry: a
	// dump that begins right after may still list it.
	tr := newTracker(&counters{})
	s := newSums(t)
	c := conn(1, 1000)
	dump(tr)
	ev := at(c, 3, 300, 3, 300)
	tr.destroy(&ev)
	dump(tr, at(c, 3, 300, 3, 300))
	s.take(tr)
	s.want(c, 3, 300, 3, 300)
	if len(tr.conns) != 0 {
		t.Error("the dump brought back a destroyed connection")
	}
	// Two rotations later the key is forgotten: the same ID and tuple
	// reused is a new connection.
	tr.rotate()
	tr.rotate()
	dump(tr, at(c, 1, 100, 0, 0))
	s.take(tr)
	s.want(c, 4, 400, 3, 300)
}

func TestIDReuse(t *testing.T) {
	tr := newTracker(&counters{})
	s := newSums(t)
	first := conn(7, 1000)
	second := conn(7, 2000) // same ID, another connection
	dump(tr)
	dump(tr, at(first, 10, 1000, 10, 1000))
	dump(tr, at(second, 2, 200, 1, 100))
	s.take(tr)
	s.want(first, 10, 1000, 10, 1000)
	s.want(second, 2, 200, 1, 100)
	evF, evS := at(first, 11, 1100, 10, 1000), at(second, 3, 300, 1, 100)
	tr.destroy(&evS)
	tr.destroy(&evF)
	s.take(tr)
	s.want(first, 11, 1100, 10, 1000)
	s.want(second, 3, 300, 1, 100)
}

func TestLostEventsReconciled(t *testing.T) {
	var st counters
	tr := newTracker(&st)
	s := newSums(t)
	gone, alive := conn(1, 1000), conn(2, 1001)
	dump(tr)
	dump(tr, at(gone, 1, 100, 1, 100), at(alive, 1, 100, 1, 100))
	// gone ends; its destroy event is lost. The next dump does not list
	// it: its event may still be on its way, so it stays.
	dump(tr, at(alive, 2, 200, 2, 200))
	if _, ok := tr.conns[keyOf(gone)]; !ok {
		t.Fatal("a connection missing from one dump was forgotten")
	}
	if st.lost.Load() != 0 {
		t.Fatal("counted lost after one dump")
	}
	// Missing from a second dump: it ended unseen.
	dump(tr, at(alive, 2, 200, 2, 200))
	s.take(tr)
	if st.lost.Load() != 1 {
		t.Errorf("Lost = %d, want 1", st.lost.Load())
	}
	if len(tr.conns) != 1 {
		t.Errorf("tracked %d, want 1", len(tr.conns))
	}
	s.want(gone, 1, 100, 1, 100)
	s.want(alive, 2, 200, 2, 200)
}

func TestLateDestroyAfterOneMissedDump(t *testing.T) {
	// A destroy still queued when the next dump (not listing the
	// connection) is applied reports the rest once.
	var st counters
	tr := newTracker(&st)
	s := newSums(t)
	c := conn(1, 1000)
	dump(tr)
	dump(tr, at(c, 1, 100, 1, 100))
	dump(tr)
	ev := at(c, 4, 400, 4, 400)
	tr.destroy(&ev)
	dump(tr)
	s.take(tr)
	s.want(c, 4, 400, 4, 400)
	if st.lost.Load() != 0 {
		t.Errorf("Lost = %d, want 0", st.lost.Load())
	}
}

func TestDumpFailedReleasesHeld(t *testing.T) {
	tr := newTracker(&counters{})
	s := newSums(t)
	c := conn(1, 1000)
	dump(tr)
	dump(tr, at(c, 1, 100, 0, 0))
	s.take(tr)
	tr.beginDump()
	ev := at(c, 2, 200, 0, 0)
	tr.destroy(&ev)
	if len(tr.out) != 0 {
		t.Fatal("a destroy during a dump was applied before its result")
	}
	tr.dumpFailed()
	s.take(tr)
	s.want(c, 2, 200, 0, 0)
}

func TestCounterReset(t *testing.T) {
	var st counters
	tr := newTracker(&st)
	s := newSums(t)
	c := conn(1, 1000)
	dump(tr)
	dump(tr, at(c, 10, 1000, 10, 1000))
	dump(tr, at(c, 2, 200, 10, 1000)) // orig counters zeroed, then 2 more
	s.take(tr)
	s.want(c, 12, 1200, 10, 1000)
	if st.counterResets.Load() == 0 {
		t.Error("reset not counted")
	}
}

func keyOf(c Conn) key { return c.key() }

func TestHeldDestroyNotReconciledAsLost(t *testing.T) {
	// c ends during dump 3, which no longer lists it; its destroy only
	// arrives during dump 4. Absent from two dumps, it must still end by
	// its destroy, not be forgotten first and counted again from zero.
	var st counters
	tr := newTracker(&st)
	s := newSums(t)
	c := conn(1, 1000)
	dump(tr)
	dump(tr, at(c, 8, 800, 1, 60))
	dump(tr)
	tr.beginDump()
	ev := at(c, 13, 1300, 2, 120)
	tr.destroy(&ev)
	tr.endDump()
	s.take(tr)
	s.want(c, 13, 1300, 2, 120)
	if st.lost.Load() != 0 {
		t.Errorf("Lost = %d, want 0", st.lost.Load())
	}
}
