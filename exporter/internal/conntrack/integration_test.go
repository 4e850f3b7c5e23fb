package conntrack

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	ct "github.com/ti-mo/conntrack"

	"github.com/podflow/podflow/exporter/internal/capture/netnstest"
)

// testbed is a node namespace, where conntrack tracks and the Source
// runs, joined by a veth pair to a peer namespace.
type testbed struct {
	node, peer *netnstest.NS
}

var (
	nodeV4 = netip.MustParseAddr("10.97.0.2")
	peerV4 = netip.MustParseAddr("10.97.0.1")
	nodeV6 = netip.MustParseAddr("fd97::2")
	peerV6 = netip.MustParseAddr("fd97::1")
)

// ctTable makes the node track connections (conntrack hooks a namespace
// only once a rule needs it) and counts the test's TCP per direction
// with nftables, as the reference for packets the kernel segments.
const ctTable = `table inet pfcttest {
	chain out {
		type filter hook output priority 0; policy accept;
		ct state new counter
		ip daddr 10.97.0.1 tcp dport 7100 counter
	}
	chain in {
		type filter hook input priority 0; policy accept;
		ip saddr 10.97.0.1 tcp sport 7100 counter
	}
}
`

func newTestbed(t testing.TB) *testbed {
	t.Helper()
	node := netnstest.New(t, "pfct-")
	peer := netnstest.New(t, "pfct-")
	if err := netnstest.Link(node, "n0", []string{nodeV4.String() + "/24", nodeV6.String() + "/64"}, peer, "p0", []string{peerV4.String() + "/24", peerV6.String() + "/64"}); err != nil {
		t.Fatal(err)
	}
	// Static neighbours: no neighbour discovery in the way.
	nmac := strings.TrimSpace(node.MustRun(t, "cat", "/sys/class/net/n0/address"))
	pmac := strings.TrimSpace(peer.MustRun(t, "cat", "/sys/class/net/p0/address"))
	node.MustRun(t, "ip", "neigh", "replace", peerV4.String(), "lladdr", pmac, "dev", "n0", "nud", "permanent")
	node.MustRun(t, "ip", "neigh", "replace", peerV6.String(), "lladdr", pmac, "dev", "n0", "nud", "permanent")
	peer.MustRun(t, "ip", "neigh", "replace", nodeV4.String(), "lladdr", nmac, "dev", "p0", "nud", "permanent")
	peer.MustRun(t, "ip", "neigh", "replace", nodeV6.String(), "lladdr", nmac, "dev", "p0", "nud", "permanent")
	cmd := node.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ctTable)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	// A short UDP timeout lets a connection end by expiring.
	node.MustRun(t, "sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout=1")
	return &testbed{node: node, peer: peer}
}

// nftCounter reads the counter of the rule in chain that matches expr.
func (tb *testbed) nftCounter(t *testing.T, chain, expr string) (packets, bytes uint64) {
	t.Helper()
	out := tb.node.MustRun(t, "nft", "list", "chain", "inet", "pfcttest", chain)
	re := regexp.MustCompile(regexp.QuoteMeta(expr) + ` counter packets (\d+) bytes (\d+)`)
	m := re.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no counter for %q in:\n%s", expr, out)
	}
	p, _ := strconv.ParseUint(m[1], 10, 64)
	b, _ := strconv.ParseUint(m[2], 10, 64)
	return p, b
}

// flowKey names a connection by protocol and original tuple: a tuple the
// kernel tracks twice (after an expiry) sums up over both.
type flowKey struct {
	proto uint8
	orig  Tuple
}

// tally sums the deltas a Source emits.
type tally struct {
	mu     sync.Mutex
	sums   map[flowKey][4]uint64
	finals map[flowKey]int
}

func (ta *tally) emit(ds []Delta) {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	for _, d := range ds {
		k := flowKey{d.Proto, d.Orig}
		v := ta.sums[k]
		v[0] += d.OrigPackets
		v[1] += d.OrigBytes
		v[2] += d.ReplyPackets
		v[3] += d.ReplyBytes
		ta.sums[k] = v
		if d.Final {
			ta.finals[k]++
		}
	}
}

