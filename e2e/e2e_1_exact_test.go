package e2e_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/podflow/podflow/e2e/harness"
)

// pairSel selects one podflow counter of a pair.
func pairSel(metric string, src, dst *harness.Workload, port int, proto, direction string) string {
	sel := fmt.Sprintf(`source_namespace=%q,source_workload=%q,source_kind=%q,destination_namespace=%q,destination_workload=%q,destination_kind=%q,destination_port="%d",protocol=%q`,
		src.Namespace, src.Name, src.Kind, dst.Namespace, dst.Name, dst.Kind, port, proto)
	if direction != "" {
		sel += fmt.Sprintf(`,direction=%q`, direction)
	}
	return metric + "{" + sel + "}"
}

// pairQuery sums one podflow counter of a pair over every node.
func pairQuery(metric string, src, dst *harness.Workload, port int, proto, direction string) string {
	return "sum(" + pairSel(metric, src, dst, port, proto, direction) + ")"
}

func expectPair(t *testing.T, env *harness.Env, src, dst *harness.Workload, port int, proto string, origPkts, origBytes, replyPkts, replyBytes, conns int) {
	t.Helper()
	expectPairWithin(t, env, 30*time.Second, 30*time.Second, src, dst, port, proto, origPkts, origBytes, replyPkts, replyBytes, conns)
}

// expectPairWithin is expectPair waiting up to first for the first value,
// and up to rest for each of the others (which arrive with the same
// scrape); it reports whether every value matched.
func expectPairWithin(t *testing.T, env *harness.Env, first, rest time.Duration, src, dst *harness.Workload, port int, proto string, origPkts, origBytes, replyPkts, replyBytes, conns int) bool {
	t.Helper()
	ctx := context.Background()
	ok := true
	timeout := first
	for _, c := range []struct {
		metric, dir string
		want        int
	}{
		{"podflow_packets_total", "original", origPkts},
		{"podflow_bytes_total", "original", origBytes},
		{"podflow_packets_total", "reply", replyPkts},
		{"podflow_bytes_total", "reply", replyBytes},
		{"podflow_connections_total", "", conns},
	} {
		q := pairQuery(c.metric, src, dst, port, proto, c.dir)
		if c.want == 0 {
			continue
		}
		if _, err := env.WaitValue(ctx, q, float64(c.want), timeout); err != nil {
			t.Error(err)
			ok = false
		}
		timeout = rest
	}
	// Counted once cluster-wide: one node reports the pair.
	q := "count(count by (instance) (" + pairSel("podflow_packets_total", src, dst, port, proto, "original") + "))"
	if v, _, err := env.QueryValue(ctx, q); err != nil || v != 1 {
		t.Errorf("%s = %v (%v), want 1 reporting node", q, v, err)
		ok = false
	}
	return ok
}

func TestExactUDP(t *testing.T) {
	s := sandbox(t)
	ctx := context.Background()
	frontend, checkout, db := s.Workloads["shop/frontend"], s.Workloads["shop/checkout"], s.Workloads["shop/db"]
	src := s.Pod("shop/frontend")
	cases := []struct {
		name   string
		dst    *harness.Pod
		w      *harness.Workload
		family int
		port   int
	}{
		{"cross-node-v4", s.Pod("shop/checkout"), checkout, 4, 7001},
		{"cross-node-v6", s.Pod("shop/checkout"), checkout, 6, 7002},
		{"same-node-v4", s.Pod("shop/debug"), s.Workloads["shop/debug"], 4, 7003},
		{"cross-node-v6-statefulset", s.Pod("shop/db"), db, 6, 7004},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sink, err := s.Env.UDPSink(c.dst.NS, c.port, true)
			if err != nil {
				t.Fatal(err)
			}
			defer sink.Close()
			addr := c.dst.IPv4
			if c.family == 6 {
				addr = c.dst.IPv6
			}
			const count, payload = 10, 100
			if err := harness.SendUDP(ctx, src.NS, netip.AddrPortFrom(addr, uint16(c.port)), count, payload, true); err != nil {
				t.Fatal(err)
			}
			size := harness.UDPBytes(addr, payload)
			expectPair(t, s.Env, frontend, c.w, c.port, "UDP", count, count*size, count, count*size, 1)
		})
	}
}

func TestExactICMP(t *testing.T) {
	s := sandbox(t)
	frontend, checkout := s.Workloads["shop/frontend"], s.Workloads["shop/checkout"]
	src, dst := s.Pod("shop/frontend"), s.Pod("shop/checkout")
	const count, payload = 5, 56
	for _, c := range []struct {
		name  string
		addr  netip.Addr
		proto string
	}{{"v4", dst.IPv4, "ICMP"}, {"v6", dst.IPv6, "ICMPv6"}} {
		t.Run(c.name, func(t *testing.T) {
			if err := harness.Ping(src.NS, c.addr, count, payload); err != nil {
				t.Fatal(err)
			}
			size := harness.ICMPBytes(c.addr, payload)
			expectPair(t, s.Env, frontend, checkout, 0, c.proto, count, count*size, count, count*size, 0)
		})
	}
}

