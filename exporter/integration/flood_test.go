//go:build linux

package integration

import (
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// floodCounter counts, in the node, the flood's packets that cross it:
// what podflow's table logged.
const floodCounter = `table inet pfint_flood {
 chain post {
  type filter hook postrouting priority 0; policy accept;
  udp dport 7100 counter comment "flood"
 }
}
`

// TestFloodWithTinyBuffer floods the node with small UDP packets while
// podflow reads with a tiny socket buffer: the loss must be counted
// exactly (every packet that crossed the node is counted, lost or
// dropped, and nothing twice), and the process must stay healthy and
// keep serving /metrics.
func TestFloodWithTinyBuffer(t *testing.T) {
	// IPv4 only: the node sends nothing of its own that could be lost
	// among the flood.
	tp := newTopologyV4(t)
	if out, err := nftApply(tp.node, floodCounter); err != nil {
		t.Fatalf("loading the test's counter: %v: %s", err, out)
	}
	d := startPodflow(t, tp.node, "127.0.0.1:9810", "--nflog.read-buffer=4KiB", "--nflog.queue-threshold=64")
	d.waitReady()

	const port = 7100
	serveUDPSink(t, tp, port)
	c := dialUDP(t, tp, port)
	payload := make([]byte, 18)
	deadline := time.Now().Add(20 * time.Second)
	sent := 0
	for {
		for range 20000 {
			if _, err := c.Write(payload); err == nil {
				sent++
			}
		}
		mfs, _ := d.scrape()
		lost, _ := value(mfs, "podflow_capture_packets_lost_total", nil)
		overruns, _ := value(mfs, "podflow_capture_overruns_total", nil)
		if lost > 0 {
			t.Logf("sent %d packets: podflow counted %v lost in %v overruns", sent, lost, overruns)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sent %d packets but no loss was counted (lost %v, overruns %v)", sent, lost, overruns)
		}
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if code, _, err := d.get(path); err != nil || code != http.StatusOK {
			t.Errorf("%s = %d %v after the flood", path, code, err)
		}
	}
	if d.exited() {
		t.Fatalf("podflow exited during the flood: %v", d.err)
	}
	// Counting goes on, and the echo requests after the flood reveal
	// the sequence gaps of its last lost batches.
	pingCounted(t, tp, d, 2)
	crossed := float64(readCounters(t, tp.node, "pfint_flood")["flood"].packets)
	var counted, lost, dropped float64
	settle := time.Now().Add(20 * time.Second)
	for {
		mfs := mustScrape(d)
		counted, _ = value(mfs, "podflow_packets_total", labels(port, "UDP", "original"))
		lost, _ = value(mfs, "podflow_capture_packets_lost_total", nil)
		queueFull, _ := value(mfs, "podflow_capture_packets_dropped_total", map[string]string{"reason": "queue_full"})
		malformed, _ := value(mfs, "podflow_capture_packets_dropped_total", map[string]string{"reason": "malformed"})
		dropped = queueFull + malformed
		if counted+lost+dropped == crossed || time.Now().After(settle) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("sent %d, crossed the node %v: counted %v, lost %v, dropped %v", sent, crossed, counted, lost, dropped)
	if counted+lost+dropped != crossed {
		t.Errorf("counted %v + lost %v + dropped %v = %v, want exactly the %v packets that crossed the node", counted, lost, dropped, counted+lost+dropped, crossed)
	}
}

func serveUDPSink(t *testing.T, tp *topology, port int) {
	t.Helper()
	var pc net.PacketConn
	if err := tp.server.Do(func() (err error) {
		pc, err = net.ListenPacket("udp", ":"+strconv.Itoa(port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
}

// dialUDP opens a UDP socket in the client pod to the server's IPv4
// address on port; it is closed when the test ends.
func dialUDP(t *testing.T, tp *topology, port int) net.Conn {
	t.Helper()
	var c net.Conn
	if err := tp.client.Do(func() (err error) {
		c, err = net.Dial("udp", net.JoinHostPort(serverV4, strconv.Itoa(port)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}
