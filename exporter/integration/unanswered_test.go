//go:build linux

package integration

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/podflow/podflow/exporter/internal/capture/netnstest"
)

// Ports of the server that never answers.
const silentUDPPort, silentTCPPort = 7201, 7202

// silentServer drops, in the server pod, the UDP and TCP ports above and
// every echo request: what a blocked egress or a scanned address looks
// like from the client. The client's own table counts the SYNs it sent.
const silentServer = `table inet pfint_silent {
 chain in {
  type filter hook input priority 0; policy accept;
  udp dport 7201 drop
  tcp dport 7202 drop
  icmp type echo-request drop
 }
}
`

const clientSYNs = `table inet pfint_syn {
 chain out {
  type filter hook output priority 0; policy accept;
  ip daddr 10.99.2.2 tcp dport 7202 tcp flags & (syn | ack) == syn counter comment "syn"
 }
}
`

// TestUnansweredConnectionsCountOnce checks that a connection that never
// gets an answer counts once, on the packet that created its conntrack
// entry: conntrack keeps such a connection NEW for every packet, so
// counting NEW packets would report 50 connections for 50 datagrams of one
// socket, one per SYN retransmission and one per echo request.
func TestUnansweredConnectionsCountOnce(t *testing.T) {
	eachMode(t, testUnansweredConnectionsCountOnce)
}

func testUnansweredConnectionsCountOnce(t *testing.T, m captureMode) {
	tp := newTopologyV4(t)
	// Resolve the neighbours first, so that nothing waits for them.
	tp.client.MustRun(t, "ping", "-4", "-n", "-q", "-c", "1", serverV4)
	for ns, ruleset := range map[*netnstest.NS]string{tp.server: silentServer, tp.client: clientSYNs} {
		if out, err := nftApply(ns, ruleset); err != nil {
			t.Fatalf("loading the test's table in %s: %v: %s", ns.Name, err, out)
		}
	}
	d := startPodflow(t, tp.node, "127.0.0.1:9810", m.flags()...)
	d.waitReady()

	const datagrams, pings = 50, 5
	c := dialUDP(t, tp, silentUDPPort)
	for range datagrams {
		if _, err := c.Write([]byte("anyone there?")); err != nil {
			t.Fatal(err)
		}
	}
	// The SYN and its retransmissions after 1s and 3s.
	if err := tp.client.Do(func() error {
		conn, err := net.DialTimeout("tcp4", net.JoinHostPort(serverV4, strconv.Itoa(silentTCPPort)), 3500*time.Millisecond)
		if err == nil {
			conn.Close()
			t.Error("the silent TCP port answered")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if out, err := tp.client.Run("ping", "-4", "-n", "-q", "-c", strconv.Itoa(pings), "-i", "0.2", "-W", "1", serverV4); err == nil {
		t.Fatalf("the silent server answered echo requests:\n%s", out)
	}
	syns := readCounters(t, tp.client, "pfint_syn")["syn"].packets
	if syns < 2 {
		t.Fatalf("the client sent %d SYNs; the test needs a retransmission", syns)
	}

	// Conntrack does not account a retransmitted SYN of a connection that
	// was never answered (the kernel accepts it without counting it or
	// refreshing the entry's timeout; measured on Linux 6.18: 1 packet
	// for 4 SYNs), so connection mode counts the first SYN alone.
	wantSYNs := float64(syns)
	if m == connectionMode {
		wantSYNs = 1
	}
	d.expect([]expectation{
		{name: "udp packets", metric: "podflow_packets_total", labels: labels(silentUDPPort, "UDP", "original"), want: datagrams},
		{name: "udp connections", metric: "podflow_connections_total", labels: labels(silentUDPPort, "UDP", ""), want: 1},
		{name: "tcp SYNs", metric: "podflow_packets_total", labels: labels(silentTCPPort, "TCP", "original"), want: wantSYNs},
		{name: "tcp connections", metric: "podflow_connections_total", labels: labels(silentTCPPort, "TCP", ""), want: 1},
		{name: "echo requests", metric: "podflow_packets_total", labels: labels(0, "ICMP", "original"), want: pings},
		{name: "icmp connections", metric: "podflow_connections_total", labels: labels(0, "ICMP", ""), want: 1},
	})
}
