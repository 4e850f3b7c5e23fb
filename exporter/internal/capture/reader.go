// Package capture reads the packets that podflow's nftables rules log to
// an NFLOG group and hands each one over as a flow.Record.
//
// The group is bound and configured with the same nfnetlink_log messages
// go-nflog sends, on a socket of podflow's own, because go-nflog only binds
// inside its receive loop. Batches are read with one recvfrom each into a
// reused buffer and parsed without allocating: go-nflog's receive path
// costs two syscalls per batch and about ten allocations per packet, which
// would make the reader the node's bottleneck at 100k packets per second.
// It is the only package that talks to NFLOG.
package capture

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Stats are the reader's self-metrics, read with atomics.
type Stats struct {
	// Received counts packets handed to the Handler.
	Received uint64
	// Lost counts packets the kernel logged that never arrived, from
	// gaps in the group's sequence numbers.
	Lost uint64
	// Overruns counts ENOBUFS on the socket: the receive buffer was full
	// and the kernel dropped at least one batch (counted in Lost once the
	// next packet arrives).
	Overruns uint64
	// Malformed counts logged packets whose message could not be parsed;
	// they are not counted as lost.
	Malformed uint64
	// BadBatches counts datagrams whose netlink framing is broken or that
	// the read buffer cut short; the packets in them that could not be
	// read count as lost.
	BadBatches uint64
	// Bound is true while the group is bound to this reader.
	Bound bool
	// BindError says why the group is not bound, empty while bound or
	// before the first attempt.
	BindError string
	// Conntrack is false when the kernel refused to attach conntrack
	// data (no CONFIG_NETFILTER_NETLINK_GLUE_CT or nf_conntrack_netlink):
	// records then carry the state and direction that the log rule's
	// prefix names, without the original tuple.
	Conntrack bool
}

// Reader reads one NFLOG group. Its life:
//
//	New ─Bind─▶ bound ─Run─▶ reading ─ctx done─▶ unbound, socket closed
//	             ▲                 │
//	             └─backoff─ socket failed (Run binds again)
//
// What holds throughout:
//   - Stats().Bound is true exactly while a socket of the Reader holds
//     the group; the group is released when Run returns.
//   - Every packet the kernel logs to the group while it is bound ends
//     in exactly one of Received, Malformed and Lost (see parser), also
//     the packets that arrive while a request waits for its
//     acknowledgement; sequence numbers restart with each bind.
//   - Only the goroutine in Bind, and then in Run, touches the socket,
//     the buffer and the parser; Stats reads atomics from any goroutine.
type Reader struct {
	cfg    Config
	logger *slog.Logger

	received, lost, overruns, malformed atomic.Uint64
	badBatches                          atomic.Uint64
	bound, conntrack                    atomic.Bool
	bindError                           atomic.Pointer[string]

	c     *conn  // the bound socket; nil while unbound
	p     parser // counts and the acknowledgement awaited
	buf   []byte
	state string // last logged bind state, to log only changes
}

// New returns a Reader for cfg. Nothing touches the kernel before Bind
// or Run.
func New(cfg Config, logger *slog.Logger) *Reader {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	return &Reader{
		cfg:    cfg,
		logger: logger.With("component", "capture", "group", cfg.Group),
		// A batch never exceeds the batch buffer unless one packet does
		// (up to the snaplen); leave room for both.
		buf: make([]byte, max(256<<10, 2*int(cfg.BufferSize)+int(cfg.SnapLen)+4096)),
	}
}

// Stats returns the reader's counters.
func (r *Reader) Stats() Stats {
	s := Stats{
		Received:   r.received.Load(),
		Lost:       r.lost.Load(),
		Overruns:   r.overruns.Load(),
		Malformed:  r.malformed.Load(),
		BadBatches: r.badBatches.Load(),
		Bound:      r.bound.Load(),
		Conntrack:  r.conntrack.Load(),
	}
	if e := r.bindError.Load(); e != nil {
		s.BindError = *e
	}
	return s
}

// Bind binds the group, retrying with backoff for up to cfg.BindTimeout
// while another process owns it, and returns why it could not. Packets
// that arrive meanwhile go to h. Bind before changing anything that
// the group's owner relies on (the nftables table): a second podflow on
// the node then stops here. Run reads from the bound socket.
func (r *Reader) Bind(ctx context.Context, h Handler) error {
	if err := r.cfg.Validate(); err != nil {
		return err
	}
	deadline := time.Now().Add(r.cfg.BindTimeout)
	return r.bindRetrying(ctx, h, func(err error) bool {
		var inUse *errInUse
		return errors.As(err, &inUse) && time.Now().Before(deadline)
	})
}

// Run reads the group until ctx is done, then unbinds. Unless Bind bound
// it, Run binds it first; whenever the socket fails it binds again, with
// backoff, for as long as it takes. It returns an error only for an
// invalid Config.
func (r *Reader) Run(ctx context.Context, h Handler) error {
	if err := r.cfg.Validate(); err != nil {
		return err
	}
	for ctx.Err() == nil {
		if r.c == nil {
			if r.bindRetrying(ctx, h, func(error) bool { return true }) != nil {
				return nil // ctx is done
			}
		}
		err := r.read(ctx, h)
		r.unbind()
		if ctx.Err() == nil {
			r.setUnbound(err)
		}
	}
	r.unbind()
	return nil
}

// bindRetrying binds, waiting with backoff between attempts while retry
// says the last error is worth another one. It returns nil once bound,
// else the last error, or ctx's once ctx is done.
func (r *Reader) bindRetrying(ctx context.Context, h Handler, retry func(error) bool) error {
	backoff := 100 * time.Millisecond
	for {
		err := r.bind(ctx, h)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.setUnbound(err)
		if !retry(err) {
			return err
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, r.cfg.MaxBackoff)
	}
}

