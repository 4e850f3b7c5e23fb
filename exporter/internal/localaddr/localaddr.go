// Package localaddr knows the addresses of this network namespace, kept
// current from the kernel's address notifications, so that connection
// mode can leave out what packet mode's table leaves out as loopback: a
// connection whose two ends are both this node's own addresses travels
// over lo.
package localaddr

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Set is the set of local addresses. Local is safe for concurrent use
// and allocates nothing.
type Set struct {
	addrs atomic.Pointer[map[netip.Addr]struct{}]
	list  func() ([]net.Addr, error)
}

// New returns a Set that knows only loopback until Refresh or Run.
func New() *Set {
	s := &Set{list: net.InterfaceAddrs}
	s.addrs.Store(&map[netip.Addr]struct{}{})
	return s
}

// Local reports whether addr is an address of this namespace or a
// loopback address (127.0.0.0/8, ::1, which need no interface of their
// own to be local).
func (s *Set) Local(addr netip.Addr) bool {
	addr = addr.Unmap()
	if addr.IsLoopback() {
		return true
	}
	_, ok := (*s.addrs.Load())[addr]
	return ok
}

// Refresh reads the namespace's addresses again.
func (s *Set) Refresh() error {
	as, err := s.list()
	if err != nil {
		return err
	}
	m := make(map[netip.Addr]struct{}, len(as))
	for _, a := range as {
		var ip net.IP
		switch v := a.(type) {
		case *net.IPNet:
			ip = v.IP
		case *net.IPAddr:
			ip = v.IP
		}
		if addr, ok := netip.AddrFromSlice(ip); ok {
			m[addr.Unmap()] = struct{}{}
		}
	}
	s.addrs.Store(&m)
	return nil
}

// Multicast groups of address changes (RTMGRP_IPV4_IFADDR,
// RTMGRP_IPV6_IFADDR in linux/rtnetlink.h).
const groupsIfAddr = 0x10 | 0x100

// Run refreshes the set whenever the kernel announces an address change,
// and every interval in case an announcement was lost, until ctx is
// done. onErr hears of failures; the last known set stays meanwhile.
func (s *Set) Run(ctx context.Context, interval time.Duration, onErr func(error)) {
	changed := make(chan struct{}, 1)
	if c, err := netlink.Dial(unix.NETLINK_ROUTE, &netlink.Config{Groups: groupsIfAddr}); err != nil {
		onErr(err)
	} else {
		stop := context.AfterFunc(ctx, func() { _ = c.Close() })
		defer stop()
		go func() {
			for {
				_, err := c.Receive()
				if err != nil && !errors.Is(err, unix.ENOBUFS) {
					// Closed at the end, or broken: the periodic
					// refresh goes on alone.
					return
				}
				// A message or an overrun: read everything again.
				select {
				case changed <- struct{}{}:
				default:
				}
			}
		}()
	}
	// The subscription is in place: nothing announced from now on is
	// missed by this first read.
	if err := s.Refresh(); err != nil {
		onErr(err)
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-tick.C:
		}
		if err := s.Refresh(); err != nil {
			onErr(err)
		}
	}
}
