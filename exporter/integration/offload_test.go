package integration

import (
	"fmt"
	"math"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/podflow/podflow/exporter/internal/capture/netnstest"
)

// wireCounters count one TCP connection's packets in the client's and
// the server's namespaces: as each stack sent them (before any
// segmentation: one per super-packet) and as they arrived off the link
// (segmented by the node on its way out: the wire packets).
const (
	clientWire = `table inet pfint_wire {
 chain out {
  type filter hook output priority 0; policy accept;
  ip daddr %[2]s tcp dport %[3]d counter comment "sent-original"
 }
 chain in {
  type filter hook input priority 0; policy accept;
  ip saddr %[2]s tcp sport %[3]d counter comment "wire-reply"
 }
}
`
	serverWire = `table inet pfint_wire {
 chain in {
  type filter hook input priority 0; policy accept;
  ip saddr %[1]s tcp dport %[3]d counter comment "wire-original"
 }
 chain out {
  type filter hook output priority 0; policy accept;
  ip daddr %[1]s tcp sport %[3]d counter comment "sent-reply"
 }
}
`
)

// TestSegmentationOffload sends a bulk TCP transfer each way through the
// node while the node sees segmentation offload super-packets, and
// measures podflow's packet and byte counts against the packets on the
// wire. The node never offloads on its way out, so the kernel cuts every
// super-packet into MTU-sized segments before the far end counts them.
//
//   - tso: the client and the server send super-packets (TSO/GSO on their
//     veths); the node forwards them as they are and podflow sees each
//     once.
//   - gro: the client and the server send wire-sized packets; the node's
//     veths merge them on receipt (GRO on), and podflow sees the merged
//     packets.
//
// Packet mode must be within 1% of the wire. Connection mode counts what
// conntrack accounts, one packet per super-packet and its L3 length: the
// test only measures and logs its error (docs/metrics.md, "What one count
// means").
func TestSegmentationOffload(t *testing.T) { eachMode(t, testSegmentationOffload) }

func testSegmentationOffload(t *testing.T, m captureMode) {
	const port, sent, reply = 7020, 4 << 20, 1 << 20
	for _, tc := range []struct {
		name        string
		pod, node   []string
		mustOffload bool
	}{
		{"tso", []string{"tso", "on", "gso", "on"}, nil, true},
		{"gro", nil, []string{"gro", "on"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := newTopologyV4(t)
			for _, l := range tp.links() {
				f := tc.pod
				if l.ns == tp.node {
					f = tc.node
				}
				if f != nil {
					setOffload(t, l.ns, l.ifc, f...)
				}
			}
			for ns, rules := range map[*netnstest.NS]string{tp.client: clientWire, tp.server: serverWire} {
				if out, err := nftApply(ns, fmt.Sprintf(rules, clientV4, serverV4, port)); err != nil {
					t.Fatalf("loading the test's counters: %v: %s", err, out)
				}
			}
			d := startPodflow(t, tp.node, "127.0.0.1:9810", m.flags()...)
			d.waitReady()
			serveTCP(t, tp.server, port, reply)
			tp.client.MustRun(t, "ping", "-4", "-n", "-q", "-c", "1", serverV4)
			if got := tcpExchange(t, tp.client, net.JoinHostPort(serverV4, strconv.Itoa(port)), sent); got != reply {
				t.Fatalf("reply of %d bytes, want %d", got, reply)
			}
			time.Sleep(300 * time.Millisecond) // the last FIN/ACK
			if m == connectionMode {
				d.waitDumps(2) // the last counts of the live connection
			}

			cli, srv := readCounters(t, tp.client, "pfint_wire"), readCounters(t, tp.server, "pfint_wire")
			wire := map[string]count{"original": srv["wire-original"], "reply": cli["wire-reply"]}
			stacks := map[string]count{"original": cli["sent-original"], "reply": srv["sent-reply"]}
			got := d.settledCounts(port)
			for _, dir := range []string{"original", "reply"} {
				w, s, g := wire[dir], stacks[dir], got[dir]
				if w.packets == 0 {
					t.Fatalf("%s: nothing on the wire", dir)
				}
				t.Logf("%s %s: wire %d packets %d bytes; podflow %d packets (%+.2f%%) %d bytes (%+.2f%%); as the stack sent them %d packets (%+.2f%%) %d bytes (%+.2f%%)",
					tc.name, dir, w.packets, w.bytes,
					g.packets, relErr(g.packets, w.packets), g.bytes, relErr(g.bytes, w.bytes),
					s.packets, relErr(s.packets, w.packets), s.bytes, relErr(s.bytes, w.bytes))
				if m == packetMode && (math.Abs(relErr(g.packets, w.packets)) > 1 || math.Abs(relErr(g.bytes, w.bytes)) > 1) {
					t.Errorf("%s: podflow is more than 1%% off the wire", dir)
				}
			}
			if m == connectionMode {
				// What NFLOG delivers is one packet per connection here;
				// the stacks' own counts tell whether they offloaded.
				if tc.mustOffload && stacks["original"].packets > wire["original"].packets/2 {
					t.Errorf("the client sent %d packets for %d on the wire: no segmentation offload took place", stacks["original"].packets, wire["original"].packets)
				}
				return
			}
			// podflow read fewer packets than the wire carried: it saw
			// super-packets, so the test measured what it is about.
			mfs, _ := d.scrape()
			received, _ := value(mfs, "podflow_capture_packets_received_total", nil)
			onWire := wire["original"].packets + wire["reply"].packets
			t.Logf("%s: podflow read %v packets from NFLOG for %d on the wire", tc.name, received, onWire)
			if received > float64(onWire)/2 {
				if tc.mustOffload {
					t.Errorf("podflow read %v packets for %d on the wire: no segmentation offload took place", received, onWire)
				} else {
					t.Logf("%s: the veths merged few packets; the figures above hold no super-packets", tc.name)
				}
			}
		})
	}
}

func relErr(got, want uint64) float64 {
	return 100 * (float64(got) - float64(want)) / float64(want)
}

// settledCounts scrapes until podflow's counts of the TCP pair on port
// stop changing and returns them by direction.
func (d *daemon) settledCounts(port int) map[string]count {
	d.t.Helper()
	read := func() map[string]count {
		mfs, _ := d.scrape()
		m := map[string]count{}
		for _, dir := range []string{"original", "reply"} {
			p, _ := value(mfs, "podflow_packets_total", labels(port, "TCP", dir))
			b, _ := value(mfs, "podflow_bytes_total", labels(port, "TCP", dir))
			m[dir] = count{uint64(p), uint64(b)}
		}
		return m
	}
	last := read()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		cur := read()
		if cur["original"] == last["original"] && cur["reply"] == last["reply"] && cur["original"].packets > 0 {
			return cur
		}
		last = cur
	}
	return last
}