// setUnbound records why the group is not bound, logging each new reason
// once.
func (r *Reader) setUnbound(err error) {
	msg := err.Error()
	r.bindError.Store(&msg)
	if r.state != msg {
		r.state = msg
		r.logger.Warn("NFLOG group not bound", "reason", msg)
	}
}

// errInUse marks a bind refused because another socket owns the group.
type errInUse struct {
	group uint16
	errno syscall.Errno
}

func (e *errInUse) Error() string {
	return fmt.Sprintf("NFLOG group %d is in use by another process (%v)", e.group, e.errno)
}

// hasNetAdmin reports whether the process holds CAP_NET_ADMIN, which
// nfnetlink requires: without it a bind fails with EPERM as well.
func hasNetAdmin() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return true // cannot tell; assume the common case
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err != nil || caps&(1<<unix.CAP_NET_ADMIN) != 0
		}
	}
	return true
}

// bind opens a socket and binds the group with sequence numbers and,
// where the kernel has them, conntrack attributes. On success r.c holds
// the socket and Bound is true.
func (r *Reader) bind(ctx context.Context, h Handler) error {
	c, err := dial(r.cfg.NetNS, r.cfg.ReadBuffer)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, c.interrupt)
	defer stop()
	r.p.haveSeq = false // a new instance numbers from zero
	flags := uint16(flagSeq | flagConntrack)
	errno, err := r.configure(c, bindAttrs(&r.cfg, flags), h)
	if err == nil && errno == unix.EOPNOTSUPP {
		// The kernel cannot attach conntrack data; capture without it.
		r.logger.Warn("the kernel refused conntrack data for NFLOG (built without CONFIG_NETFILTER_NETLINK_GLUE_CT, or nf_conntrack_netlink missing); conntrack state and direction come from the log prefixes, without the pre-DNAT destination (no destination_service)")
		flags = flagSeq
		errno, err = r.configure(c, bindAttrs(&r.cfg, flags), h)
	}
	switch {
	case err != nil:
	case errno == unix.EPERM && !hasNetAdmin():
		err = fmt.Errorf("binding NFLOG group %d: %w: podflow needs CAP_NET_ADMIN", r.cfg.Group, errno)
	case errno == unix.EPERM || errno == unix.EBUSY || errno == unix.EEXIST:
		err = &errInUse{r.cfg.Group, errno}
	case errno != 0:
		err = fmt.Errorf("binding NFLOG group %d: %w", r.cfg.Group, errno)
	}
	if err != nil {
		c.close()
		return err
	}
	c.setDeadline(time.Time{})
	r.c = c
	r.conntrack.Store(flags&flagConntrack != 0)
	r.bindError.Store(nil)
	r.bound.Store(true)
	if r.state != "bound" {
		r.state = "bound"
		r.logger.Info("NFLOG group bound", "conntrack", flags&flagConntrack != 0, "queue_threshold", r.cfg.QueueThreshold, "buffer_size", r.cfg.BufferSize)
	}
	return nil
}

// unbind releases the group and closes the socket, if bound.
func (r *Reader) unbind() {
	if r.c == nil {
		return
	}
	r.bound.Store(false)
	// Closing the socket alone would also release the group.
	_, _ = r.c.request(r.cfg.Group, unbindAttrs())
	r.c.close()
	r.c = nil
}

// read hands over every packet of the bound socket until ctx is done
// (nil) or the socket fails.
func (r *Reader) read(ctx context.Context, h Handler) error {
	stop := context.AfterFunc(ctx, r.c.interrupt)
	defer stop()
	for {
		n, err := r.c.recv(r.buf)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, unix.ENOBUFS):
			r.overruns.Add(1)
			continue
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return fmt.Errorf("reading NFLOG group %d: %w", r.cfg.Group, err)
		}
		r.consume(n, h)
		// While a backlog drains, reads never block; yielding once per
		// batch lets a consumer goroutine on the same core (the
		// pipeline's aggregator) keep pace instead of waiting for
		// preemption while its queue overflows.
		runtime.Gosched()
	}
}

// consume parses the n bytes of one datagram in the buffer and publishes
// the counters.
func (r *Reader) consume(n int, h Handler) {
	if r.p.parse(r.buf[:min(n, len(r.buf))], h) && n > len(r.buf) {
		// A datagram cut by the buffer between two messages walks to
		// the end; it is broken all the same.
		r.p.badBatches++
	}
	r.received.Store(r.p.received)
	r.lost.Store(r.p.lost)
	r.malformed.Store(r.p.malformed)
	r.badBatches.Store(r.p.badBatches)
}

// configure sends one config request on c and waits up to 5s for its
// acknowledgement, handing over any packet that arrives meanwhile. It
// returns the kernel's errno (0 for success).
func (r *Reader) configure(c *conn, attrs []byte, h Handler) (syscall.Errno, error) {
	seq, err := c.request(r.cfg.Group, attrs)
	if err != nil {
		return 0, fmt.Errorf("sending NFLOG config: %w", err)
	}
	r.p.wantSeq, r.p.ackSeen = seq, false
	c.setDeadline(time.Now().Add(5 * time.Second))
	for !r.p.ackSeen {
		n, err := c.recv(r.buf)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			return 0, errAckTimeout
		case errors.Is(err, unix.ENOBUFS):
			r.overruns.Add(1)
			continue
		case err != nil:
			return 0, err
		}
		r.consume(n, h)
	}
	return syscall.Errno(r.p.ackErrno), nil //nolint:gosec // a non-negative errno from the kernel
}