// TestExactTCP compares podflow's counts of TCP connections with the
// kernel's own count of the same packets as they arrive at each end
// (nftables counters at the pods' input, after the node cut segmentation
// offload super-packets into wire packets): segmentation and ACKs are the
// kernel's business, equality is ours.
func TestExactTCP(t *testing.T) {
	s := sandbox(t)
	ctx := context.Background()
	frontend := s.Workloads["shop/frontend"]
	src := s.Pod("shop/frontend")
	for _, c := range []struct {
		name   string
		dst    *harness.Pod
		family int
		port   int
	}{
		{"cross-node-v4", s.Pod("shop/checkout"), 4, 7401},
		{"cross-node-v6", s.Pod("shop/checkout"), 6, 7402},
		{"same-node-v6", s.Pod("shop/debug"), 6, 7403},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := s.Env.TCPSink(c.dst.NS, c.port, true); err != nil {
				t.Fatal(err)
			}
			a, b := src.IPv4, c.dst.IPv4
			if c.family == 6 {
				a, b = src.IPv6, c.dst.IPv6
			}
			fc, err := s.Env.CountFlow(src.NS, c.dst.NS, a, b, "tcp")
			if err != nil {
				t.Fatal(err)
			}
			defer fc.Delete()
			const conns = 3
			for i := 0; i < conns; i++ {
				if err := harness.TCPExchange(ctx, src.NS, netip.AddrPortFrom(b, uint16(c.port)), 20000, true); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(500 * time.Millisecond) // the last FIN/ACK
			k, err := fc.Read()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("kernel counted %+v", k)
			expectPair(t, s.Env, frontend, c.dst.Workload, c.port, "TCP", k.OrigPackets, k.OrigBytes, k.ReplyPackets, k.ReplyBytes, conns)
		})
	}
}

// TestDestinations: pod to Service (DNAT to a pod on another node), pod to
// node, pod to an outside network.
func TestDestinations(t *testing.T) {
	s := sandbox(t)
	ctx := context.Background()
	frontend, checkout := s.Workloads["shop/frontend"], s.Workloads["shop/checkout"]
	src := s.Pod("shop/frontend")
	const count, payload = 7, 200

	t.Run("service", func(t *testing.T) {
		svc := s.Services["shop/checkout-udp"]
		if _, err := s.Env.UDPSink(s.Pod("shop/checkout").NS, int(svc.TargetPort), true); err != nil {
			t.Fatal(err)
		}
		for _, fam := range []int{4, 6} {
			vip := svc.ClusterIP(fam)
			if !vip.IsValid() {
				t.Fatalf("service %s has no IPv%d ClusterIP", svc.Name, fam)
			}
			if err := harness.SendUDP(ctx, src.NS, netip.AddrPortFrom(vip, uint16(svc.Port)), count, payload, true); err != nil {
				t.Fatal(err)
			}
		}
		want := count*harness.UDPBytes(netip.MustParseAddr("10.0.0.1"), payload) + count*harness.UDPBytes(netip.MustParseAddr("fd00::1"), payload)
		// The responder is the backend pod; its port is the Service's or
		// the target's, whichever podflow reports: both are summed.
		sel := fmt.Sprintf(`source_workload="frontend",destination_namespace="shop",destination_workload="checkout",destination_kind="Deployment",protocol="UDP",destination_port=~"%d|%d"`, svc.Port, svc.TargetPort)
		for _, c := range []struct {
			q    string
			want int
		}{
			{`sum(podflow_packets_total{` + sel + `,direction="original"})`, 2 * count},
			{`sum(podflow_bytes_total{` + sel + `,direction="original"})`, want},
			{`sum(podflow_bytes_total{` + sel + `,direction="reply"})`, want},
		} {
			if _, err := s.Env.WaitValue(ctx, c.q, float64(c.want), 30*time.Second); err != nil {
				t.Error(err)
			}
		}
		if _, err := s.Env.WaitValue(ctx, `sum(podflow_connections_total{`+sel+`})`, 2, 30*time.Second); err != nil {
			t.Error(err)
		}
		_ = frontend
		_ = checkout
	})

	t.Run("node", func(t *testing.T) {
		n2 := s.Nodes[1]
		if _, err := s.Env.UDPSink(n2.NS, 7201, true); err != nil {
			t.Fatal(err)
		}
		if err := harness.SendUDP(ctx, src.NS, netip.AddrPortFrom(n2.IPv4, 7201), count, payload, true); err != nil {
			t.Fatal(err)
		}
		node := &harness.Workload{Name: n2.Name, Kind: "Node"}
		size := harness.UDPBytes(n2.IPv4, payload)
		expectPair(t, s.Env, frontend, node, 7201, "UDP", count, count*size, count, count*size, 1)
	})

	t.Run("outside", func(t *testing.T) {
		outside := []netip.Addr{harness.OutsideCorpV4, harness.OutsideCorpV6}
		for _, a := range outside {
			if _, err := s.Env.UDPSinkAt(s.Env.Fabric, netip.AddrPortFrom(a, 7301).String(), true); err != nil {
				t.Fatal(err)
			}
		}
		want := 0
		for _, a := range outside {
			if err := harness.SendUDP(ctx, src.NS, netip.AddrPortFrom(a, 7301), count, payload, true); err != nil {
				t.Fatal(err)
			}
			want += count * harness.UDPBytes(a, payload)
		}
		corp := &harness.Workload{Name: "corp", Kind: "Network"}
		n := len(outside) * count
		expectPair(t, s.Env, frontend, corp, 7301, "UDP", n, want, n, want, len(outside))
	})
}
