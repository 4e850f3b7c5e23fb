package offload

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podflow/podflow/exporter/internal/flow"
)

func TestWire(t *testing.T) {
	for _, tc := range []struct {
		name           string
		length         uint32
		headerLen      uint16
		mtu            uint32
		packets, bytes uint32
	}{
		{"fits the MTU", 1500, 52, 1500, 1, 1500},
		{"unknown MTU", 20000, 52, 0, 1, 20000},
		// TCP over IPv4 with timestamps: 1448 payload bytes a segment.
		{"TSO: 10 full segments", 52 + 10*1448, 52, 1500, 10, 10 * 1500},
		{"TSO: 10 full segments and a short one", 52 + 10*1448 + 100, 52, 1500, 11, 10*1500 + 152},
		{"GSO 64 KiB", 65535, 52, 1500, 46, 65535 + 45*52},
		{"BIG TCP at its least length", 65536, 52, 1500, 46, 65536 + 45*52},
		{"IPv6 TCP on a 9000 MTU", 40 + 32 + 3*8928, 72, 9000, 3, 3 * 9000},
		{"header as long as the MTU: left alone", 3000, 1500, 1500, 1, 3000},
		{"jumbogram beyond 32 bits is clamped", 4_294_967_295, 60, 1280, 3_520_465, 4_294_967_295},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &flow.Packet{Length: tc.length, HeaderLen: tc.headerLen}
			if n, b := Wire(p, tc.mtu); n != tc.packets || b != tc.bytes {
				t.Errorf("Wire(%d bytes, %d header, MTU %d) = %d packets, %d bytes; want %d, %d",
					tc.length, tc.headerLen, tc.mtu, n, b, tc.packets, tc.bytes)
			}
		})
	}
}

func fakeLinks(ifs ...net.Interface) (*Links, *atomic.Int32) {
	var calls atomic.Int32
	l := NewLinks()
	l.list = func() ([]net.Interface, error) {
		calls.Add(1)
		return ifs, nil
	}
	return l, &calls
}

func TestLinksMTU(t *testing.T) {
	l, _ := fakeLinks(net.Interface{Index: 1, MTU: 65536}, net.Interface{Index: 2, MTU: 1500}, net.Interface{Index: 7, MTU: 1450})
	if got := l.MTU(2, 7); got != 0 {
		t.Fatalf("before any refresh: %d, want 0", got)
	}
	if err := l.Refresh(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ in, out, want uint32 }{
		{2, 7, 1450}, {7, 2, 1450}, {0, 2, 1500}, {2, 0, 1500}, {0, 0, 0}, {9, 2, 1500}, {9, 0, 0},
	} {
		if got := l.MTU(tc.in, tc.out); got != tc.want {
			t.Errorf("MTU(%d, %d) = %d, want %d", tc.in, tc.out, got, tc.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { l.MTU(2, 99) }); n != 0 {
		t.Errorf("MTU allocates %v times", n)
	}
}

// TestLinksRefreshOnMiss: an interface unknown to the last refresh (a new
// pod's) makes Run refresh without waiting for the interval.
func TestLinksRefreshOnMiss(t *testing.T) {
	l, calls := fakeLinks(net.Interface{Index: 2, MTU: 1500})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var errs atomic.Int32
	done := make(chan struct{})
	go func() {
		l.Run(ctx, time.Hour, func(error) { errs.Add(1) })
		close(done)
	}()
	for l.MTU(2, 0) != 1500 {
		time.Sleep(10 * time.Millisecond) // each miss asks for a refresh
	}
	if calls.Load() == 0 {
		t.Fatal("no refresh")
	}
	cancel()
	<-done
	if errs.Load() != 0 {
		t.Errorf("%d refresh errors", errs.Load())
	}
}

func TestLinksKeepMTUsOnError(t *testing.T) {
	l, _ := fakeLinks(net.Interface{Index: 2, MTU: 1500})
	if err := l.Refresh(); err != nil {
		t.Fatal(err)
	}
	l.list = func() ([]net.Interface, error) { return nil, errors.New("netlink busy") }
	if err := l.Refresh(); err == nil {
		t.Fatal("no error")
	}
	if got := l.MTU(2, 0); got != 1500 {
		t.Errorf("after a failed refresh: %d, want the last known 1500", got)
	}
}

// BenchmarkPacketPath is what a large packet costs on the packet path:
// the MTU lookup of its two interfaces and the wire count.
func BenchmarkPacketPath(b *testing.B) {
	ifs := make([]net.Interface, 500) // a busy node's pod veths
	for i := range ifs {
		ifs[i] = net.Interface{Index: i + 1, MTU: 1500}
	}
	l, _ := fakeLinks(ifs...)
	if err := l.Refresh(); err != nil {
		b.Fatal(err)
	}
	p := &flow.Packet{Length: 20000, HeaderLen: 52, InIf: 17, OutIf: 333}
	b.ReportAllocs()
	for b.Loop() {
		Wire(p, l.MTU(p.InIf, p.OutIf))
	}
}
