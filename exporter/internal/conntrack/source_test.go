package conntrack

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// fakeKernel plays ctnetlink for Run: the test hands it events and
// answers its dumps.
type fakeKernel struct {
	events   chan fakeEvents
	dumping  chan struct{} // a dump began
	answers  chan fakeDump
	closed   chan struct{}
	closeOne sync.Once
}

type fakeEvents struct {
	samples []sample
	err     error
}

type fakeDump struct {
	samples []sample
	err     error
}

func newFakeKernel() *fakeKernel {
	return &fakeKernel{
		events:  make(chan fakeEvents),
		dumping: make(chan struct{}),
		answers: make(chan fakeDump),
		closed:  make(chan struct{}),
	}
}

func (f *fakeKernel) receive(dst []sample) ([]sample, error) {
	select {
	case e := <-f.events:
		return append(dst, e.samples...), e.err
	case <-f.closed:
		return dst, errClosed
	}
}

// dump hands the answer over in chunks of two, as the kernel does by
// datagram; a failed answer breaks off after its entries.
func (f *fakeKernel) dump(each func([]sample) bool) error {
	select {
	case f.dumping <- struct{}{}:
	case <-f.closed:
		return errClosed
	}
	select {
	case a := <-f.answers:
		for rest := a.samples; len(rest) > 0; {
			n := min(2, len(rest))
			if !each(rest[:n]) {
				return errClosed
			}
			rest = rest[n:]
		}
		return a.err
	case <-f.closed:
		return errClosed
	}
}

func (f *fakeKernel) close() error {
	f.closeOne.Do(func() { close(f.closed) })
	return nil
}

// answerDump waits for the Source's next dump and answers it.
func (f *fakeKernel) answerDump(t *testing.T, d fakeDump) {
	t.Helper()
	select {
	case <-f.dumping:
	case <-time.After(10 * time.Second):
		t.Fatal("no dump began")
	}
	f.answers <- d
}

func TestRunFeedsTracker(t *testing.T) {
	fk := newFakeKernel()
	s := newWithKernel(Config{DumpInterval: time.Millisecond}, fk)
	var mu sync.Mutex
	got := map[uint32][4]uint64{}
	finals := map[uint32]int{}
	emit := func(ds []Delta) {
		mu.Lock()
		defer mu.Unlock()
		for _, d := range ds {
			v := got[d.ID]
			v[0] += d.OrigPackets
			v[1] += d.OrigBytes
			v[2] += d.ReplyPackets
			v[3] += d.ReplyBytes
			got[d.ID] = v
			if d.Final {
				finals[d.ID]++
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, emit) }()

	a, b, c := conn(1, 1000), conn(2, 1001), conn(3, 1002)
	fk.answerDump(t, fakeDump{samples: []sample{at(a, 10, 1000, 10, 1000), at(b, 1, 100, 0, 0)}}) // baseline
	fk.events <- fakeEvents{err: errOverrun}
	fk.events <- fakeEvents{err: &decodeError{n: 2, err: errors.New("bad")}}
	fk.answerDump(t, fakeDump{err: errors.New("interrupted")})
	// b ends unseen: absent from two dumps. c begins.
	fk.answerDump(t, fakeDump{samples: []sample{at(a, 12, 1200, 10, 1000), at(c, 1, 100, 1, 100)}})
	fk.answerDump(t, fakeDump{samples: []sample{at(a, 12, 1200, 10, 1000), at(c, 2, 200, 2, 200)}})
	// a ends while a dump that still lists it is in flight.
	select {
	case <-fk.dumping:
	case <-time.After(10 * time.Second):
		t.Fatal("no dump began")
	}
	fk.events <- fakeEvents{samples: []sample{at(a, 15, 1500, 11, 1100)}}
	fk.answers <- fakeDump{samples: []sample{at(a, 14, 1400, 11, 1100), at(c, 2, 200, 2, 200)}}
	fk.answerDump(t, fakeDump{samples: []sample{at(c, 3, 300, 3, 300)}})
	fk.answerDump(t, fakeDump{samples: []sample{at(c, 3, 300, 3, 300)}})
	<-fk.dumping // the next dump begins once the last one is applied

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	mu.Lock()
	defer mu.Unlock()
	if want := [4]uint64{5, 500, 1, 100}; got[1] != want || finals[1] != 1 {
		t.Errorf("a: %v (%d finals), want %v once", got[1], finals[1], want)
	}
	if want := [4]uint64{3, 300, 3, 300}; got[3] != want {
		t.Errorf("c: %v, want %v", got[3], want)
	}
	if got[2] != [4]uint64{} {
		t.Errorf("b: %v, want nothing", got[2])
	}
	st := s.Stats()
	want := Stats{Events: 1, LostEvents: 1, DecodeErrors: 2, Dumps: 6, DumpErrors: 1, DumpEntries: 1, Tracked: 1, Baseline: 2, Lost: 1}
	if st != want {
		t.Errorf("stats %+v\nwant  %+v", st, want)
	}
	select {
	case <-fk.closed:
	default:
		t.Error("Run returned without closing the kernel sockets")
	}
}
