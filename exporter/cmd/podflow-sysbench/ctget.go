package main

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync/atomic"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/podflow/podflow/exporter/internal/capture"
	"github.com/podflow/podflow/exporter/internal/flow"
)

// ctnetlink constants (linux/netfilter/nfnetlink_conntrack.h).
const (
	ctNew          = 1 << 8   // NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_NEW (0): an entry
	ctGet          = 1<<8 | 1 // NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_GET
	ctDelete       = 1<<8 | 2 // NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_DELETE
	ctaTupleOrig   = 1
	ctaTupleReply  = 2
	ctaTupleIP     = 1
	ctaTupleProto  = 2
	ctaIPv4Src     = 1
	ctaIPv4Dst     = 2
	ctaProtoNum    = 1
	ctaProtoSrc    = 2
	ctaProtoDst    = 3
	nfnetlinkV0    = 0
	ipv4HeaderSize = 20
)

// ctGetter is the alternative design the benchmark compares the pre-DNAT
// log with: at each translated connection's first packet, ask ctnetlink
// for the conntrack entry by its reply tuple (the backend's address and
// port to the client's, known from the post-DNAT packet when nothing
// source-NATed it) and read the original destination. It asks
// synchronously on the reader's goroutine: the CPU it costs is what
// matters here, and a production version would only add a hand-off.
type ctGetter struct {
	next        capture.Handler
	fd          int
	seq         uint32
	buf         []byte
	named, miss atomic.Uint64
}

// newCTGetter opens a blocking ctnetlink socket. Its requests are sent
// and answered one by one on plain system calls: ctnetlink marks the
// answer to a GET as part of a multi-part message (NLM_F_MULTI) without
// ever ending it, which request-and-wait netlink clients do not expect.
func newCTGetter(next capture.Handler) (*ctGetter, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("ctnetlink: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("ctnetlink: %w", err)
	}
	return &ctGetter{next: next, fd: fd, buf: make([]byte, 1<<16)}, nil
}

func (g *ctGetter) Handle(rec *flow.Record) {
	if rec.CT.DNAT && rec.CT.Info == flow.CTNew && rec.Family == unix.AF_INET && len(rec.Payload) >= ipv4HeaderSize+4 {
		if _, ok := g.lookup(rec.Payload); ok {
			g.named.Add(1)
		} else {
			g.miss.Add(1)
		}
	}
	g.next.Handle(rec)
}

// lookup gets the entry whose reply tuple answers the IPv4 packet b
// (TCP or UDP) and returns its original destination.
func (g *ctGetter) lookup(b []byte) (netip.Addr, bool) {
	ihl := int(b[0]&0x0f) * 4
	if len(b) < ihl+4 {
		return netip.Addr{}, false
	}
	proto := b[9]
	src, dst := b[12:16], b[16:20]
	sport, dport := b[ihl:ihl+2], b[ihl+2:ihl+4]
	ae := netlink.NewAttributeEncoder()
	ae.Nested(ctaTupleReply, func(ae *netlink.AttributeEncoder) error {
		ae.Nested(ctaTupleIP, func(ae *netlink.AttributeEncoder) error {
			ae.Bytes(ctaIPv4Src, dst)
			ae.Bytes(ctaIPv4Dst, src)
			return nil
		})
		ae.Nested(ctaTupleProto, func(ae *netlink.AttributeEncoder) error {
			ae.Uint8(ctaProtoNum, proto)
			ae.Bytes(ctaProtoSrc, dport)
			ae.Bytes(ctaProtoDst, sport)
			return nil
		})
		return nil
	})
	attrs, err := ae.Encode()
	if err != nil {
		return netip.Addr{}, false
	}
	g.seq++
	req := make([]byte, 16, 16+4+len(attrs))
	req = append(req, unix.AF_INET, nfnetlinkV0, 0, 0)
	req = append(req, attrs...)
	binary.NativeEndian.PutUint32(req[0:4], uint32(len(req))) //nolint:gosec // a few dozen bytes
	binary.NativeEndian.PutUint16(req[4:6], ctGet)
	binary.NativeEndian.PutUint16(req[6:8], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(req[8:12], g.seq)
	if err := unix.Sendto(g.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return netip.Addr{}, false
	}
	n, _, err := unix.Recvfrom(g.fd, g.buf, 0)
	if err != nil || n < 16+4 || binary.NativeEndian.Uint16(g.buf[4:6]) != ctNew {
		return netip.Addr{}, false // NLMSG_ERROR: no such entry
	}
	l := min(int(binary.NativeEndian.Uint32(g.buf[0:4])), n)
	return origDst(g.buf[16+4 : l])
}

// origDst reads CTA_TUPLE_ORIG / CTA_TUPLE_IP / CTA_IP_V4_DST.
func origDst(b []byte) (netip.Addr, bool) {
	for _, path := range []uint16{ctaTupleOrig, ctaTupleIP} {
		ad, err := netlink.NewAttributeDecoder(b)
		if err != nil {
			return netip.Addr{}, false
		}
		var found []byte
		for ad.Next() {
			if ad.Type() == path {
				found = ad.Bytes()
			}
		}
		if found == nil {
			return netip.Addr{}, false
		}
		b = found
	}
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return netip.Addr{}, false
	}
	for ad.Next() {
		if ad.Type() == ctaIPv4Dst && len(ad.Bytes()) == 4 {
			return netip.AddrFrom4([4]byte(ad.Bytes())), true
		}
	}
	return netip.Addr{}, false
}
