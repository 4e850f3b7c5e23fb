package conntrack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a Source.
type Config struct {
	// DumpInterval is how often the whole table is dumped, so that
	// long-lived connections are counted before they end (default 10s).
	DumpInterval time.Duration
	// EnableAccounting sets net.netfilter.nf_conntrack_acct to 1 in the
	// current network namespace when it is 0. It is logged and reported
	// in Stats. A failed write (a read-only /proc/sys) is logged, not
	// fatal: something else may switch it on, which Stats then shows.
	EnableAccounting bool
	// ReadBuffer is the event socket's receive buffer in bytes (default
	// 16 MiB, which holds the destroy events of a flush of 100k
	// connections); it is forced past net.core.rmem_max when the process
	// may. The kernel takes memory from it only while events wait.
	ReadBuffer int
	Logger     *slog.Logger
}

// DefaultDumpInterval and DefaultReadBuffer apply when Config leaves them
// zero.
const (
	DefaultDumpInterval = 10 * time.Second
	DefaultReadBuffer   = 16 << 20
)

func (c *Config) defaults() {
	if c.DumpInterval <= 0 {
		c.DumpInterval = DefaultDumpInterval
	}
	if c.ReadBuffer <= 0 {
		c.ReadBuffer = DefaultReadBuffer
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Stats are the Source's self-metrics, read with atomics.
type Stats struct {
	// AccountingEnabled is true while nf_conntrack_acct is 1 in the
	// Source's namespace, read at New and after each dump. While false,
	// new connections carry no counters: their deltas are zero.
	AccountingEnabled bool
	// EnabledByPodflow is true when the Source set nf_conntrack_acct.
	EnabledByPodflow bool
	// Events counts destroy events received.
	Events uint64
	// LostEvents counts overruns of the event socket (ENOBUFS): the
	// kernel dropped at least one event each time. The connections whose
	// destroy was lost are found by the next dumps and counted in Lost.
	LostEvents uint64
	// DecodeErrors counts event messages that could not be decoded.
	DecodeErrors uint64
	// Dumps counts dumps applied; DumpErrors dumps that failed (the next
	// one retries).
	Dumps, DumpErrors uint64
	// DumpEntries is the number of connections the last dump listed.
	DumpEntries uint64
	// Tracked is the number of connections held between dumps.
	Tracked uint64
	// Baseline counts connections found by the first dump: what they
	// sent before the Source started is not counted.
	Baseline uint64
	// Lost counts connections that ended unseen (absent from two dumps in
	// a row with no destroy event): their last delta is gone.
	Lost uint64
	// CounterResets counts totals that went backwards (someone zeroed
	// the kernel's counters); the new total is counted whole.
	CounterResets uint64
}

// counters backs Stats.
type counters struct {
	acct, enabledByPodflow                              atomic.Bool
	events, lostEvents, decodeErrors, dumps, dumpErrors atomic.Uint64
	dumpEntries, tracked, baseline, lost, counterResets atomic.Uint64
}

// kernel is ctnetlink as the Source uses it; tests use a fake.
type kernel interface {
	// dump reads every connection in the table, handing them to each in
	// chunks that are valid only during the call; each returns false to
	// stop the dump (which then returns errClosed).
	dump(each func([]sample) bool) error
	// receive blocks until destroy events arrive and appends them to dst.
	// It returns errOverrun when the kernel dropped events, a
	// *decodeError for messages it skipped, errClosed once closed.
	receive(dst []sample) ([]sample, error)
	close() error
}

var (
	errOverrun = errors.New("conntrack event socket overrun (ENOBUFS): events lost")
	errClosed  = errors.New("conntrack source closed")
)

// decodeError reports event messages that could not be decoded; the
// events decoded with them are still returned.
type decodeError struct {
	n   uint64
	err error
}

func (e *decodeError) Error() string {
	return fmt.Sprintf("%d conntrack messages not decoded: %v", e.n, e.err)
}
func (e *decodeError) Unwrap() error { return e.err }

// Source reads connection accounting from conntrack and emits deltas.
//
// Run's goroutine owns the tracker. Two helpers feed it: a reader that
// blocks on the event socket and hands over batches of destroy events,
// and a dumper that dumps the table when asked and hands back the
// result. Each owns its socket; Run closes both when it returns.
type Source struct {
	cfg    Config
	logger *slog.Logger
	k      kernel
	acct   *accounting // nil with a fake kernel
	st     counters

	closeOnce sync.Once
	closeErr  error
}

// New opens the event and dump sockets in the current network namespace
// and, when configured, enables accounting there. Call it on the thread
// (runtime.LockOSThread) that is in the namespace to watch.
func New(cfg Config) (*Source, error) {
	cfg.defaults()
	s := &Source{cfg: cfg, logger: cfg.Logger}
	acct, err := openAccounting()
	if err != nil {
		return nil, err
	}
	on, err := acct.on()
	if err != nil {
		_ = acct.close()
		return nil, err
	}
	if !on && cfg.EnableAccounting {
		if err := enableAccounting(); err != nil {
			s.logger.Warn("conntrack accounting is off and could not be switched on: connections carry no byte or packet counters until something switches it on", "err", err)
		} else if on, err = acct.on(); err == nil && on {
			s.st.enabledByPodflow.Store(true)
			s.logger.Info("enabled conntrack accounting in this network namespace (net.netfilter.nf_conntrack_acct was 0); connections that began before carry no counters")
		}
	} else if !on {
		s.logger.Warn("conntrack accounting is off (net.netfilter.nf_conntrack_acct=0): connections carry no byte or packet counters")
	}
	s.st.acct.Store(on)
	s.acct = acct
	k, err := dialKernel(cfg.ReadBuffer, &s.st)
	if err != nil {
		_ = acct.close()
		return nil, err
	}
	s.k = k
	return s, nil
}

// newWithKernel builds a Source over a fake kernel.
func newWithKernel(cfg Config, k kernel) *Source {
	cfg.defaults()
	return &Source{cfg: cfg, logger: cfg.Logger, k: k}
}

// Close closes the sockets; Run returns soon after.
func (s *Source) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = s.k.close()
		if s.acct != nil {
			s.closeErr = errors.Join(s.closeErr, s.acct.close())
		}
	})
	return s.closeErr
}

