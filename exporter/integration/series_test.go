//go:build linux

package integration

import (
	"testing"
	"time"
)

// TestIdleSeriesDisappear checks that a pair without traffic for the idle
// timeout leaves /metrics, as the shipped rules expect.
func TestIdleSeriesDisappear(t *testing.T) { eachMode(t, testIdleSeriesDisappear) }

func testIdleSeriesDisappear(t *testing.T, m captureMode) {
	tp := newTopologyV4(t)
	d := startPodflow(t, tp.node, "127.0.0.1:9810", append(m.flags(), "--metrics.idle-timeout=2s")...)
	d.waitReady()
	pingCounted(t, tp, d, 1)
	deadline := time.Now().Add(20 * time.Second)
	for {
		mfs := mustScrape(d)
		_, present := value(mfs, "podflow_packets_total", labels(0, "ICMP", "original"))
		evicted, _ := value(mfs, "podflow_series_evicted_total", map[string]string{"reason": "idle"})
		if !present && evicted >= 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the idle ICMP series is still there (present %v, evicted %v)", present, evicted)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestSeriesCap checks that with a cap of one series the second pair is
// dropped and counted while the first keeps counting.
func TestSeriesCap(t *testing.T) { eachMode(t, testSeriesCap) }

func testSeriesCap(t *testing.T, m captureMode) {
	tp := newTopologyV4(t)
	d := startPodflow(t, tp.node, "127.0.0.1:9810", append(m.flags(), "--metrics.max-series=1")...)
	d.waitReady()
	pingCounted(t, tp, d, 1) // the ICMP pair takes the only slot

	const port = 7200
	serveUDPSink(t, tp, port)
	c := dialUDP(t, tp, port)
	for range 5 {
		if _, err := c.Write([]byte("refused by the cap")); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mfs := mustScrape(d)
		dropped, _ := value(mfs, "podflow_series_dropped_total", nil)
		series, _ := value(mfs, "podflow_series", nil)
		_, udp := value(mfs, "podflow_packets_total", labels(port, "UDP", "original"))
		if dropped == 5 && series == 1 && !udp {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cap of 1: dropped %v (want 5), series %v, UDP series present %v", dropped, series, udp)
		}
		time.Sleep(250 * time.Millisecond)
	}
	pingCounted(t, tp, d, 2) // the first pair keeps counting
}
