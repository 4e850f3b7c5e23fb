package conntrack

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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
	tr.dumpEntries(entries)
	tr.endDump()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for i := range entries {
			entries[i].origPackets++
			entries[i].origBytes += 100
		}
		tr.beginDump()
		tr.dumpEntries(entries)
		tr.endDump()
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
	var got int
	each := func(entries []sample) bool {
		got += len(entries)
		tr.dumpEntries(entries)
		tr.out = tr.out[:0]
		return true
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		got = 0
		tr.beginDump()
		if err := k.dump(each); err != nil {
			b.Fatal(err)
		}
		tr.endDump()
		if got != n {
			b.Fatalf("dumped %d connections, want %d", got, n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/entry")
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkEventRate opens short UDP connections at a fixed rate in a
// namespace (each datagram to a new port, ended by a one-second timeout)
// from a generator process, and reports the destroy events the Source
// received per second, its overruns, and the CPU the test process (the
// Source, with nothing else to do) spent per event. One op is one second
// of traffic: run with -benchtime=3x. Root only.
func BenchmarkEventRate(b *testing.B) {
	for _, rate := range []int{1000, 10_000, 20_000, 50_000, 100_000} {
		b.Run(fmt.Sprintf("conns=%d/s", rate), func(b *testing.B) { benchEventRate(b, rate) })
	}
}

func benchEventRate(b *testing.B, rate int) {
	tb := newTestbed(b)
	s := newSource(b, tb, Config{EnableAccounting: true})
	var finals atomic.Uint64
	stop := run(b, s, func(ds []Delta) {
		for i := range ds {
			if ds[i].Final {
				finals.Add(1)
			}
		}
	})
	waitDumps(b, s, 1)
	gen := tb.node.Command(os.Args[0], "-test.run=^$")
	gen.Env = append(os.Environ(), fmt.Sprintf("%s=%d,%d,%s", genEnv, rate, b.N, peerV4))
	cpu0 := cpuTime(b)
	b.ResetTimer()
	start := time.Now()
	out, err := gen.Output()
	elapsed := time.Since(start)
	if err != nil {
		b.Fatalf("generator: %v", err)
	}
	var sent uint64
	if _, err := fmt.Sscanf(string(out), "sent %d", &sent); err != nil {
		b.Fatalf("generator said %q", out)
	}
	// The last connections end a timeout and a garbage collection later.
	deadline := time.Now().Add(30 * time.Second)
	for finals.Load() < sent && time.Now().Before(deadline) && s.Stats().LostEvents == 0 {
		time.Sleep(50 * time.Millisecond)
	}
	b.StopTimer()
	cpu := cpuTime(b) - cpu0
	stop()
	st := s.Stats()
	b.ReportMetric(float64(sent)/elapsed.Seconds(), "conns/s")
	b.ReportMetric(float64(st.Events)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(st.LostEvents), "overruns")
	b.ReportMetric(float64(sent)-float64(finals.Load()), "unseen")
	if st.Events > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(st.Events), "cpu-µs/event")
	}
}

// genEnv makes the test binary a traffic generator: "rate,seconds,addr".
const genEnv = "PODFLOW_CT_GENERATOR"

func TestMain(m *testing.M) {
	if v := os.Getenv(genEnv); v != "" {
		os.Exit(generate(v))
	}
	os.Exit(m.Run())
}

// generate sends one UDP datagram per new connection at a fixed rate,
// from 8 source ports to every destination port in turn: enough distinct
// tuples that none is reused before its connection timed out.
func generate(spec string) int {
	var rate, seconds int
	var addr string
	if _, err := fmt.Sscanf(strings.ReplaceAll(spec, ",", " "), "%d %d %s", &rate, &seconds, &addr); err != nil {
		fmt.Fprintln(os.Stderr, "generator:", err)
		return 2
	}
	dst := netip.MustParseAddr(addr)
	socks := make([]*net.UDPConn, 8)
	for i := range socks {
		c, err := net.ListenUDP("udp", nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, "generator:", err)
			return 2
		}
		socks[i] = c
	}
	payload := make([]byte, 18)
	port, sock, sent := 1024, 0, 0
	start := time.Now()
	end := start.Add(time.Duration(seconds) * time.Second)
	// A tick every millisecond sends what the rate owes so far.
	for now := time.Now(); now.Before(end); now = time.Now() {
		owed := int(float64(rate) * now.Sub(start).Seconds())
		for ; sent < owed; sent++ {
			port++
			if port > 65535 {
				port = 1024
				sock = (sock + 1) % len(socks)
			}
			_, _ = socks[sock].WriteToUDPAddrPort(payload, netip.AddrPortFrom(dst, uint16(port))) //nolint:gosec // a port number
		}
		time.Sleep(time.Millisecond)
	}
	fmt.Printf("sent %d\n", sent)
	return 0
}

// cpuTime is the CPU the test process has used so far.
func cpuTime(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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
