package capture

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/podflow/podflow/exporter/internal/capture/netnstest"
	"github.com/podflow/podflow/exporter/internal/flow"
	"github.com/podflow/podflow/exporter/internal/nft"
)

// topology is two namespaces joined by a veth pair: a client and a node
// that runs podflow's table and reader.
type topology struct {
	client, node *netnstest.NS
	group        uint16
	table        *nft.Table
}

var (
	clientV4 = netip.MustParseAddr("10.99.0.1")
	nodeV4   = netip.MustParseAddr("10.99.0.2")
	clientV6 = netip.MustParseAddr("fd99::1")
	nodeV6   = netip.MustParseAddr("fd99::2")
)

func newTopology(t *testing.T, group uint16) *topology {
	t.Helper()
	client := netnstest.New(t, "pfcap-")
	node := netnstest.New(t, "pfcap-")
	if err := netnstest.Link(client, "c0", []string{"10.99.0.1/24", "fd99::1/64"}, node, "n0", []string{"10.99.0.2/24", "fd99::2/64"}); err != nil {
		t.Fatal(err)
	}
	// Static neighbours: no ARP or neighbour discovery in the counts.
	cmac := client.MustRun(t, "cat", "/sys/class/net/c0/address")
	nmac := node.MustRun(t, "cat", "/sys/class/net/n0/address")
	client.MustRun(t, "ip", "neigh", "replace", "10.99.0.2", "lladdr", trim(nmac), "dev", "c0", "nud", "permanent")
	client.MustRun(t, "ip", "neigh", "replace", "fd99::2", "lladdr", trim(nmac), "dev", "c0", "nud", "permanent")
	node.MustRun(t, "ip", "neigh", "replace", "10.99.0.1", "lladdr", trim(cmac), "dev", "n0", "nud", "permanent")
	node.MustRun(t, "ip", "neigh", "replace", "fd99::1", "lladdr", trim(cmac), "dev", "n0", "nud", "permanent")
	cfg := nft.DefaultConfig()
	cfg.Group = group
	cfg.NetNS = node.FD
	// The table belongs to tbl's netlink socket: it lives as long as tbl.
	tbl := nft.New(cfg, nil)
	if err := tbl.Install(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tbl.Delete() })
	return &topology{client: client, node: node, group: group, table: tbl}
}

func testAddr(a netip.Addr) bool {
	return a == clientV4 || a == nodeV4 || a == clientV6 || a == nodeV6
}

func trim(s string) string { return regexp.MustCompile(`\s+`).ReplaceAllString(s, "") }

// collected is a test Handler that keeps copies of the records between
// the test's two addresses.
type collected struct {
	mu   sync.Mutex
	recs []flow.Record
}

func (c *collected) Handle(rec *flow.Record) {
	src, dst, _, ok := addrs(rec.Payload)
	if !ok || !testAddr(src) || !testAddr(dst) {
		return
	}
	r := *rec
	r.Payload = append([]byte(nil), rec.Payload...)
	c.mu.Lock()
	c.recs = append(c.recs, r)
	c.mu.Unlock()
}

func (c *collected) snapshot() []flow.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]flow.Record(nil), c.recs...)
}

// addrs reads the addresses and protocol of an IPv4 or IPv6 packet
// without extension headers.
func addrs(b []byte) (src, dst netip.Addr, proto uint8, ok bool) {
	if len(b) < 20 {
		return
	}
	switch b[0] >> 4 {
	case 4:
		return netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20])), b[9], true
	case 6:
		if len(b) < 40 {
			return
		}
		return netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40])), b[6], true
	}
	return
}