func (ta *tally) get(k flowKey) ([4]uint64, int) {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	return ta.sums[k], ta.finals[k]
}

// udpFlow is a connected UDP socket in a namespace.
type udpFlow struct {
	c     *net.UDPConn
	proto uint8
	orig  Tuple
	l3    uint64 // IP and UDP headers
}

func dialUDP(t *testing.T, ns *netnstest.NS, laddr, raddr netip.AddrPort) *udpFlow {
	t.Helper()
	var c *net.UDPConn
	if err := ns.Do(func() (err error) {
		c, err = net.DialUDP("udp", net.UDPAddrFromAddrPort(laddr), net.UDPAddrFromAddrPort(raddr))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	l := c.LocalAddr().(*net.UDPAddr).AddrPort()
	hdr := uint64(20 + 8)
	if raddr.Addr().Is6() {
		hdr = 40 + 8
	}
	return &udpFlow{c: c, proto: 17, orig: Tuple{Src: l.Addr(), Dst: raddr.Addr(), SrcPort: l.Port(), DstPort: raddr.Port()}, l3: hdr}
}

// send sends n datagrams of size bytes; with echo, it waits for each
// reply. It returns the L3 bytes sent (and answered).
func (f *udpFlow) send(t *testing.T, n, size int, echo bool) uint64 {
	t.Helper()
	buf := make([]byte, size)
	in := make([]byte, size+1)
	for i := range n {
		if _, err := f.c.Write(buf); err != nil {
			t.Fatal(err)
		}
		if echo {
			_ = f.c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if m, err := f.c.Read(in); err != nil || m != size {
				t.Fatalf("echo %d: %d bytes, %v", i, m, err)
			}
		}
	}
	return uint64(n) * (f.l3 + uint64(size))
}

// udpServer listens on addr in ns; with echo it answers every datagram,
// otherwise it only reads them.
func udpServer(t *testing.T, ns *netnstest.NS, addr netip.AddrPort, echo bool) {
	t.Helper()
	var pc *net.UDPConn
	if err := ns.Do(func() (err error) { pc, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr)); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if echo {
				_, _ = pc.WriteToUDPAddrPort(buf[:n], from)
			}
		}
	}()
}

// tcpEcho serves TCP echo on addr in ns.
func tcpEcho(t *testing.T, ns *netnstest.NS, addr string) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 65536)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
	}()
}

// newSource opens a Source in the node.
func newSource(t testing.TB, tb *testbed, cfg Config) *Source {
	t.Helper()
	var s *Source
	if err := tb.node.Do(func() (err error) { s, err = New(cfg); return err }); err != nil {
		t.Fatal(err)
	}
	return s
}

// run runs s until the test ends or stop is called.
func run(t testing.TB, s *Source, emit func([]Delta)) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, emit) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return within 10s of cancel")
		}
	}
	t.Cleanup(stop)
	return stop
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitDumps waits until n more dumps have been applied, so that the
// last one began after everything before the call.
func waitDumps(t testing.TB, s *Source, n uint64) {
	t.Helper()
	target := s.Stats().Dumps + n
	waitFor(t, fmt.Sprintf("dump %d", target), func() bool { return s.Stats().Dumps >= target })
}

