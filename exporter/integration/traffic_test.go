//go:build linux

package integration

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podflow/podflow/exporter/internal/capture/netnstest"
)

// Ports of the test's servers; IPv4 and IPv6 use different ones so that
// their series stay apart (the labels do not name the address family).
const (
	tcp4Port, tcp6Port = 7000, 7010
	udp4Port, udp6Port = 7001, 7011
)

// kernelCounters is the client namespace's own table: per-direction
// counters of everything it exchanges with the server, read back to
// compare with podflow's (TCP segment sizes depend on the stack).
const kernelCounters = `table inet pfint_count {
 chain out {
  type filter hook output priority 0; policy accept;
  ip daddr 10.99.2.2 tcp dport 7000 tcp flags & (syn | ack) == syn counter comment "tcp4-syn"
  ip6 daddr fd99:2::2 tcp dport 7010 tcp flags & (syn | ack) == syn counter comment "tcp6-syn"
  ip daddr 10.99.2.2 udp dport 7001 ct state new counter comment "udp4-new"
  ip6 daddr fd99:2::2 udp dport 7011 ct state new counter comment "udp6-new"
  ip daddr 10.99.2.2 meta l4proto icmp ct state new counter comment "icmp4-new"
  ip6 daddr fd99:2::2 meta l4proto ipv6-icmp ct state new counter comment "icmp6-new"
  ip daddr 10.99.2.2 udp dport 7001 counter comment "udp4-original"
  ip6 daddr fd99:2::2 udp dport 7011 counter comment "udp6-original"
  ip daddr 10.99.2.2 meta l4proto icmp counter comment "icmp4-original"
  ip6 daddr fd99:2::2 meta l4proto ipv6-icmp counter comment "icmp6-original"
 }
 chain in {
  type filter hook input priority 0; policy accept;
  ip saddr 10.99.2.2 tcp sport 7000 counter comment "tcp4-reply"
  ip6 saddr fd99:2::2 tcp sport 7010 counter comment "tcp6-reply"
  ip saddr 10.99.2.2 udp sport 7001 counter comment "udp4-reply"
  ip6 saddr fd99:2::2 udp sport 7011 counter comment "udp6-reply"
  ip saddr 10.99.2.2 meta l4proto icmp counter comment "icmp4-reply"
  ip6 saddr fd99:2::2 meta l4proto ipv6-icmp counter comment "icmp6-reply"
 }
}
`

// serverCounters count TCP's original direction where it arrives. The
// client's stack hands its veth TCP super-packets even with offload off
// (the device cuts them up as it sends), so its output hook does not see
// the packets on the wire; the server's input hook does.
const serverCounters = `table inet pfint_count {
 chain in {
  type filter hook input priority 0; policy accept;
  ip saddr 10.99.1.2 tcp dport 7000 counter comment "tcp4-original"
  ip6 saddr fd99:1::2 tcp dport 7010 counter comment "tcp6-original"
 }
}
`

type count struct{ packets, bytes uint64 }

var counterRe = regexp.MustCompile(`counter packets (\d+) bytes (\d+) comment "([^"]+)"`)

func readKernelCounters(t *testing.T, ns *netnstest.NS) map[string]count {
	t.Helper()
	return readCounters(t, ns, "pfint_count")
}

// readCounters reads the named counters of the test's own table
// inet <table> in ns, by their comment.
func readCounters(t *testing.T, ns *netnstest.NS, table string) map[string]count {
	t.Helper()
	out := ns.MustRun(t, "nft", "list", "table", "inet", table)
	m := map[string]count{}
	for _, g := range counterRe.FindAllStringSubmatch(out, -1) {
		p, _ := strconv.ParseUint(g[1], 10, 64)
		b, _ := strconv.ParseUint(g[2], 10, 64)
		m[g[3]] = count{p, b}
	}
	return m
}

// serveTCP accepts connections in ns on port, reads each to the end and
// answers with reply bytes.
func serveTCP(t *testing.T, ns *netnstest.NS, port, reply int) {
	t.Helper()
	var l net.Listener
	if err := ns.Do(func() (err error) {
		l, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(io.Discard, c)
				_, _ = c.Write(bytes.Repeat([]byte{'r'}, reply))
			}()
		}
	}()
}

// tcpExchange sends payload bytes to addr from ns, reads the answer and
// closes.
func tcpExchange(t *testing.T, ns *netnstest.NS, addr string, payload int) int {
	t.Helper()
	var c net.Conn
	if err := ns.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(bytes.Repeat([]byte{'q'}, payload)); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	n, err := io.Copy(io.Discard, c)
	if err != nil {
		t.Fatal(err)
	}
	return int(n)
}