func startReader(t *testing.T, cfg Config, h Handler) (*Reader, func()) {
	t.Helper()
	r := New(cfg, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var runErr error
	go func() { runErr = r.Run(ctx, h); close(done) }()
	stop := func() {
		cancel()
		select {
		case <-done:
			if runErr != nil {
				t.Errorf("Run: %v", runErr)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return within 10s of cancel")
		}
	}
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "the group to be bound", func() bool { return r.Stats().Bound })
	return r, stop
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// udpEcho serves UDP echo on port in ns until the test ends.
func udpEcho(t *testing.T, ns *netnstest.NS, network, addr string) {
	t.Helper()
	var pc net.PacketConn
	if err := ns.Do(func() (err error) { pc, err = net.ListenPacket(network, addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
}

// udpPingPong sends n datagrams from ns to addr, each after the echo of
// the previous one.
func udpPingPong(t *testing.T, ns *netnstest.NS, network, addr string, n int) {
	t.Helper()
	var c net.Conn
	if err := ns.Do(func() (err error) { c, err = net.Dial(network, addr); return err }); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 64)
	for i := range n {
		if _, err := fmt.Fprintf(c, "ping %d", i); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(buf); err != nil {
			t.Fatalf("echo %d: %v", i, err)
		}
	}
}

type want struct {
	info           uint8
	src, dst       netip.Addr
	proto          uint8
	origSrcPort    uint16 // 0: not checked
	origDstPort    uint16
	origSrc, oDest netip.Addr
}

func check(t *testing.T, got []flow.Record, wants []want, withCT bool) {
	t.Helper()
	if len(got) != len(wants) {
		for _, r := range got {
			s, d, p, _ := addrs(r.Payload)
			t.Logf("got %v -> %v proto %d ct %+v", s, d, p, r.CT)
		}
		t.Fatalf("got %d records, want exactly %d", len(got), len(wants))
	}
	for i, w := range wants {
		r := got[i]
		src, dst, proto, _ := addrs(r.Payload)
		fam := uint8(2)
		if src.Is6() {
			fam = 10
		}
		if src != w.src || dst != w.dst || proto != w.proto || r.Family != fam {
			t.Errorf("record %d: %v -> %v proto %d family %d; want %v -> %v proto %d family %d", i, src, dst, proto, r.Family, w.src, w.dst, w.proto, fam)
		}
		if !withCT {
			// The state and direction come from the log prefix, the
			// original tuple only with the glue.
			if r.CT != (flow.Conntrack{Present: true, Info: w.info, Created: w.info == flow.CTNew}) {
				t.Errorf("record %d: conntrack %+v; want info %d from the log prefix, no tuple", i, r.CT, w.info)
			}
			continue
		}
		// Every datagram and echo here is answered, so the packet that
		// created the entry is the only NEW one.
		if !r.CT.Present || r.CT.Info != w.info || r.CT.Created != (w.info == flow.CTNew) || r.CT.OrigSrc != w.origSrc || r.CT.OrigDst != w.oDest {
			t.Errorf("record %d: conntrack %+v; want info %d, original %v -> %v", i, r.CT, w.info, w.origSrc, w.oDest)
		}
		if w.origDstPort != 0 && (r.CT.OrigDstPort != w.origDstPort || r.CT.OrigSrcPort == 0) {
			t.Errorf("record %d: original ports %d -> %d, want -> %d", i, r.CT.OrigSrcPort, r.CT.OrigDstPort, w.origDstPort)
		}
		if len(r.Payload) > 128 {
			t.Errorf("record %d: payload of %d bytes exceeds the snaplen 128", i, len(r.Payload))
		}
	}
}

func TestReaderRealTraffic(t *testing.T) {
	topo := newTopology(t, 100)
	udpEcho(t, topo.node, "udp4", "10.99.0.2:9000")
	udpEcho(t, topo.node, "udp6", "[fd99::2]:9000")
	var c collected
	cfg := DefaultConfig()
	cfg.NetNS = topo.node.FD
	r, stop := startReader(t, cfg, &c)
	withCT := r.Stats().Conntrack
	if !withCT {
		t.Log("this kernel attaches no conntrack data to NFLOG (CONFIG_NETFILTER_NETLINK_GLUE_CT unset): checking the state and direction the log prefixes carry")
	}

	var wants []want
	// UDP: each datagram in, its echo out.
	for _, v := range []struct {
		network, addr string
		client, node  netip.Addr
	}{{"udp4", "10.99.0.2:9000", clientV4, nodeV4}, {"udp6", "[fd99::2]:9000", clientV6, nodeV6}} {
		udpPingPong(t, topo.client, v.network, v.addr, 3)
		for i := range 3 {
			info := flow.CTEstablished
			if i == 0 {
				info = flow.CTNew
			}
			wants = append(wants,
				want{info, v.client, v.node, 17, 0, 9000, v.client, v.node},
				want{flow.CTEstablishedReply, v.node, v.client, 17, 0, 9000, v.client, v.node})
		}
	}
	// ICMP echo, IPv4 and IPv6.
	topo.client.MustRun(t, "ping", "-c", "2", "-i", "0.2", "-W", "2", "10.99.0.2")
	topo.client.MustRun(t, "ping", "-6", "-c", "2", "-i", "0.2", "-W", "2", "fd99::2")
	for _, v := range []struct {
		client, node netip.Addr
		proto        uint8
	}{{clientV4, nodeV4, 1}, {clientV6, nodeV6, 58}} {
		for i := range 2 {
			info := flow.CTEstablished
			if i == 0 {
				info = flow.CTNew
			}
			wants = append(wants,
				want{info, v.client, v.node, v.proto, 0, 0, v.client, v.node},
				want{flow.CTEstablishedReply, v.node, v.client, v.proto, 0, 0, v.client, v.node})
		}
	}
	waitFor(t, fmt.Sprintf("%d records", len(wants)), func() bool { return len(c.snapshot()) >= len(wants) })
	time.Sleep(300 * time.Millisecond) // longer than the flush timeout: nothing more may come
	check(t, c.snapshot(), wants, withCT)

	// TCP: as many records as the kernel counted packets of the
	// connection; the first is the SYN, new, into the node.
	node := topo.node
	node.MustRun(t, "nft", "add table inet pfcaptest; add counter inet pfcaptest tcpc; add chain inet pfcaptest in { type filter hook input priority 0; }; add chain inet pfcaptest out { type filter hook postrouting priority 0; }; add rule inet pfcaptest in tcp dport 9001 counter name tcpc; add rule inet pfcaptest out tcp sport 9001 counter name tcpc")
	var ln net.Listener
	if err := node.Do(func() (err error) { ln, err = net.Listen("tcp4", "10.99.0.2:9001"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		buf := make([]byte, 16)
		n, _ := conn.Read(buf)
		_, _ = conn.Write(buf[:n])
		conn.Close()
	}()
	var conn net.Conn
	if err := topo.client.Do(func() (err error) { conn, err = net.Dial("tcp4", "10.99.0.2:9001"); return err }); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = conn.Write([]byte("hello"))
	buf := make([]byte, 16)
	_, _ = conn.Read(buf)
	conn.Close()
	time.Sleep(300 * time.Millisecond)
	out := node.MustRun(t, "nft", "list", "counter", "inet", "pfcaptest", "tcpc")
	m := regexp.MustCompile(`packets (\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no packet count in %q", out)
	}
	kernel, _ := strconv.Atoi(m[1])
	before := len(wants)
	waitFor(t, "the TCP records", func() bool { return len(c.snapshot()) >= before+kernel })
	time.Sleep(300 * time.Millisecond)
	all := c.snapshot()
	tcp := all[before:]
	if len(tcp) != kernel || kernel < 6 {
		t.Fatalf("TCP records = %d, the kernel counted %d packets (want >= 6)", len(tcp), kernel)
	}
	if src, _, _, _ := addrs(tcp[0].Payload); src != clientV4 || tcp[0].Payload[33]&0x12 != 0x02 {
		t.Errorf("first TCP record: from %v flags %#x; want the SYN into the node", src, tcp[0].Payload[33])
	}
	for i, rec := range tcp {
		src, _, proto, _ := addrs(rec.Payload)
		if proto != 6 {
			t.Errorf("TCP record %d: proto %d", i, proto)
		}
		// Only the first SYN created the entry. The glue reports a
		// retransmitted SYN as NEW too (conntrack's NEW lasts until the
		// reply), the log prefix as original; the SYN+ACK and everything
		// after it from the node is a reply, the rest from the client
		// original and established.
		flags := rec.Payload[33]
		reply := src == nodeV4
		info := flow.CTEstablished
		switch {
		case reply:
			info = flow.CTEstablishedReply
		case flags&0x12 == 0x02 && (i == 0 || withCT):
			info = flow.CTNew
		}
		if !rec.CT.Present || rec.CT.Info != info || rec.CT.Created != (i == 0) || (withCT && rec.CT.OrigDstPort != 9001) {
			t.Errorf("TCP record %d: from %v flags %#x ct %+v; want info %d", i, src, flags, rec.CT, info)
		}
	}

	stop()
	s := r.Stats()
	if s.Bound || s.Lost != 0 || s.Overruns != 0 || s.Malformed != 0 {
		t.Errorf("Stats() after stop = %+v; want unbound, nothing lost or malformed", s)
	}
	if s.Received < uint64(len(all)) {
		t.Errorf("Received = %d, want >= %d", s.Received, len(all))
	}
}
