package localaddr

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/podflow/podflow/exporter/internal/capture/netnstest"
)

func TestLocal(t *testing.T) {
	s := New()
	s.list = func() ([]net.Addr, error) {
		return []net.Addr{
			&net.IPNet{IP: net.ParseIP("192.168.1.10").To4(), Mask: net.CIDRMask(24, 32)},
			&net.IPNet{IP: net.ParseIP("fd00::10"), Mask: net.CIDRMask(64, 128)},
			&net.IPAddr{IP: net.ParseIP("10.96.0.10")},
		}, nil
	}
	if s.Local(netip.MustParseAddr("192.168.1.10")) {
		t.Fatal("an address is local before the first refresh")
	}
	if err := s.Refresh(); err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{
		"192.168.1.10":        true,
		"::ffff:192.168.1.10": true, // mapped: the same address
		"fd00::10":            true,
		"10.96.0.10":          true,
		"127.0.0.53":          true, // loopback needs no interface
		"::1":                 true,
		"192.168.1.11":        false, // same subnet, another host
		"10.244.1.5":          false,
	} {
		if got := s.Local(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Local(%s) = %v, want %v", addr, got, want)
		}
	}
	// A failed read keeps the last set.
	s.list = func() ([]net.Addr, error) { return nil, errors.New("netlink: no") }
	if err := s.Refresh(); err == nil || !s.Local(netip.MustParseAddr("fd00::10")) {
		t.Errorf("Refresh() = %v and the last set lost", err)
	}
}

func TestLocalAllocatesNothing(t *testing.T) {
	s := New()
	a := netip.MustParseAddr("10.0.0.1")
	if n := testing.AllocsPerRun(100, func() { s.Local(a) }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

// TestRunFollowsAnnouncements checks, in a network namespace of its own,
// that an address added or removed is known from the kernel's
// announcement alone: the periodic refresh is an hour away.
func TestRunFollowsAnnouncements(t *testing.T) {
	ns := netnstest.New(t, "pfla-")
	s := New()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ns.Do(func() error {
			s.Run(ctx, time.Hour, func(err error) { t.Errorf("Run: %v", err) })
			return nil
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	addr := netip.MustParseAddr("192.0.2.77")
	waitFor := func(want bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for s.Local(addr) != want {
			if time.Now().After(deadline) {
				t.Fatalf("Local(%v) is still %v", addr, !want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	ns.MustRun(t, "ip", "addr", "add", addr.String()+"/32", "dev", "lo")
	waitFor(true)
	ns.MustRun(t, "ip", "addr", "del", addr.String()+"/32", "dev", "lo")
	waitFor(false)
}
