package e2e_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/podflow/podflow/e2e/harness"
)

// TestRecurringFlowIsCountedInFull: a pair that talks for a moment, falls
// silent for longer than --metrics.idle-timeout and talks again is a new
// counter each time. Prometheus, with created-timestamp zero ingestion,
// stores a zero at each counter's start, so increase() over the whole
// period equals the packets sent. Without the created timestamps every
// burst but the first starts at its full value and looks like no
// increase at all.
//
// The production case is a CronJob that runs every 15 minutes against the
// default idle timeout of 10 minutes, for a day: 96 bursts, each a new
// counter. What matters is the sequence of events (burst, eviction, next
// burst on a new counter), not the durations, so the test runs the same
// sequence compressed: a 3s idle timeout (5s in connection mode), a burst
// as soon as the last one is gone, and increase() over a range ("[1d]")
// that holds every burst.
func TestRecurringFlowIsCountedInFull(t *testing.T) {
	s := sandbox(t)
	ctx := context.Background()
	e := s.Env
	n1 := s.Nodes[0]
	n1.Podflow.Stop(10 * time.Second)
	saved := n1.PodflowArgs
	// Connection mode reads a live connection's counters every dump
	// interval, and podflow refuses an idle timeout shorter than two of
	// them: the same sequence, a little slower.
	idle := 3 * time.Second
	if e.ConnectionMode() {
		idle = 2*harness.ConntrackDumpInterval + time.Second
	}
	n1.PodflowArgs = append(append([]string{}, saved...), fmt.Sprintf("--metrics.idle-timeout=%v", idle))
	defer func() {
		n1.Podflow.Stop(10 * time.Second)
		n1.PodflowArgs = saved
		if err := e.StartPodflow(n1); err == nil {
			_ = e.WaitPodflowReady(ctx, n1, 60*time.Second)
		}
	}()
	if err := e.StartPodflow(n1); err != nil {
		t.Fatal(err)
	}
	if err := e.WaitPodflowReady(ctx, n1, 60*time.Second); err != nil {
		t.Fatal(err)
	}

	// Both pods on node-1, so node-1's podflow reports the pair.
	src, dst := s.Pod("shop/frontend"), s.Pod("shop/debug")
	const port, bursts, perBurst = 7701, 4, 5
	sink, err := e.UDPSink(dst.NS, port, false)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	sel := pairSel("podflow_packets_total", s.Workloads["shop/frontend"], s.Workloads["shop/debug"], port, "UDP", "original")
	for i := range bursts {
		if err := harness.SendUDP(ctx, src.NS, netip.AddrPortFrom(dst.IPv4, port), perBurst, 64, false); err != nil {
			t.Fatal(err)
		}
		// Each burst is scraped once at least, then evicted: its series
		// goes stale before the next burst starts a new counter.
		if _, err := e.WaitValue(ctx, sel, perBurst, 30*time.Second); err != nil {
			t.Fatalf("burst %d: %v", i, err)
		}
		if _, err := e.WaitValue(ctx, "absent("+sel+")", 1, 30*time.Second); err != nil {
			t.Fatalf("burst %d: the idle series was never evicted: %v", i, err)
		}
	}

	// increase() never extrapolates below the zero at the first created
	// timestamp, so it is at least the packets sent. At the end of the
	// range it extrapolates the pair's average rate over the time since
	// the last sample, capped at 1.1 average sample intervals: at most
	// 1.1/(samples-1) of the total.
	q := fmt.Sprintf("increase(%s[1d])", sel)
	v, ok, err := e.QueryValue(ctx, q)
	if err != nil || !ok {
		t.Fatalf("%s: %v (result: %v)", q, err, ok)
	}
	samples, _, err := e.QueryValue(ctx, fmt.Sprintf("count_over_time(%s[1d])", sel))
	if err != nil || samples < 2 {
		t.Fatalf("count_over_time: %v samples, %v", samples, err)
	}
	const sent = bursts * perBurst
	slack := 1.1 * sent / (samples - 1)
	t.Logf("%d bursts of %d packets: increase() = %v over %v samples (allowed %v..%v)", bursts, perBurst, v, samples, float64(sent), sent+slack)
	if v < sent-0.001 || v > sent+slack+0.001 {
		t.Errorf("%s = %v, want the %d packets sent (up to %v extrapolated)", q, v, sent, slack)
	}
}
