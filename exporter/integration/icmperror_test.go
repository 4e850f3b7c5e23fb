//go:build linux

package integration

import (
	"fmt"
	"net"
	"testing"
	"time"
)

// closedPort has no listener in the server pod: it answers every datagram
// with an ICMP (ICMPv6) port unreachable.
const closedPort = 7301

// icmpErrorCounters count, in the client, the datagrams it sends to the
// closed port and the errors it gets back.
const icmpErrorCounters = `table inet pfint_icmperr {
 chain out {
  type filter hook output priority 0; policy accept;
  ip daddr 10.99.2.2 udp dport 7301 counter comment "udp4"
  ip6 daddr fd99:2::2 udp dport 7301 counter comment "udp6"
 }
 chain in {
  type filter hook input priority 0; policy accept;
  ip saddr 10.99.2.2 icmp type destination-unreachable counter comment "icmp4"
  ip6 saddr fd99:2::2 icmpv6 type destination-unreachable counter comment "icmp6"
 }
}
`

// TestICMPErrorsCount checks that ICMP errors count as packet mode counts
// them, in both modes: conntrack files an error under the connection it
// reports on but does not account it, so connection mode's table logs
// each one.
func TestICMPErrorsCount(t *testing.T) { eachMode(t, testICMPErrorsCount) }

func testICMPErrorsCount(t *testing.T, m captureMode) {
	tp := newTopology(t)
	tp.client.MustRun(t, "ping", "-4", "-n", "-q", "-c", "1", serverV4)
	tp.client.MustRun(t, "ping", "-6", "-n", "-q", "-c", "1", serverV6)
	if out, err := nftApply(tp.client, icmpErrorCounters); err != nil {
		t.Fatalf("loading the test's counters: %v: %s", err, out)
	}
	d := startPodflow(t, tp.node, "127.0.0.1:9810", m.flags()...)
	d.waitReady()

	const datagrams = 3
	for _, network := range []string{"udp4", "udp6"} {
		server := serverV4
		if network == "udp6" {
			server = serverV6
		}
		var pc net.PacketConn
		if err := tp.client.Do(func() (err error) { pc, err = net.ListenPacket(network, ":0"); return err }); err != nil {
			t.Fatal(err)
		}
		to := &net.UDPAddr{IP: net.ParseIP(server), Port: closedPort}
		for range datagrams {
			if _, err := pc.WriteTo([]byte("is anyone listening?"), to); err != nil {
				t.Fatal(err)
			}
			// Within the kernel's ICMP rate limit (a burst of 6).
			time.Sleep(50 * time.Millisecond)
		}
		pc.Close()
	}
	kernel := readCounters(t, tp.client, "pfint_icmperr")
	var want []expectation
	for _, f := range []struct {
		family, icmp string
	}{{"4", "ICMP"}, {"6", "ICMPv6"}} {
		udp, icmp := kernel["udp"+f.family], kernel["icmp"+f.family]
		if udp.packets != datagrams || icmp.packets != datagrams {
			t.Fatalf("the client sent %d datagrams and got %d errors over IPv%s, want %d each", udp.packets, icmp.packets, f.family, datagrams)
		}
		// The errors are the way back of the datagrams' connection: from
		// the server to the client, under protocol ICMP, reply.
		want = append(want,
			expectation{name: fmt.Sprintf("udp%s datagrams", f.family), metric: "podflow_packets_total", labels: labels(closedPort, "UDP", "original"), want: float64(2 * datagrams)},
			expectation{name: fmt.Sprintf("icmp%s error packets", f.family), metric: "podflow_packets_total", labels: labels(0, f.icmp, "reply"), want: float64(icmp.packets)},
			expectation{name: fmt.Sprintf("icmp%s error bytes", f.family), metric: "podflow_bytes_total", labels: labels(0, f.icmp, "reply"), want: float64(icmp.bytes)},
		)
	}
	want = append(want, expectation{name: "udp connections", metric: "podflow_connections_total", labels: labels(closedPort, "UDP", ""), want: 2})
	d.expect(want)
}
