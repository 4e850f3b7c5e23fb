package e2e_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/podflow/podflow/e2e/harness"
)

// TestOwnerChains: every owner chain names the workload and kind the user
// knows (ReplicaSet -> Deployment, Job -> CronJob, StatefulSet, DaemonSet,
// bare Pod), for pods on both nodes, IPv4 and IPv6.
func TestOwnerChains(t *testing.T) {
	s := sandbox(t)
	ctx := context.Background()
	dst := s.Pod("shop/checkout")
	const port = 7500
	if _, err := s.Env.UDPSink(dst.NS, port, true); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"shop/frontend", "shop/db", "shop/debug", "batch/report", "monitoring/node-agent", "monitoring/node-agent@node-2"} {
		p := s.Pod(key)
		for _, a := range []netip.Addr{dst.IPv4, dst.IPv6} {
			if err := harness.SendUDP(ctx, p.NS, netip.AddrPortFrom(a, port), 1, 10, true); err != nil {
				t.Fatalf("%s: %v", key, err)
			}
		}
	}
	for _, c := range []struct {
		ns, workload, kind string
		want               int
	}{
		{"shop", "frontend", "Deployment", 2},
		{"shop", "db", "StatefulSet", 2},
		{"shop", "debug", "Pod", 2},
		{"batch", "report", "CronJob", 2},
		{"monitoring", "node-agent", "DaemonSet", 4},
	} {
		q := fmt.Sprintf(`sum(podflow_packets_total{source_namespace=%q,source_workload=%q,source_kind=%q,destination_namespace="shop",destination_workload="checkout",destination_kind="Deployment",destination_port="%d",protocol="UDP",direction="original"})`,
			c.ns, c.workload, c.kind, port)
		if _, err := s.Env.WaitValue(ctx, q, float64(c.want), 30*time.Second); err != nil {
			t.Error(err)
		}
	}
	// No pod name ever becomes a workload label.
	q := fmt.Sprintf(`count(podflow_packets_total{destination_port="%d",source_workload=~".*-5d8f7c9b6.*|report-29170443"})`, port)
	if v, ok, err := s.Env.QueryValue(ctx, q); err != nil || ok {
		t.Errorf("%s = %v %v %v: a ReplicaSet or Job name leaked into a workload label", q, v, ok, err)
	}
}

// TestIPReuse: a pod is deleted and its addresses are handed to a pod of
// another workload; traffic from the address is the new workload's, and the
// old pod's series disappear after the deletion grace period.
func TestIPReuse(t *testing.T) {
	s := sandbox(t)
	ctx := context.Background()
	e := s.Env
	n1 := s.Nodes[0]
	oldW, err := e.Deployment(ctx, "reuse", "old-app")
	if err != nil {
		t.Fatal(err)
	}
	newW, err := e.StatefulSet(ctx, "reuse", "new-app")
	if err != nil {
		t.Fatal(err)
	}
	old, err := e.AddPod(ctx, oldW, n1)
	if err != nil {
		t.Fatal(err)
	}
	dst := s.Pod("shop/checkout")
	const port = 7600
	if _, err := e.UDPSink(dst.NS, port, true); err != nil {
		t.Fatal(err)
	}
	sel := func(w *harness.Workload) string {
		return fmt.Sprintf(`podflow_packets_total{source_namespace="reuse",source_workload=%q,source_kind=%q,destination_workload="checkout",destination_port="%d",direction="original"}`, w.Name, w.Kind, port)
	}
	// Attribution follows the informer: give it a moment to learn the pod.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := harness.SendUDP(ctx, old.NS, netip.AddrPortFrom(dst.IPv4, port), 1, 10, true); err != nil {
			t.Fatal(err)
		}
		if v, ok, _ := e.QueryValue(ctx, "sum("+sel(oldW)+")"); ok && v > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("traffic of reuse/old-app never attributed: %s", sel(oldW))
		}
		time.Sleep(2 * time.Second)
	}
	if err := e.DeletePod(ctx, old); err != nil {
		t.Fatal(err)
	}
	reused, err := e.ReusePod(ctx, old, newW)
	if err != nil {
		t.Fatal(err)
	}
	if reused.IPv4 != old.IPv4 {
		t.Fatalf("reused %v, want %v", reused.IPv4, old.IPv4)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		if err := harness.SendUDP(ctx, reused.NS, netip.AddrPortFrom(dst.IPv4, port), 1, 10, true); err != nil {
			t.Fatal(err)
		}
		if v, ok, _ := e.QueryValue(ctx, "sum("+sel(newW)+")"); ok && v > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("traffic of the reused address never attributed to reuse/new-app")
		}
		time.Sleep(2 * time.Second)
	}
	// The old pod's series leave podflow's /metrics after the grace period
	// (5s here), so Prometheus stops returning them.
	if _, err := e.WaitValue(ctx, "count("+sel(oldW)+") or vector(0)", 0, 60*time.Second); err != nil {
		t.Errorf("series of the deleted pod still exported: %v", err)
	}
	if v, ok, _ := e.QueryValue(ctx, "sum("+sel(newW)+")"); !ok || v == 0 {
		t.Errorf("series of the new pod gone as well")
	}
}

// TestHostNetworkPod: a hostNetwork pod shares its node's addresses and
// its traffic is the node's (kind Node, workload the node name), over
// IPv4 and IPv6, to a pod on another node.
func TestHostNetworkPod(t *testing.T) {
	s := sandbox(t)
	ctx := context.Background()
	e := s.Env
	n1 := s.Nodes[0]
	w, err := e.DaemonSet(ctx, "monitoring", "host-agent")
	if err != nil {
		t.Fatal(err)
	}
	p, err := e.AddHostNetworkPod(ctx, w, n1)
	if err != nil {
		t.Fatal(err)
	}
	dst := s.Pod("shop/checkout")
	const port, count, payload = 7510, 4, 90
	if _, err := e.UDPSink(dst.NS, port, true); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the informer learns the pod
	// Over the overlay fabric the datagrams leave from the VXLAN device's
	// addresses (the first of each of the node's pod CIDRs), over the
	// routed one from the node's own: both name the node.
	size := 0
	for _, a := range []netip.Addr{dst.IPv4, dst.IPv6} {
		if err := harness.SendUDP(ctx, p.NS, netip.AddrPortFrom(a, port), count, payload, true); err != nil {
			t.Fatal(err)
		}
		size += harness.UDPBytes(a, payload)
	}
	node := &harness.Workload{Name: n1.Name, Kind: "Node"}
	expectPair(t, e, node, s.Workloads["shop/checkout"], port, "UDP", 2*count, count*size, 2*count, count*size, 2)
	q := fmt.Sprintf(`count(podflow_packets_total{source_workload="host-agent",destination_port="%d"})`, port)
	if v, ok, err := e.QueryValue(ctx, q); err != nil || ok {
		t.Errorf("%s = %v %v %v: a hostNetwork pod was named instead of its node", q, v, ok, err)
	}
}
