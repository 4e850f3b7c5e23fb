package conntrack

import (
	"math/rand/v2"
	"testing"
)

// TestTrackerAgainstModel drives the tracker with a simulated kernel:
// connections that begin, send and end at random, dumps that are not
// atomic (a connection may be read before or after what happens during
// the dump, or still listed just after its destroy), destroy events that
// arrive late (but before the second dump after them) or are lost. From
// what the simulation knows, it rebuilds what each connection must have
// been counted and checks the tracker's deltas against it.
func TestTrackerAgainstModel(t *testing.T) {
	for seed := range uint64(2000) {
		runModel(t, seed)
	}
}

type modelConn struct {
	s         sample // current totals
	live      bool
	lingering bool   // destroyed, still listed by the next dump to begin
	base      sample // what the baseline dump read (zero if not in it)
	lastRead  sample // what the last applied dump read
	everRead  bool   // in an applied dump after the baseline
	inBase    bool
	finalSent bool // its destroy event reached the tracker
	lostEvent bool
}

func runModel(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 99))
	var st counters
	tr := newTracker(&st)
	var conns []*modelConn
	var queue []*modelConn // destroy events on their way
	counted := map[key][4]uint64{}
	finals := map[key]int{}
	take := func() {
		for _, d := range tr.out {
			k := d.key()
			v := counted[k]
			v[0] += d.OrigPackets
			v[1] += d.OrigBytes
			v[2] += d.ReplyPackets
			v[3] += d.ReplyBytes
			counted[k] = v
			if d.Final {
				finals[k]++
			}
		}
		tr.out = tr.out[:0]
	}
	deliver := func(n int) {
		for ; n > 0 && len(queue) > 0; n-- {
			c := queue[0]
			queue = queue[1:]
			ev := c.s
			tr.destroy(&ev)
			c.finalSent = true
		}
		take()
	}
	nextID := uint32(0)
	lossy := false

	// One dump: read holds what it will report per connection.
	var dumping bool
	var read map[*modelConn]sample
	var inFlightAtBegin int
	dumpsApplied := 0

	beginDump := func() {
		dumping = true
		read = map[*modelConn]sample{}
		for _, c := range conns {
			if c.live || c.lingering {
				read[c] = c.s
			}
			c.lingering = false
		}
		inFlightAtBegin = len(queue)
		tr.beginDump()
	}
	// endDump delivers the dump in chunks; one dump in eight breaks off
	// after some of them.
	endDump := func(mayFail bool) {
		// Events sent before the dump began arrive before it ends.
		deliver(inFlightAtBegin)
		cs := make([]*modelConn, 0, len(read))
		for c := range read {
			cs = append(cs, c)
		}
		rng.Shuffle(len(cs), func(i, j int) { cs[i], cs[j] = cs[j], cs[i] })
		failAt := len(cs) + 1
		if mayFail && rng.IntN(8) == 0 {
			failAt = rng.IntN(len(cs) + 1)
		}
		for i := 0; i < len(cs) && i < failAt; {
			n := min(1+rng.IntN(4), len(cs)-i, failAt-i)
			chunk := make([]sample, 0, n)
			for _, c := range cs[i : i+n] {
				s := read[c]
				chunk = append(chunk, s)
				switch {
				case dumpsApplied > 0:
					c.everRead = true
				case !c.inBase:
					c.inBase, c.base = true, s
				}
				c.lastRead = s
			}
			tr.dumpEntries(chunk)
			take()
			i += n
		}
		dumping = false
		if failAt <= len(cs) {
			tr.dumpFailed()
			take()
			return
		}
		tr.endDump()
		take()
		dumpsApplied++
	}

	beginDump() // Run asks for the baseline before it reads an event
	for step := 0; step < 400; step++ {
		switch r := rng.IntN(100); {
		case r < 15: // a connection begins; IDs are reused with another tuple
			id := nextID
			if rng.IntN(4) == 0 && nextID > 0 {
				id = rng.Uint32N(nextID)
			}
			nextID++
			c := &modelConn{s: at(conn(id, uint16(len(conns))), 0, 0, 0, 0), live: true}
			conns = append(conns, c)
			if dumping && rng.IntN(2) == 0 {
				read[c] = c.s
			}
		case r < 55: // traffic
			if c := pick(rng, conns); c != nil {
				p := uint64(rng.IntN(5) + 1)
				c.s.origPackets += p
				c.s.origBytes += 100 * p
				if rng.IntN(2) == 0 {
					c.s.replyPackets++
					c.s.replyBytes += 60
				}
				if _, ok := read[c]; ok && dumping && rng.IntN(2) == 0 {
					read[c] = c.s // the dump reaches it later
				}
			}
		case r < 70: // a connection ends
			if c := pick(rng, conns); c != nil {
				c.live = false
				if _, ok := read[c]; ok && dumping && rng.IntN(2) == 0 {
					delete(read, c) // gone before the dump reached it
				}
				if !dumping && rng.IntN(4) == 0 {
					c.lingering = true
				}
				if lossy && rng.IntN(2) == 0 {
					c.lostEvent = true
				} else {
					queue = append(queue, c)
				}
			}
		case r < 80:
			deliver(rng.IntN(4))
		case r < 83:
			lossy = !lossy
		case r < 88:
			if !dumping {
				beginDump()
			}
		case r < 96:
			if dumping {
				endDump(true)
			}
		default:
			if !dumping {
				tr.rotate()
				// A rotation is a second: the kernel unlinked the
				// entries it announced long before.
				for _, c := range conns {
					c.lingering = false
				}
			}
		}
	}
	// Drain: every event arrives; three more dumps (one may still list
	// a lingering connection) find the lost ones.
	if dumping {
		endDump(false)
	}
	deliver(len(queue))
	for range 3 {
		beginDump()
		endDump(false)
	}

	var lost uint64
	for _, c := range conns {
		k := c.s.key()
		var want sample
		switch {
		case c.live:
			want = c.lastRead
		case c.finalSent:
			want = c.s
		case c.lostEvent && (c.everRead || c.inBase):
			want = c.lastRead
			lost++
		}
		if c.inBase {
			want.origPackets -= c.base.origPackets
			want.origBytes -= c.base.origBytes
			want.replyPackets -= c.base.replyPackets
			want.replyBytes -= c.base.replyBytes
		}
		w := [4]uint64{want.origPackets, want.origBytes, want.replyPackets, want.replyBytes}
		if got := counted[k]; got != w {
			t.Fatalf("seed %d: conn %d/%d (live %v final %v lost %v base %v) counted %v, want %v",
				seed, c.s.ID, c.s.Orig.SrcPort, c.live, c.finalSent, c.lostEvent, c.inBase, got, w)
		}
		if wantFinals := map[bool]int{true: 1}[c.finalSent]; finals[k] != wantFinals {
			t.Fatalf("seed %d: conn %d: %d final deltas, want %d", seed, c.s.ID, finals[k], wantFinals)
		}
	}
	if st.lost.Load() != lost {
		t.Fatalf("seed %d: Lost = %d, want %d", seed, st.lost.Load(), lost)
	}
	if st.counterResets.Load() != 0 {
		t.Fatalf("seed %d: counters went backwards %d times", seed, st.counterResets.Load())
	}
}

// pick returns a random live connection, or nil.
func pick(rng *rand.Rand, conns []*modelConn) *modelConn {
	var live []*modelConn
	for _, c := range conns {
		if c.live {
			live = append(live, c)
		}
	}
	if len(live) == 0 {
		return nil
	}
	return live[rng.IntN(len(live))]
}