// Stats returns the self-metrics; safe from any goroutine.
func (s *Source) Stats() Stats {
	return Stats{
		AccountingEnabled: s.st.acct.Load(),
		EnabledByPodflow:  s.st.enabledByPodflow.Load(),
		Events:            s.st.events.Load(),
		LostEvents:        s.st.lostEvents.Load(),
		DecodeErrors:      s.st.decodeErrors.Load(),
		Dumps:             s.st.dumps.Load(),
		DumpErrors:        s.st.dumpErrors.Load(),
		DumpEntries:       s.st.dumpEntries.Load(),
		Tracked:           s.st.tracked.Load(),
		Baseline:          s.st.baseline.Load(),
		Lost:              s.st.lost.Load(),
		CounterResets:     s.st.counterResets.Load(),
	}
}

// maxPending bounds the events waiting for Run; past it the reader stops
// reading and the socket's buffer takes the rest.
const maxPending = 1 << 16

// queue hands destroy events from the reader to Run without ever making
// the reader wait while Run has room.
type queue struct {
	mu      sync.Mutex
	pending []sample
	notify  chan struct{} // an event is pending
	drained chan struct{} // Run took the pending events
}

func newQueue() *queue {
	return &queue{notify: make(chan struct{}, 1), drained: make(chan struct{}, 1)}
}

// put appends events and reports how many are pending.
func (q *queue) put(evs []sample) int {
	q.mu.Lock()
	q.pending = append(q.pending, evs...)
	n := len(q.pending)
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
	return n
}

// take swaps the pending events with dst, which it empties first.
func (q *queue) take(dst []sample) []sample {
	clear(dst)
	q.mu.Lock()
	dst, q.pending = q.pending, dst[:0]
	q.mu.Unlock()
	select {
	case q.drained <- struct{}{}:
	default:
	}
	return dst
}

// dumpPart is a chunk of a dump in flight, or (done) its end.
type dumpPart struct {
	entries []sample
	done    bool
	err     error
}

