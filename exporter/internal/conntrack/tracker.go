package conntrack

// tracker turns the kernel's running totals into deltas. It is the whole
// state machine of the package and does no I/O: the Source feeds it
// destroy events and dump results on one goroutine, so it takes no lock.
//
// What holds between calls:
//   - conns holds, for every connection reported so far and not yet ended,
//     the totals already turned into deltas (or taken as its baseline).
//     The sum of a connection's deltas equals its last reported totals
//     minus its baseline: nothing is counted twice.
//   - A connection enters conns only from a dump and leaves it by a
//     destroy (its final delta), or by being absent from two dumps in a
//     row (its destroy event was lost: counted in Lost).
//   - While a dump is in flight (dumping), and until a baseline dump has
//     succeeded, destroys wait in held and are applied after the dump's
//     result, and before the connections the dump did not list are
//     judged lost: the dump's totals for a connection are never newer
//     than its destroy's, so applying the destroy last reports exactly
//     the rest.
//   - recent and older hold the keys destroyed in the last one to two
//     rotations before the dump began: the kernel sends a destroy event
//     just before it unlinks the entry, so a dump that starts right after
//     the event may still list the connection; such an entry is skipped
//     rather than counted again from zero.
type tracker struct {
	conns map[key]seen
	// gen counts the dumps applied; a connection's seen.gen is the last
	// one that listed it. Generation 1 is the baseline.
	gen     uint64
	dumping bool
	held    []sample

	recent, older map[key]struct{}

	// out collects the deltas of one call; the Source hands it to emit
	// and truncates it.
	out []Delta
	st  *counters
}

// seen is what a connection's deltas have covered so far.
type seen struct {
	origPackets, origBytes, replyPackets, replyBytes uint64
	gen                                              uint64
}

func newTracker(st *counters) *tracker {
	return &tracker{
		conns:  make(map[key]seen),
		recent: make(map[key]struct{}),
		older:  make(map[key]struct{}),
		st:     st,
	}
}

// beginDump marks a dump as requested: destroys wait until it ends.
func (t *tracker) beginDump() { t.dumping = true }

// dumpFailed ends a dump that broke off and applies the held destroys.
// The entries it delivered were real totals and stay applied; they carry
// the generation of the dump that will next succeed.
func (t *tracker) dumpFailed() {
	t.dumping = false
	if !t.holding() {
		t.releaseHeld()
	}
}

// maxHeldBeforeBaseline bounds the destroys held while no baseline dump
// has succeeded; past it they count from zero.
const maxHeldBeforeBaseline = 1 << 16

// holding reports whether destroys wait: while a dump is in flight, and
// until a baseline exists (a connection that ends before the baseline
// would otherwise count its whole life, from before podflow).
func (t *tracker) holding() bool {
	return t.dumping || (t.gen == 0 && len(t.held) < maxHeldBeforeBaseline)
}

// dumpEntries applies part of a dump: one delta per connection whose
// totals moved, or its baseline in the first dump.
func (t *tracker) dumpEntries(entries []sample) {
	gen := t.gen + 1
	baseline := gen == 1
	for i := range entries {
		e := &entries[i]
		k := e.key()
		if _, ok := t.recent[k]; ok {
			continue
		}
		if _, ok := t.older[k]; ok {
			continue
		}
		prev, known := t.conns[k]
		t.conns[k] = seen{e.origPackets, e.origBytes, e.replyPackets, e.replyBytes, gen}
		switch {
		case known:
			t.appendDelta(e, &prev, false)
		case baseline:
			// It existed before podflow: what it sent so far was never
			// seen, as a packet-mode podflow would not have seen it.
			t.st.baseline.Add(1)
		default:
			t.appendDelta(e, &seen{}, false)
		}
	}
}

// endDump completes a dump: the destroys that waited, then the
// connections it did not list.
func (t *tracker) endDump() {
	t.gen++
	t.dumping = false
	t.releaseHeld()
	// A connection the dump did not list ended. Its destroy event is
	// normally on its way; missing from two dumps in a row with no
	// destroy (the held ones were just applied), it was lost with its
	// last delta.
	for k, s := range t.conns {
		if s.gen+2 <= t.gen {
			delete(t.conns, k)
			t.st.lost.Add(1)
		}
	}
	t.st.tracked.Store(uint64(len(t.conns)))
}

// destroy applies a destroy event: the final delta, and the connection is
// forgotten. A connection never dumped counts from zero.
func (t *tracker) destroy(s *sample) {
	if t.holding() {
		t.held = append(t.held, *s)
		return
	}
	k := s.key()
	prev := t.conns[k] // zero when unknown
	delete(t.conns, k)
	t.recent[k] = struct{}{}
	t.appendDelta(s, &prev, true)
	t.st.tracked.Store(uint64(len(t.conns)))
}

func (t *tracker) releaseHeld() {
	for i := range t.held {
		t.destroy(&t.held[i])
	}
	clear(t.held) // drop the netip.Addr zone handles
	t.held = t.held[:0]
}

// rotate ages the recently destroyed keys; the Source calls it about once
// a second. Not while a dump is in flight, so that the keys destroyed
// just before it stay until its result.
func (t *tracker) rotate() {
	if t.dumping {
		return
	}
	t.recent, t.older = t.older, t.recent
	clear(t.recent)
}

// appendDelta appends s's totals minus prev. A total below what was seen
// means the kernel's counters were zeroed (a dump with CTA_COUNTERS
// reset, conntrack -L -z): what was counted since then is the whole
// total. Zero deltas are skipped unless final.
func (t *tracker) appendDelta(s *sample, prev *seen, final bool) {
	d := Delta{
		Conn:         s.Conn,
		OrigPackets:  t.sub(s.origPackets, prev.origPackets),
		OrigBytes:    t.sub(s.origBytes, prev.origBytes),
		ReplyPackets: t.sub(s.replyPackets, prev.replyPackets),
		ReplyBytes:   t.sub(s.replyBytes, prev.replyBytes),
		Final:        final,
	}
	if !final && d.OrigPackets == 0 && d.OrigBytes == 0 && d.ReplyPackets == 0 && d.ReplyBytes == 0 {
		return
	}
	t.out = append(t.out, d)
}

func (t *tracker) sub(cur, prev uint64) uint64 {
	if cur >= prev {
		return cur - prev
	}
	t.st.counterResets.Add(1)
	return cur
}
