package conntrack

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/podflow/podflow/exporter/internal/capture/netnstest"
)

// manyConns returns n distinct UDP connections, IPv4 and IPv6 mixed.
func manyConns(n int) []sample {
	out := make([]sample, n)
	for i := range out {
		c := conn(uint32(i), uint16(i))
		if i%2 == 1 {
			c.Orig.Src = netip.AddrFrom16([16]byte{0xfd, 15: byte(i >> 16)})
			c.Orig.Dst = netip.AddrFrom16([16]byte{0xfd, 15: 2})
			c.Reply.Src, c.Reply.Dst = c.Orig.Dst, c.Orig.Src
		}
		out[i] = at(c, 1, 100, 1, 100)
	}
	return out
}

// BenchmarkTrackerDump is the state machine's cost per dumped connection
// that moved since the last dump (the worst case: every one emits).
func BenchmarkTrackerDump(b *testing.B) {
	const n = 100_000
	entries := manyConns(n)
	tr := newTracker(&counters{})
	tr.beginDump()
	tr.endDump(entries)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for i := range entries {
			entries[i].origPackets++
			entries[i].origBytes += 100
		}
		tr.beginDump()
		tr.endDump(entries)
		tr.out = tr.out[:0]
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/entry")
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkDumpTable is the cost per connection of a real dump through
// ctnetlink, decoding included, and of applying it: a table of n
// connections created in a fresh namespace (root only).
func BenchmarkDumpTable(b *testing.B) {
	const n = 20_000
	ns := netnstest.New(b, "pfctb-")
	var k *netlinkKernel
	if err := ns.Do(func() error {
		var err error
		k, err = dialKernel(DefaultReadBuffer, &counters{})
		if err != nil {
			return err
		}
		return createFlows(n, 600)
	}); err != nil {
		b.Fatal(err)
	}
	defer k.close()
	tr := newTracker(&counters{})
	var buf []sample
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		var err error
		buf, err = k.dump(buf[:0])
		if err != nil {
			b.Fatal(err)
		}
		if len(buf) != n {
			b.Fatalf("dumped %d connections, want %d", len(buf), n)
		}
		tr.beginDump()
		tr.endDump(buf)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/entry")
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkEventRate opens short UDP connections at a fixed rate in a
// namespace (each datagram to a new port, ended by a one-second timeout)
// and reports the destroy events the Source received per second and its
// overruns. One op is one second of traffic: run with -benchtime=3x.
// Root only.
func BenchmarkEventRate(b *testing.B) {
	for _, rate := range []int{1000, 5000, 10_000, 20_000, 50_000, 100_000} {
		b.Run(fmt.Sprintf("conns=%d/s", rate), func(b *testing.B) { benchEventRate(b, rate) })
	}
}

func benchEventRate(b *testing.B, rate int) {
	tb := newTestbed(b)
	s := newSource(b, tb, Config{DumpInterval: time.Second, EnableAccounting: true})
	var events uint64
	stop := run(b, s, func(ds []Delta) {
		for i := range ds {
			if ds[i].Final {
				events++
			}
		}
	})
	// Source ports times destination ports: enough distinct tuples that
	// none is reused before its connection timed out.
	socks := make([]*net.UDPConn, 8)
	for i := range socks {
		if err := tb.node.Do(func() (err error) {
			socks[i], err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(nodeV4, 0)))
			return err
		}); err != nil {
			b.Fatal(err)
		}
		defer socks[i].Close()
	}
	payload := make([]byte, 18)
	port, sock := 1024, 0
	sent := 0
	start := time.Now()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// A tick every millisecond sends what the rate owes so far.
		end := start.Add(time.Duration(i+1) * time.Second)
		for now := time.Now(); now.Before(end); now = time.Now() {
			owed := int(float64(rate) * now.Sub(start).Seconds())
			for ; sent < owed; sent++ {
				port++
				if port > 65535 {
					port = 1024
					sock = (sock + 1) % len(socks)
				}
				_, _ = socks[sock].WriteToUDPAddrPort(payload, netip.AddrPortFrom(peerV4, uint16(port)))
			}
			time.Sleep(time.Millisecond)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	// The last connections end a timeout and a dump later.
	time.Sleep(3 * time.Second)
	stop()
	st := s.Stats()
	b.ReportMetric(float64(sent)/elapsed.Seconds(), "conns/s")
	b.ReportMetric(float64(st.Events)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(st.LostEvents), "overruns")
	b.ReportMetric(float64(st.Lost), "lost")
	b.ReportMetric(float64(sent-int(events)), "unseen")
}

// BenchmarkFlushBurst ends n connections at once (conntrack -F), the
// worst burst of destroy events, into the default read buffer and
// reports how many the Source read and how many ended unseen (counted
// in Lost). Root only; run with -benchtime=1x.
func BenchmarkFlushBurst(b *testing.B) {
	for _, n := range []int{10_000, 50_000, 100_000} {
		b.Run(fmt.Sprintf("conns=%d", n), func(b *testing.B) {
			for b.Loop() {
				ns := netnstest.New(b, "pfctb-")
				var s *Source
				if err := ns.Do(func() (err error) {
					if s, err = New(Config{DumpInterval: 100 * time.Millisecond}); err != nil {
						return err
					}
					return createFlows(n, 600)
				}); err != nil {
					b.Fatal(err)
				}
				stop := run(b, s, func([]Delta) {})
				waitFor(b, "the baseline", func() bool { return s.Stats().Tracked == uint64(n) })
				start := time.Now()
				ns.MustRun(b, "conntrack", "-F")
				waitFor(b, "every connection to end", func() bool { return s.Stats().Tracked == 0 })
				elapsed := time.Since(start)
				stop()
				st := s.Stats()
				b.ReportMetric(float64(st.Events), "events")
				b.ReportMetric(float64(st.Lost), "lost")
				b.ReportMetric(float64(st.LostEvents), "overruns")
				b.ReportMetric(float64(st.Events)/elapsed.Seconds(), "events/s")
				ns.Close()
			}
		})
	}
}
