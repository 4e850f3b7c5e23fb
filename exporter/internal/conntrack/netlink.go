package conntrack

import (
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"

	ct "github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"
)

// Read buffers: an event datagram holds one message of a few hundred
// bytes; the kernel fills dump datagrams up to 32 KiB.
const (
	eventBufferSize = 16 << 10
	dumpBufferSize  = 64 << 10
)

// netlinkKernel is ctnetlink: a socket subscribed to destroy events and
// another for dumps, both in the namespace New ran in. Messages are
// decoded by parseConn into reused buffers; ti-mo/conntrack, which
// allocates a Flow and a decoder per message, serves as the probe and as
// the reference decoder in tests.
type netlinkKernel struct {
	events, dumps  *nlSocket
	evBuf, dumpBuf []byte
	chunk          []sample // a dump datagram's entries
	seq            uint32
	closed         atomic.Bool
	st             *counters
}

func dialKernel(readBuffer int, st *counters) (*netlinkKernel, error) {
	if err := probe(); err != nil {
		return nil, err
	}
	k := &netlinkKernel{evBuf: make([]byte, eventBufferSize), dumpBuf: make([]byte, dumpBufferSize), st: st}
	var err error
	if k.events, err = openSocket(); err != nil {
		return nil, fmt.Errorf("conntrack: open the event socket: %w", err)
	}
	if k.dumps, err = openSocket(); err != nil {
		_ = k.events.close()
		return nil, fmt.Errorf("conntrack: open the dump socket: %w", err)
	}
	if err := k.events.setReadBuffer(readBuffer); err != nil {
		_ = k.close()
		return nil, fmt.Errorf("conntrack: event socket read buffer of %d bytes: %w", readBuffer, err)
	}
	if err := k.events.join(int(netfilter.GroupCTDestroy)); err != nil {
		_ = k.close()
		return nil, fmt.Errorf("conntrack: subscribe to destroy events: %w", err)
	}
	return k, nil
}

// probe fails clearly when ctnetlink is missing (nf_conntrack_netlink
// not loaded and not loadable) or not permitted: the lookup of a
// connection that cannot exist answers ENOENT. (StatsGlobal would be the
// natural probe, but its reply never ends the library's read on recent
// kernels.)
func probe() error {
	c, err := ct.Dial(nil)
	if err != nil {
		return fmt.Errorf("conntrack: open a netfilter netlink socket: %w", err)
	}
	defer c.Close()
	f := ct.NewFlow(unix.IPPROTO_UDP, 0, netip.IPv4Unspecified(), netip.IPv4Unspecified(), 0, 0, 1, 0)
	if _, err := c.Get(f); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("conntrack: ctnetlink is unavailable (is nf_conntrack_netlink loaded, and does podflow have CAP_NET_ADMIN?): %w", err)
	}
	return nil
}

func (k *netlinkKernel) close() error {
	k.closed.Store(true)
	return errors.Join(k.events.close(), k.dumps.close())
}

// maxDrain bounds the datagrams one receive reads: after the first, it
// reads what is already waiting without sleeping, so that a busy socket
// costs one wake-up of the reader and of Run per batch, not per event.
const maxDrain = 256

func (k *netlinkKernel) receive(dst []sample) ([]sample, error) {
	var bad *decodeError
	for i := range maxDrain {
		var n int
		var err error
		if i == 0 {
			n, err = k.events.recv(k.evBuf)
		} else {
			n, err = k.events.tryRecv(k.evBuf)
		}
		if err != nil {
			switch {
			case k.closed.Load():
				return dst, errClosed
			case errors.Is(err, unix.EAGAIN):
			case errors.Is(err, unix.ENOBUFS):
				return dst, errOverrun
			default:
				return dst, fmt.Errorf("conntrack: receive events: %w", err)
			}
			break
		}
		dst = k.decodeEvents(dst, n, &bad)
	}
	if bad != nil {
		return dst, bad
	}
	return dst, nil
}

// decodeEvents appends the destroy events of the datagram of n bytes in
// evBuf to dst, noting what it cannot decode in *bad.
func (k *netlinkKernel) decodeEvents(dst []sample, n int, bad **decodeError) []sample {
	note := func(err error) {
		if *bad == nil {
			*bad = &decodeError{err: err}
		}
		(*bad).n++
	}
	if n > len(k.evBuf) {
		note(fmt.Errorf("event datagram of %d bytes cut to %d", n, len(k.evBuf)))
		return dst
	}
	ms := messages{b: k.evBuf[:n]}
	for ms.next() {
		body, ok := ms.m.conntrack(msgCTDelete)
		if !ok {
			continue
		}
		dst = append(dst, sample{})
		if err := parseConn(body, &dst[len(dst)-1]); err != nil {
			dst = dst[:len(dst)-1]
			note(err)
		}
	}
	if ms.err != nil {
		note(ms.err)
	}
	return dst
}

// dump reads the whole table, one datagram's entries per chunk. Entries
// that cannot be decoded are counted and skipped (the tracker then treats
// them as absent); datagrams left from an interrupted dump are told apart
// by their sequence number.
func (k *netlinkKernel) dump(each func([]sample) bool) error {
	k.seq++
	if err := k.dumps.sendDump(k.seq); err != nil {
		return k.dumpErr(err)
	}
	for {
		n, err := k.dumps.recv(k.dumpBuf)
		if err != nil {
			return k.dumpErr(err)
		}
		if n > len(k.dumpBuf) {
			return fmt.Errorf("conntrack: dump datagram of %d bytes cut to %d", n, len(k.dumpBuf))
		}
		done, err := k.decodeDump(n)
		if len(k.chunk) > 0 && !each(k.chunk) {
			return errClosed
		}
		clear(k.chunk)
		k.chunk = k.chunk[:0]
		if done || err != nil {
			return err
		}
	}
}

// decodeDump appends the entries of the dump datagram of n bytes in
// dumpBuf to chunk and reports whether it ended the dump.
func (k *netlinkKernel) decodeDump(n int) (done bool, err error) {
	ms := messages{b: k.dumpBuf[:n]}
	for ms.next() {
		m := &ms.m
		if m.seq != k.seq {
			continue
		}
		switch m.typ {
		case unix.NLMSG_DONE:
			return true, nil
		case unix.NLMSG_ERROR:
			if err := nlError(m.payload); err != nil {
				return true, fmt.Errorf("conntrack: dump: %w", err)
			}
			continue
		}
		body, ok := m.conntrack(msgCTNew)
		if !ok {
			continue
		}
		k.chunk = append(k.chunk, sample{})
		if err := parseConn(body, &k.chunk[len(k.chunk)-1]); err != nil {
			k.chunk = k.chunk[:len(k.chunk)-1]
			k.st.decodeErrors.Add(1)
		}
	}
	if ms.err != nil {
		return true, fmt.Errorf("conntrack: dump: %w", ms.err)
	}
	return false, nil
}

func (k *netlinkKernel) dumpErr(err error) error {
	if k.closed.Load() {
		return errClosed
	}
	return fmt.Errorf("conntrack: dump: %w", err)
}