// serveUDP echoes every datagram received in ns on port.
func serveUDP(t *testing.T, ns *netnstest.NS, port int) {
	t.Helper()
	var pc net.PacketConn
	if err := ns.Do(func() (err error) {
		pc, err = net.ListenPacket("udp", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
}

// udpExchange sends n datagrams of size bytes from one socket in ns to
// addr, each after the echo of the previous one.
func udpExchange(t *testing.T, ns *netnstest.NS, addr string, n, size int) {
	t.Helper()
	var c net.Conn
	if err := ns.Do(func() (err error) {
		c, err = net.Dial("udp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 65536)
	for range n {
		if _, err := c.Write(bytes.Repeat([]byte{'u'}, size)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if got, err := c.Read(buf); err != nil || got != size {
			t.Fatalf("udp echo from %s: %d bytes, %v", addr, got, err)
		}
	}
}

var pair = map[string]string{
	"source_namespace": "alpha", "source_workload": "client", "source_kind": "Deployment",
	"destination_namespace": "beta", "destination_workload": "server", "destination_kind": "StatefulSet",
}

func labels(port int, proto, direction string) map[string]string {
	m := map[string]string{"destination_port": strconv.Itoa(port), "protocol": proto}
	if direction != "" {
		m["direction"] = direction
	}
	for k, v := range pair {
		m[k] = v
	}
	return m
}

type expectation struct {
	name   string
	metric string
	labels map[string]string
	want   float64
}

// TestExactCounts sends TCP, UDP and ICMP over IPv4 and IPv6 between two
// pod namespaces through the node namespace, and checks that podflow's
// counters equal what was sent and what the kernel counted.
func TestExactCounts(t *testing.T) { eachMode(t, testExactCounts) }

func testExactCounts(t *testing.T, m captureMode) {
	tp := newTopology(t)
	// Resolve the neighbours first, so that no SYN waits for them and is
	// retransmitted (without conntrack, each SYN counts as a connection).
	tp.client.MustRun(t, "ping", "-4", "-n", "-q", "-c", "1", serverV4)
	tp.client.MustRun(t, "ping", "-6", "-n", "-q", "-c", "1", serverV6)
	if out, err := nftApply(tp.client, kernelCounters); err != nil {
		t.Fatalf("loading the test's counters: %v: %s", err, out)
	}
	if out, err := nftApply(tp.server, serverCounters); err != nil {
		t.Fatalf("loading the test's counters: %v: %s", err, out)
	}
	d := startPodflow(t, tp.node, "127.0.0.1:9810", m.flags()...)
	d.waitReady()

	serveTCP(t, tp.server, tcp4Port, 3000)
	serveTCP(t, tp.server, tcp6Port, 5000)
	serveUDP(t, tp.server, udp4Port)
	serveUDP(t, tp.server, udp6Port)

	const (
		tcpPayload             = 20000
		udpCount, udpSize      = 7, 300
		pingCount, pingPayload = 3, 100
	)
	for _, tc := range []struct {
		addr  string
		reply int
	}{
		{net.JoinHostPort(serverV4, strconv.Itoa(tcp4Port)), 3000},
		{net.JoinHostPort(serverV6, strconv.Itoa(tcp6Port)), 5000},
	} {
		// Two connections each.
		for range 2 {
			if got := tcpExchange(t, tp.client, tc.addr, tcpPayload); got != tc.reply {
				t.Fatalf("tcp %s: reply of %d bytes, want %d", tc.addr, got, tc.reply)
			}
		}
	}
	udpExchange(t, tp.client, net.JoinHostPort(serverV4, strconv.Itoa(udp4Port)), udpCount, udpSize)
	udpExchange(t, tp.client, net.JoinHostPort(serverV6, strconv.Itoa(udp6Port)), udpCount, udpSize)
	tp.client.MustRun(t, "ping", "-4", "-n", "-q", "-c", strconv.Itoa(pingCount), "-i", "0.2", "-s", strconv.Itoa(pingPayload), serverV4)
	tp.client.MustRun(t, "ping", "-6", "-n", "-q", "-c", strconv.Itoa(pingCount), "-i", "0.2", "-s", strconv.Itoa(pingPayload), serverV6)

	kernel := readKernelCounters(t, tp.client)
	maps.Copy(kernel, readKernelCounters(t, tp.server))
	// The kernel's counters of what was sent are themselves checked
	// against the sizes computed from the payloads and headers.
	const ipv4, ipv6, udpHdr, icmpHdr = 20, 40, 8, 8
	computed := map[string]count{
		"udp4-original":  {udpCount, udpCount * (udpSize + udpHdr + ipv4)},
		"udp4-reply":     {udpCount, udpCount * (udpSize + udpHdr + ipv4)},
		"udp6-original":  {udpCount, udpCount * (udpSize + udpHdr + ipv6)},
		"udp6-reply":     {udpCount, udpCount * (udpSize + udpHdr + ipv6)},
		"icmp4-original": {pingCount, pingCount * (pingPayload + icmpHdr + ipv4)},
		"icmp4-reply":    {pingCount, pingCount * (pingPayload + icmpHdr + ipv4)},
		"icmp6-original": {pingCount, pingCount * (pingPayload + icmpHdr + ipv6)},
		"icmp6-reply":    {pingCount, pingCount * (pingPayload + icmpHdr + ipv6)},
	}
	for k, want := range computed {
		if kernel[k] != want {
			t.Errorf("kernel counter %s = %+v, want %+v from the payload sizes", k, kernel[k], want)
		}
	}
	for _, k := range []string{"udp4-new", "udp6-new", "icmp4-new", "icmp6-new"} {
		if c := kernel[k]; c.packets != 1 {
			t.Errorf("kernel counter %s = %+v, want one new connection", k, c)
		}
	}
	for _, k := range []string{"tcp4-syn", "tcp6-syn"} {
		if c := kernel[k]; c.packets < 2 {
			t.Errorf("kernel counter %s = %+v, want at least the two connections' SYNs", k, c)
		}
	}
	for _, k := range []string{"tcp4-original", "tcp6-original"} {
		// SYN, data, FIN, ACKs: at least the payload and five packets
		// per connection.
		if c := kernel[k]; c.bytes < 2*tcpPayload || c.packets < 2*5 {
			t.Errorf("kernel counter %s = %+v: less than two connections' worth", k, c)
		}
	}

	// A connection is counted on the packet that created its conntrack
	// entry: two per TCP address family, whatever the retransmissions, and
	// for UDP and ICMP the one NEW packet the client's own conntrack
	// counted before the first reply.
	t.Logf("NFLOG conntrack attributes: %v", d.conntrack())
	var want []expectation
	for _, f := range []struct {
		name  string
		port  int
		proto string
		conns float64
	}{
		{"tcp4", tcp4Port, "TCP", 2},
		{"tcp6", tcp6Port, "TCP", 2},
		{"udp4", udp4Port, "UDP", float64(kernel["udp4-new"].packets)},
		{"udp6", udp6Port, "UDP", float64(kernel["udp6-new"].packets)},
		{"icmp4", 0, "ICMP", float64(kernel["icmp4-new"].packets)},
		{"icmp6", 0, "ICMPv6", float64(kernel["icmp6-new"].packets)},
	} {
		for _, dir := range []string{"original", "reply"} {
			k := kernel[f.name+"-"+dir]
			want = append(want,
				expectation{name: f.name + " " + dir + " bytes", metric: "podflow_bytes_total", labels: labels(f.port, f.proto, dir), want: float64(k.bytes)},
				expectation{name: f.name + " " + dir + " packets", metric: "podflow_packets_total", labels: labels(f.port, f.proto, dir), want: float64(k.packets)},
			)
		}
		want = append(want, expectation{name: f.name + " connections", metric: "podflow_connections_total", labels: labels(f.port, f.proto, ""), want: f.conns})
	}
	if m == connectionMode {
		// The node namespace had accounting off, and podflow could not
		// write the sysctl (read-only, as in a container): its table
		// switched accounting on.
		want = append(want,
			expectation{name: "connection mode", metric: "podflow_capture_mode", labels: map[string]string{"mode": "connection"}, want: 1},
			expectation{name: "accounting on, by podflow", metric: "podflow_conntrack_accounting_enabled", labels: map[string]string{"by_podflow": "true"}, want: 1},
			expectation{name: "no overruns", metric: "podflow_conntrack_overruns_total"},
			expectation{name: "no connection lost", metric: "podflow_conntrack_connections_lost_total"},
			expectation{name: "no update dropped", metric: "podflow_conntrack_updates_dropped_total", labels: map[string]string{"reason": "queue_full"}},
		)
	}
	want = append(want,
		expectation{name: "no loss", metric: "podflow_capture_packets_lost_total"},
		expectation{name: "no queue drops", metric: "podflow_capture_packets_dropped_total", labels: map[string]string{"reason": "queue_full"}},
		expectation{name: "no series dropped", metric: "podflow_series_dropped_total"},
		expectation{name: "bound", metric: "podflow_capture_bound", want: 1},
	)

	body := d.expect(want)

	t.Run("promtool check metrics", func(t *testing.T) {
		promtool := os.Getenv("PROMTOOL")
		if promtool == "" {
			t.Skip("skipped: PROMTOOL is not set (make test-integration sets it)")
		}
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("promtool check metrics: %v\n%s", err, out)
		}
	})
}

// expect waits until every expectation holds in a scrape, or reports the
// ones that still differ after 20s; it returns the last scrape.
func (d *daemon) expect(want []expectation) string {
	d.t.Helper()
	var body string
	var mismatches []string
	deadline := time.Now().Add(20 * time.Second)
	for {
		scraped, b := d.scrape()
		body = b
		mismatches = mismatches[:0]
		for _, e := range want {
			got, ok := value(scraped, e.metric, e.labels)
			if !ok || got != e.want {
				mismatches = append(mismatches, fmt.Sprintf("%s: %s%v = %v (present %v), want %v", e.name, e.metric, e.labels, got, ok, e.want))
			}
		}
		if len(mismatches) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if len(mismatches) > 0 {
		sort.Strings(mismatches)
		d.t.Errorf("podflow's counters differ:\n%s\nscrape:\n%s", strings.Join(mismatches, "\n"), grepPodflow(body))
	}
	return body
}

func grepPodflow(body string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "podflow_") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