// Run dumps the table at once (the baseline) and every DumpInterval, and
// applies destroy events as they come, calling emit with each batch of
// deltas. emit is never called concurrently and must not keep the slice.
// Run returns when ctx ends or Close is called, closing the sockets.
func (s *Source) Run(ctx context.Context, emit func([]Delta)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	t := newTracker(&s.st)

	q := newQueue()
	dumpReq := make(chan struct{})
	dumps := make(chan dumpPart)
	dumpAck := make(chan struct{})

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		s.read(ctx, q)
	}()
	go func() {
		defer wg.Done()
		s.dumpLoop(ctx, dumpReq, dumps, dumpAck)
	}()
	defer func() {
		cancel()
		_ = s.Close()
		wg.Wait()
	}()

	ticker := time.NewTicker(s.cfg.DumpInterval)
	defer ticker.Stop()
	rotate := time.NewTicker(time.Second)
	defer rotate.Stop()

	flush := func() {
		if len(t.out) > 0 {
			emit(t.out)
			clear(t.out)
			t.out = t.out[:0]
		}
	}
	requestDump := func() bool {
		select {
		case dumpReq <- struct{}{}:
			t.beginDump()
			return true
		case <-ctx.Done():
			return false
		}
	}
	if !requestDump() {
		return nil
	}
	var events []sample
	var dumpEntries uint64 // in the dump in flight
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-q.notify:
			events = q.take(events)
			s.st.events.Add(uint64(len(events)))
			for i := range events {
				t.destroy(&events[i])
			}
			flush()
		case p := <-dumps:
			if !p.done {
				t.dumpEntries(p.entries)
				dumpEntries += uint64(len(p.entries))
				flush()
				dumpAck <- struct{}{}
				continue
			}
			if p.err != nil {
				s.st.dumpErrors.Add(1)
				s.logger.Warn("conntrack dump failed; the next one retries", "err", p.err)
				t.dumpFailed()
			} else {
				t.endDump()
				// Counted once applied: a reader of Dumps then sees its
				// effect in Tracked.
				s.st.dumpEntries.Store(dumpEntries)
				s.st.dumps.Add(1)
			}
			dumpEntries = 0
			flush()
		case <-ticker.C:
			if !t.dumping && !requestDump() {
				return nil
			}
		case <-rotate.C:
			t.rotate()
		}
	}
}

// read moves destroy events from the socket to Run's queue, so that the
// socket is drained while Run applies a batch or waits for a dump.
func (s *Source) read(ctx context.Context, q *queue) {
	var buf []sample
	var lastWarn time.Time
	for {
		var err error
		clear(buf)
		buf, err = s.k.receive(buf[:0])
		var de *decodeError
		switch {
		case err == nil:
		case errors.Is(err, errClosed):
			return
		case errors.Is(err, errOverrun):
			s.st.lostEvents.Add(1)
			if time.Since(lastWarn) > 10*time.Second {
				lastWarn = time.Now()
				s.logger.Warn("conntrack events lost: the event socket overran; the next dumps find the connections that ended", "overruns", s.st.lostEvents.Load())
			}
		case errors.As(err, &de):
			s.st.decodeErrors.Add(de.n)
			s.logger.Debug("conntrack event not decoded", "err", err)
		default:
			if ctx.Err() != nil {
				return
			}
			s.logger.Warn("conntrack event socket failed", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
		if len(buf) == 0 {
			continue
		}
		if q.put(buf) < maxPending {
			continue
		}
		select {
		case <-q.drained:
		case <-ctx.Done():
			return
		}
	}
}

// checkAccounting follows nf_conntrack_acct: it may be switched on or
// off after New, by podflow's table or by someone else.
func (s *Source) checkAccounting() {
	if s.acct == nil {
		return
	}
	on, err := s.acct.on()
	if err != nil {
		return
	}
	if was := s.st.acct.Swap(on); was != on {
		s.logger.Info("conntrack accounting changed (net.netfilter.nf_conntrack_acct)", "on", on)
	}
}

// dumpLoop dumps the table each time Run asks, handing it over chunk
// by chunk: the kernel's dump waits while Run applies a chunk, so no more
// than a chunk of the table is ever held.
func (s *Source) dumpLoop(ctx context.Context, req <-chan struct{}, out chan<- dumpPart, ack <-chan struct{}) {
	each := func(entries []sample) bool {
		select {
		case out <- dumpPart{entries: entries}:
		case <-ctx.Done():
			return false
		}
		select {
		case <-ack:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-req:
		}
		err := s.k.dump(each)
		s.checkAccounting()
		select {
		case out <- dumpPart{done: true, err: err}:
		case <-ctx.Done():
			return
		}
	}
}
