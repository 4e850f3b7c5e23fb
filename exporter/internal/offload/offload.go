// Package offload counts a segmentation offload super-packet as the
// packets it stands for on the wire.
//
// netfilter sees a packet before the driver (or the software fallback)
// cuts it into segments when it is sent (TSO, GSO), and after the driver
// or the stack merged segments when it was received (GRO): one packet of
// up to 64 KiB, more with BIG TCP. Counted as it is, it is one packet and
// its bytes lack the headers of every segment after the first. Its wire
// form is not in the packet, but its limits are: each segment is at most
// the MTU of the link it crosses, and repeats the IP headers and the TCP
// header (with options) or the UDP header. Wire counts
//
//	n = ceil((L - H) / (MTU - H)) packets, L + (n-1)*H bytes
//
// for an L3 length L, header length H (flow.Packet.HeaderLen) and the
// smallest MTU of the interfaces the packet came in on and goes out of.
// This is exact for TCP segments that fill the MTU, which is what the
// stack builds for bulk transfers; it counts too few packets when the
// sender's segments are smaller (an MSS clamped below the link's MTU, or
// GRO on a link whose peer had a smaller MTU), and IP fragments (a large
// datagram of another protocol) repeat only the IP header, which makes
// their bytes a little high. BIG TCP packets are counted at the least
// length their zero length field can stand for (flow.Packet.BigTCP).
package offload

import (
	"context"
	"math"
	"net"
	"sync/atomic"
	"time"

	"github.com/podflow/podflow/exporter/internal/flow"
)

// MinMTU is the smallest MTU Wire is given a chance to correct for: IPv6's
// minimum. Packets up to this long fit any link of a cluster as they are,
// so the packet path looks no MTU up for them.
const MinMTU = 1280

// Wire returns the packets and L3 bytes p stands for on a link of the
// given MTU; one packet of p.Length bytes when it fits, or when mtu is 0
// (unknown).
func Wire(p *flow.Packet, mtu uint32) (packets, bytes uint32) {
	l, h := uint64(p.Length), uint64(p.HeaderLen)
	if mtu == 0 || l <= uint64(mtu) || uint64(mtu) <= h {
		return 1, p.Length
	}
	per := uint64(mtu) - h
	n := (l - h + per - 1) / per
	return uint32(min(n, math.MaxUint32)), uint32(min(l+(n-1)*h, math.MaxUint32)) //nolint:gosec // clamped
}

// Links knows the MTU of this network namespace's interfaces by index.
// MTU is safe for concurrent use and allocates nothing; an index it does
// not know (an interface created since the last refresh, as for a new pod)
// asks Run for an early refresh.
type Links struct {
	mtus atomic.Pointer[map[uint32]uint32]
	miss chan struct{}
	list func() ([]net.Interface, error)
}

// NewLinks returns Links that know nothing until Refresh or Run.
func NewLinks() *Links {
	return &Links{miss: make(chan struct{}, 1), list: net.Interfaces}
}

// MTU returns the smallest known MTU of the interfaces in and out (0 for
// none), or 0 when neither is known.
func (l *Links) MTU(in, out uint32) uint32 {
	a, b := l.mtu(in), l.mtu(out)
	switch {
	case a == 0:
		return b
	case b == 0:
		return a
	}
	return min(a, b)
}

func (l *Links) mtu(index uint32) uint32 {
	if index == 0 {
		return 0
	}
	if m := l.mtus.Load(); m != nil {
		if v, ok := (*m)[index]; ok {
			return v
		}
	}
	select {
	case l.miss <- struct{}{}:
	default:
	}
	return 0
}

// Refresh reads the interfaces and their MTUs.
func (l *Links) Refresh() error {
	ifs, err := l.list()
	if err != nil {
		return err
	}
	m := make(map[uint32]uint32, len(ifs))
	for _, i := range ifs {
		if i.Index > 0 && i.MTU > 0 {
			m[uint32(i.Index)] = uint32(i.MTU) //nolint:gosec // positive kernel values
		}
	}
	l.mtus.Store(&m)
	return nil
}

// Run refreshes every interval, and on an unknown index at most once a
// second, until ctx is done. Errors keep the last known MTUs and are
// passed to onErr.
func (l *Links) Run(ctx context.Context, interval time.Duration, onErr func(error)) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-l.miss:
			if wait := time.Until(last.Add(time.Second)); wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}
		last = time.Now()
		if err := l.Refresh(); err != nil && onErr != nil {
			onErr(err)
		}
	}
}
