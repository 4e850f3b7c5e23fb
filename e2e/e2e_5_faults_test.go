package e2e_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podflow/podflow/e2e/harness"
)

// TestKillAndRestart: podflow is killed with SIGKILL during traffic (its
// nftables table stays behind), started again, replaces the table, and
// counts the traffic that follows exactly.
func TestKillAndRestart(t *testing.T) {
	s := sandbox(t)
	ctx := context.Background()
	e := s.Env
	n1 := s.Nodes[0]
	src, dst := s.Pod("shop/frontend"), s.Pod("shop/checkout")
	const port = 7700
	if _, err := e.UDPSink(dst.NS, port, true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.UDPSink(dst.NS, port+1, false); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		// Background traffic on another port while podflow dies.
		for {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if err := harness.SendUDP(ctx, src.NS, netip.AddrPortFrom(dst.IPv4, port+1), 5, 50, false); err != nil {
				done <- err
				return
			}
		}
	}()
	time.Sleep(time.Second)
	if err := n1.Podflow.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = n1.Podflow.Wait()
	out, err := n1.NS.Exec("nft", "list", "tables")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("tables after kill -9: %s", strings.TrimSpace(out))
	if err := e.StartPodflow(n1); err != nil {
		t.Fatal(err)
	}
	if err := e.WaitPodflowReady(ctx, n1, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	out, _ = n1.NS.Exec("nft", "list", "tables")
	if c := strings.Count(out, "table inet podflow"); c != 1 {
		t.Errorf("%d podflow tables after restart, want 1:\n%s", c, out)
	}
	const count, payload = 12, 300
	if err := harness.SendUDP(ctx, src.NS, netip.AddrPortFrom(dst.IPv4, port), count, payload, true); err != nil {
		t.Fatal(err)
	}
	size := harness.UDPBytes(dst.IPv4, payload)
	expectPair(t, e, s.Workloads["shop/frontend"], s.Workloads["shop/checkout"], port, "UDP", count, count*size, count, count*size, 1)
}

// TestAPIServerRestart: the API server goes away mid-run; podflow keeps
// counting with the identities it knows, reports the failure, and learns
// new pods after the API server returns, without a restart.
func TestAPIServerRestart(t *testing.T) {
	s := sandbox(t)
	ctx := context.Background()
	e := s.Env
	src, dst := s.Pod("shop/frontend"), s.Pod("shop/checkout")
	pidBefore := s.Nodes[0].Podflow.PID()
	const port = 7800
	if _, err := e.UDPSink(dst.NS, port, true); err != nil {
		t.Fatal(err)
	}
	errorsBefore, _, _ := e.QueryValue(ctx, `sum(podflow_kubernetes_errors_total)`)
	e.CP.StopAPIServer()
	apiDown := true
	defer func() {
		if apiDown {
			_ = e.CP.StartAPIServer(ctx, e)
		}
	}()
	const count, payload = 9, 120
	if err := harness.SendUDP(ctx, src.NS, netip.AddrPortFrom(dst.IPv4, port), count, payload, true); err != nil {
		t.Fatal(err)
	}
	size := harness.UDPBytes(dst.IPv4, payload)
	expectPair(t, e, s.Workloads["shop/frontend"], s.Workloads["shop/checkout"], port, "UDP", count, count*size, count, count*size, 1)
	// The failure is visible.
	deadline := time.Now().Add(45 * time.Second)
	for {
		v, ok, _ := e.QueryValue(ctx, `sum(podflow_kubernetes_errors_total)`)
		if ok && v > errorsBefore {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("podflow_kubernetes_errors_total did not grow while the API server was down (%v)", v)
			break
		}
		time.Sleep(2 * time.Second)
	}
	if err := e.CP.StartAPIServer(ctx, e); err != nil {
		t.Fatal(err)
	}
	apiDown = false
	// A workload created after the outage is learned by the running podflow.
	w, err := e.Deployment(ctx, "late", "newcomer")
	if err != nil {
		t.Fatal(err)
	}
	p, err := e.AddPod(ctx, w, s.Nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	q := fmt.Sprintf(`sum(podflow_packets_total{source_namespace="late",source_workload="newcomer",source_kind="Deployment",destination_workload="checkout",destination_port="%d"})`, port)
	deadline = time.Now().Add(90 * time.Second)
	for {
		if err := harness.SendUDP(ctx, p.NS, netip.AddrPortFrom(dst.IPv4, port), 1, 10, true); err != nil {
			t.Fatal(err)
		}
		if v, ok, _ := e.QueryValue(ctx, q); ok && v > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a pod created after the API server restart was never attributed: %s", q)
		}
		time.Sleep(2 * time.Second)
	}
	if s.Nodes[0].Podflow.PID() != pidBefore || s.Nodes[0].Podflow.Exited() {
		t.Errorf("podflow restarted during the API server outage")
	}
}

// TestFlood: more packets than a tiny receive buffer holds; the loss is
// counted as loss, the counters never exceed what was sent, and podflow
// keeps answering.
func TestFlood(t *testing.T) {
	s := sandbox(t)
	ctx := context.Background()
	e := s.Env
	n2 := s.Nodes[1]
	// Restart node-2's podflow with a tiny socket buffer.
	n2.Podflow.Stop(10 * time.Second)
	saved := n2.PodflowArgs
	n2.PodflowArgs = append(append([]string{}, saved...), "--nflog.read-buffer=4KiB", "--nflog.queue-threshold=1")
	defer func() {
		n2.Podflow.Stop(10 * time.Second)
		n2.PodflowArgs = saved
		if err := e.StartPodflow(n2); err == nil {
			_ = e.WaitPodflowReady(ctx, n2, 60*time.Second)
		}
	}()
	if err := e.StartPodflow(n2); err != nil {
		t.Fatal(err)
	}
	if err := e.WaitPodflowReady(ctx, n2, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	src, dst := s.Pod("shop/checkout"), s.Pod("shop/db")
	const port = 7900
	if _, err := e.UDPSink(dst.NS, port, false); err != nil {
		t.Fatal(err)
	}
	const sent = 60000
	c, err := src.NS.Dial(ctx, "udp", netip.AddrPortFrom(dst.IPv4, port).String())
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	for i := 0; i < sent; i++ {
		if _, err := c.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	counted := fmt.Sprintf(`sum(podflow_packets_total{source_workload="checkout",destination_workload="db",destination_port="%d",direction="original"})`, port)
	lost := `sum(podflow_capture_packets_lost_total{node="node-2"}) + sum(podflow_capture_overruns_total{node="node-2"}) + (sum(podflow_capture_packets_dropped_total{node="node-2"}) or vector(0))`
	time.Sleep(6 * time.Second)
	var cv, lv float64
	deadline := time.Now().Add(30 * time.Second)
	for {
		cv, _, _ = e.QueryValue(ctx, counted)
		lv, _, _ = e.QueryValue(ctx, lost)
		if cv+lv > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	t.Logf("sent %d, counted %v, loss signals %v", sent, cv, lv)
	if cv > sent {
		t.Errorf("counted %v packets, more than the %d sent", cv, sent)
	}
	if cv < sent && lv == 0 {
		t.Errorf("counted %v of %d packets and no loss was counted", cv, sent)
	}
	if code, _, err := e.HTTPGet(ctx, e.CPNS, "http://"+n2.MetricsAddr()+"/metrics"); err != nil || code != 200 {
		t.Errorf("/metrics after the flood: %d %v", code, err)
	}
}