func TestSourceCountsExactly(t *testing.T) {
	tb := newTestbed(t)
	udpServer(t, tb.peer, netip.AddrPortFrom(peerV4, 7000), true)
	udpServer(t, tb.peer, netip.AddrPortFrom(peerV4, 7001), false)
	udpServer(t, tb.peer, netip.AddrPortFrom(peerV6, 7000), true)
	tcpEcho(t, tb.peer, net.JoinHostPort(peerV4.String(), "7100"))

	// Tracked while accounting is still off: no counters, ever.
	noAcct := dialUDP(t, tb.node, netip.AddrPortFrom(nodeV4, 0), netip.AddrPortFrom(peerV4, 7000))
	noAcct.send(t, 3, 100, true)
	if got := strings.TrimSpace(tb.node.MustRun(t, "cat", acctPath)); got != "0" {
		t.Fatalf("a fresh namespace has nf_conntrack_acct=%s", got)
	}

	want := map[flowKey][4]uint64{}
	var b uint64
	ta := &tally{sums: map[flowKey][4]uint64{}, finals: map[flowKey]int{}}
	s := newSource(t, tb, Config{DumpInterval: 100 * time.Millisecond, EnableAccounting: true})
	st := s.Stats()
	if !st.AccountingEnabled || !st.EnabledByPodflow {
		t.Fatalf("accounting: %+v", st)
	}
	if got := strings.TrimSpace(tb.node.MustRun(t, "cat", acctPath)); got != "1" {
		t.Fatalf("nf_conntrack_acct=%s after New", got)
	}
	// pre began before Run: the first dump takes its baseline, only
	// what it sends afterwards counts.
	pre := dialUDP(t, tb.node, netip.AddrPortFrom(nodeV4, 0), netip.AddrPortFrom(peerV4, 7000))
	pre.send(t, 3, 100, true)
	stop := run(t, s, ta.emit)
	waitDumps(t, s, 1)
	b = pre.send(t, 2, 100, true)
	want[flowKey{17, pre.orig}] = [4]uint64{2, b, 2, b}

	// Echoed UDP, ended by a conntrack flush of its entry.
	flushed := dialUDP(t, tb.node, netip.AddrPortFrom(nodeV4, 0), netip.AddrPortFrom(peerV4, 7000))
	b = flushed.send(t, 7, 200, true)
	want[flowKey{17, flushed.orig}] = [4]uint64{7, b, 7, b}
	if out, err := tb.node.Run("conntrack", "-D", "-p", "udp", "--orig-port-src", strconv.Itoa(int(flushed.orig.SrcPort))); err != nil {
		// The short UDP timeout ended it first (under load): it still
		// must end exactly once, checked below.
		t.Logf("conntrack -D: %v: %s", err, out)
	}
	// Unanswered UDP, ended by its timeout.
	expired := dialUDP(t, tb.node, netip.AddrPortFrom(nodeV4, 0), netip.AddrPortFrom(peerV4, 7001))
	b = expired.send(t, 5, 300, false)
	want[flowKey{17, expired.orig}] = [4]uint64{5, b, 0, 0}
	// IPv6, alive across dumps.
	v6 := dialUDP(t, tb.node, netip.AddrPortFrom(nodeV6, 0), netip.AddrPortFrom(peerV6, 7000))
	b6 := v6.send(t, 4, 500, true)
	// TCP, alive across dumps.
	var tc net.Conn
	if err := tb.node.Do(func() (err error) {
		tc, err = net.Dial("tcp", net.JoinHostPort(peerV4.String(), "7100"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tcpRound := func(size int) {
		buf := make([]byte, size)
		if _, err := tc.Write(buf); err != nil {
			t.Fatal(err)
		}
		_ = tc.SetReadDeadline(time.Now().Add(5 * time.Second))
		got := 0
		for got < size {
			n, err := tc.Read(buf[got:])
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
	}
	tcpRound(1000)
	waitDumps(t, s, 2)
	b6 += v6.send(t, 6, 500, true)
	tcpRound(5000)
	waitDumps(t, s, 2)
	b6 += v6.send(t, 1, 1200, true)
	tcpRound(30000)
	waitFor(t, "the flushed connection's destroy", func() bool {
		_, f := ta.get(flowKey{17, flushed.orig})
		return f > 0
	})
	waitFor(t, "the UDP timeout to end a connection", func() bool {
		_, f := ta.get(flowKey{17, expired.orig})
		return f > 0
	})
	waitDumps(t, s, 2)

	want[flowKey{17, v6.orig}] = [4]uint64{11, b6, 11, b6}
	l := tc.LocalAddr().(*net.TCPAddr).AddrPort()
	tcpKey := flowKey{6, Tuple{Src: l.Addr(), Dst: peerV4, SrcPort: l.Port(), DstPort: 7100}}
	op, ob := tb.nftCounter(t, "out", "ip daddr 10.97.0.1 tcp dport 7100")
	rp, rb := tb.nftCounter(t, "in", "ip saddr 10.97.0.1 tcp sport 7100")
	want[tcpKey] = [4]uint64{op, ob, rp, rb}
	want[flowKey{17, noAcct.orig}] = [4]uint64{}

	// Switched off behind podflow's back: Stats follows at the next dump.
	tb.node.MustRun(t, "sysctl", "-qw", "net.netfilter.nf_conntrack_acct=0")
	waitFor(t, "accounting to read as off", func() bool { return !s.Stats().AccountingEnabled })
	stop()
	for k, w := range want {
		if got, _ := ta.get(k); got != w {
			t.Errorf("%d %v: counted %v, want %v", k.proto, k.orig, got, w)
		}
	}
	if _, f := ta.get(flowKey{17, flushed.orig}); f != 1 {
		t.Errorf("flushed connection: %d final deltas, want 1", f)
	}
	if _, f := ta.get(flowKey{17, expired.orig}); f != 1 {
		t.Errorf("expired connection: %d final deltas, want 1", f)
	}
	st = s.Stats()
	// noAcct began before the Source subscribed: with
	// nf_conntrack_events=2 (the default) the kernel gave it no event
	// extension, so if its short timeout ended it, it ended unseen.
	if st.LostEvents != 0 || st.Lost > 1 || st.DumpErrors != 0 || st.DecodeErrors != 0 {
		t.Errorf("losses: %+v", st)
	}
	t.Logf("stats: %+v", st)
}

// TestSourceCountsOverrunsAndLost ends many connections at once into a
// tiny event buffer: the overrun is counted, and every connection ends
// exactly once, by its destroy event or as Lost after the dumps.
func TestSourceCountsOverrunsAndLost(t *testing.T) {
	const n = 3000
	ns := netnstest.New(t, "pfct-")
	var s *Source
	if err := ns.Do(func() error {
		var err error
		// The kernel doubles the request and takes its minimum: a few
		// events fit.
		if s, err = New(Config{DumpInterval: 50 * time.Millisecond, ReadBuffer: 4096}); err != nil {
			return err
		}
		return createFlows(n, 600)
	}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	finals := 0
	stop := run(t, s, func(ds []Delta) {
		mu.Lock()
		defer mu.Unlock()
		for i := range ds {
			if ds[i].Final {
				finals++
			}
		}
	})
	waitDumps(t, s, 1)
	if got := s.Stats().Tracked; got != n {
		t.Fatalf("tracked %d connections, want %d: %+v", got, n, s.Stats())
	}
	ns.MustRun(t, "conntrack", "-F")
	waitFor(t, "every connection to end", func() bool { return s.Stats().Tracked == 0 })
	stop()
	st := s.Stats()
	mu.Lock()
	defer mu.Unlock()
	if st.LostEvents == 0 {
		t.Errorf("no overrun counted: %+v", st)
	}
	if uint64(finals) != st.Events || st.Events+st.Lost != n {
		t.Errorf("%d final deltas, stats %+v: want events + lost = %d", finals, st, n)
	}
	t.Logf("%d connections flushed at once: %d destroy events read, %d lost in %d overruns", n, st.Events, st.Lost, st.LostEvents)
}

// createFlows adds n UDP connections through ctnetlink in the current
// namespace, with a timeout in seconds.
func createFlows(n int, timeout uint32) error {
	c, err := ct.Dial(nil)
	if err != nil {
		return err
	}
	defer c.Close()
	src, dst := netip.MustParseAddr("10.96.0.1"), netip.MustParseAddr("10.96.0.2")
	for i := range n {
		f := ct.NewFlow(17, 0, src, dst, uint16(1024+i%60000), uint16(53+i/60000), timeout, 0) //nolint:gosec // small
		if err := c.Create(f); err != nil {
			return fmt.Errorf("create %d: %w", i, err)
		}
	}
	return nil
}
