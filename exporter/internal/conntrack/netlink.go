package conntrack

import (
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"

	"github.com/mdlayher/netlink"
	ct "github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"
)

// eventBufferSize is the read buffer for one event datagram: the kernel
// sends one message of a few hundred bytes per destroy.
const eventBufferSize = 64 << 10

// netlinkKernel is ctnetlink: a socket subscribed to destroy events and
// another for dumps, both in the namespace New ran in.
type netlinkKernel struct {
	events *netlink.Conn
	dumps  *ct.Conn
	closed atomic.Bool
}

func dialKernel(readBuffer int) (*netlinkKernel, error) {
	dumps, err := ct.Dial(nil)
	if err != nil {
		return nil, fmt.Errorf("conntrack: open a netfilter netlink socket: %w", err)
	}
	// A cheap request that fails when ctnetlink is missing
	// (nf_conntrack_netlink not loaded and not loadable) or not permitted:
	// the lookup of a connection that cannot exist answers ENOENT.
	// (StatsGlobal would be the natural probe, but its reply never ends
	// the library's dump read on recent kernels.)
	probe := ct.NewFlow(unix.IPPROTO_UDP, 0, netip.IPv4Unspecified(), netip.IPv4Unspecified(), 0, 0, 1, 0)
	if _, err := dumps.Get(probe); err != nil && !errors.Is(err, unix.ENOENT) {
		_ = dumps.Close()
		return nil, fmt.Errorf("conntrack: ctnetlink is unavailable (is nf_conntrack_netlink loaded, and does podflow have CAP_NET_ADMIN?): %w", err)
	}
	events, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{MessageBufferSize: eventBufferSize})
	if err != nil {
		_ = dumps.Close()
		return nil, fmt.Errorf("conntrack: open the event socket: %w", err)
	}
	k := &netlinkKernel{events: events, dumps: dumps}
	if err := k.setReadBuffer(readBuffer); err != nil {
		_ = k.close()
		return nil, err
	}
	if err := events.JoinGroup(uint32(netfilter.GroupCTDestroy)); err != nil {
		_ = k.close()
		return nil, fmt.Errorf("conntrack: subscribe to destroy events: %w", err)
	}
	return k, nil
}

// setReadBuffer forces the receive buffer past net.core.rmem_max
// (SO_RCVBUFFORCE, CAP_NET_ADMIN), falling back to SO_RCVBUF.
func (k *netlinkKernel) setReadBuffer(n int) error {
	rc, err := k.events.SyscallConn()
	if err != nil {
		return fmt.Errorf("conntrack: event socket: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
	}); err != nil {
		return fmt.Errorf("conntrack: event socket: %w", err)
	}
	if serr != nil {
		if err := k.events.SetReadBuffer(n); err != nil {
			return fmt.Errorf("conntrack: set the event socket's read buffer: %w", err)
		}
	}
	return nil
}

func (k *netlinkKernel) close() error {
	k.closed.Store(true)
	return errors.Join(k.events.Close(), k.dumps.Close())
}

func (k *netlinkKernel) receive(dst []sample) ([]sample, error) {
	msgs, err := k.events.Receive()
	if err != nil {
		switch {
		case k.closed.Load():
			return dst, errClosed
		case errors.Is(err, unix.ENOBUFS):
			return dst, errOverrun
		}
		return dst, fmt.Errorf("conntrack: receive events: %w", err)
	}
	var bad *decodeError
	for _, m := range msgs {
		var ev ct.Event
		if err := ev.Unmarshal(m); err != nil {
			if bad == nil {
				bad = &decodeError{err: err}
			}
			bad.n++
			continue
		}
		if ev.Type != ct.EventDestroy || ev.Flow == nil {
			continue
		}
		dst = append(dst, fromFlow(ev.Flow))
	}
	if bad != nil {
		return dst, bad
	}
	return dst, nil
}

func (k *netlinkKernel) dump(dst []sample) ([]sample, error) {
	flows, err := k.dumps.Dump(nil)
	if err != nil {
		if k.closed.Load() {
			return dst, errClosed
		}
		return dst, fmt.Errorf("conntrack: dump: %w", err)
	}
	for i := range flows {
		dst = append(dst, fromFlow(&flows[i]))
	}
	return dst, nil
}

// fromFlow keeps what podflow needs of a flow. A flow created while
// accounting was off has no counters: they read as zero.
func fromFlow(f *ct.Flow) sample {
	return sample{
		Conn: Conn{
			ID:     f.ID,
			Proto:  f.TupleOrig.Proto.Protocol,
			Orig:   fromTuple(&f.TupleOrig),
			Reply:  fromTuple(&f.TupleReply),
			Status: uint32(f.Status),
			Zone:   f.Zone,
		},
		origPackets:  f.CountersOrig.Packets,
		origBytes:    f.CountersOrig.Bytes,
		replyPackets: f.CountersReply.Packets,
		replyBytes:   f.CountersReply.Bytes,
	}
}

func fromTuple(t *ct.Tuple) Tuple {
	return Tuple{
		Src:     t.IP.SourceAddress,
		Dst:     t.IP.DestinationAddress,
		SrcPort: t.Proto.SourcePort,
		DstPort: t.Proto.DestinationPort,
	}
}
