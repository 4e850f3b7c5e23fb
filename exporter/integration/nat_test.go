//go:build linux

package integration

import (
	"fmt"
	"testing"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podflow/podflow/exporter/internal/capture/netnstest"
)

// TestThroughNAT sends traffic through the translations kube-proxy makes
// (DNAT of ClusterIPs, node ports and load balancer addresses, and
// masquerade of outside clients, hairpins and node processes), written
// here as nftables rules of the same shape, and checks that the sum over
// both nodes' podflows is exactly what was sent, each flow counted on one
// node with the real initiator as its source, and that what one node
// leaves to the other is what the other counts; every flow names the
// Service its client dialled (destination_service). The real kube-proxy runs
// in the e2e sandbox; this is the kernel-level stand-in.
//
//	podA (alpha/client) ─┐                       ┌─ podC (gamma/sink)
//	                     n1 ──────────────────── n2 ── x (outside: "partner")
//	podB (alpha/cache) ──┘
func TestThroughNAT(t *testing.T) { eachMode(t, testThroughNAT) }

func testThroughNAT(t *testing.T, m captureMode) {
	tn := natTopology(t)
	api := twonodeServe(t, &twonodeAPI{nss: []*netnstest.NS{tn.n1, tn.n2}, pods: natPods, services: natServices()})
	kubeconfig := writeFile(t, "kubeconfig", api.kubeconfig())
	networks := writeFile(t, "networks.yaml", "networks:\n  partner: [198.51.100.0/24]\n")

	// Neighbours first, so that no first packet waits and is retransmitted.
	tn.a.MustRun(t, "ping", "-4", "-n", "-q", "-c", "1", twonodeC)
	tn.a.MustRun(t, "ping", "-6", "-n", "-q", "-c", "1", natC6)
	tn.x.MustRun(t, "ping", "-4", "-n", "-q", "-c", "1", "192.168.50.2")
	tn.n2.MustRun(t, "ping", "-4", "-n", "-q", "-c", "1", twonodeB)
	tn.b.MustRun(t, "ping", "-4", "-n", "-q", "-c", "1", "10.244.1.5")
	for _, r := range []struct {
		ns    *netnstest.NS
		rules string
	}{{tn.n1, natRulesN1}, {tn.n2, natRulesN2}} {
		if out, err := nftApply(r.ns, r.rules); err != nil {
			t.Fatalf("loading kube-proxy's stand-in in %s: %v: %s", r.ns.Name, err, out)
		}
	}

	nodes := map[string]*daemon{}
	for name, ns := range map[string]*netnstest.NS{"n1": tn.n1, "n2": tn.n2} {
		nodes[name] = runPodflow(t, ns, "127.0.0.1:9810", "podflow on "+name, append(m.flags(),
			"--web.listen-address=127.0.0.1:9810", "--kube.kubeconfig="+kubeconfig, "--kube.node-name="+name,
			"--networks.file="+networks, "--metrics.labels=destination_service", "--log.level=debug")...)
	}
	for _, d := range nodes {
		d.waitReady()
	}

	for _, s := range []struct {
		ns   *netnstest.NS
		port int
	}{{tn.c, 7001}, {tn.c, 7011}, {tn.b, 7002}, {tn.b, 7003}, {tn.c, 7004}, {tn.b, 7005}, {tn.b, 7006}} {
		serveUDP(t, s.ns, s.port)
	}
	client, cache, sink, node2 := twonodeClient, twonodeCache, twonodeSink, twonodeNode2
	partner := twonodeEnd{"", "partner", "Network"}
	type natFlow struct {
		name      string
		from      *netnstest.NS
		dial      string
		n, size   int
		v6        bool
		src, dst  twonodeEnd
		port      int
		service   string
		reporter  string
		crossesN1 bool // seen by the other node too, after translation
	}
	flows := []natFlow{
		{"pod to ClusterIP, IPv4", tn.a, "10.96.0.10:80", 3, 100, false, client, sink, 7001, "sink", "n1", true},
		{"pod to ClusterIP, IPv6", tn.a, "[fd00:10:96::10]:80", 2, 100, true, client, sink, 7011, "sink", "n1", true},
		{"outside to NodePort, externalTrafficPolicy Cluster, pod on the other node", tn.x, "192.168.50.2:30001", 4, 50, false, partner, cache, 7002, "cache-nodeport", "n2", true},
		{"outside to LoadBalancer, externalTrafficPolicy Cluster, pod on the other node", tn.x, "192.0.2.100:80", 5, 60, false, partner, cache, 7003, "cache-lb", "n2", true},
		{"outside to NodePort, externalTrafficPolicy Local", tn.x, "192.168.50.2:30002", 2, 70, false, partner, sink, 7004, "sink-local", "n2", false},
		{"hairpin: a pod to its own Service", tn.b, "10.96.0.20:80", 3, 80, false, cache, cache, 7005, "cache", "n1", false},
		{"node process (or hostNetwork pod) to ClusterIP, pod on the other node", tn.n2, "10.96.0.30:80", 2, 90, false, node2, cache, 7006, "cache-for-nodes", "n2", true},
	}
	// What each node must leave to the other: the packets of the flows
	// the other reports that cross it.
	leaves := map[string]float64{}
	for _, f := range flows {
		udpExchange(t, f.from, f.dial, f.n, f.size)
		if f.crossesN1 {
			other := map[string]string{"n1": "n2", "n2": "n1"}[f.reporter]
			leaves[other] += float64(2 * f.n)
		}
	}

	scrapes := twonodeUntilEqual(t, nodes, func(scrapes map[string]map[string]*dto.MetricFamily) []string {
		var mismatches []string
		for _, f := range flows {
			hdr := 28
			if f.v6 {
				hdr = 48
			}
			want := count{uint64(f.n), uint64(f.n * (f.size + hdr))}
			for _, dir := range []string{"original", "reply"} {
				match := f.src.labels(f.dst, f.port, "UDP")
				match["direction"], match["destination_service"] = dir, f.service
				mismatches = append(mismatches, twonodeCheck(scrapes, f.name+" "+dir, match, f.reporter, want)...)
			}
			var conns float64
			for _, mfs := range scrapes {
				c, _ := twonodeSum(mfs, "podflow_connections_total", f.src.labels(f.dst, f.port, "UDP"))
				conns += c
			}
			if conns != 1 {
				mismatches = append(mismatches, fmt.Sprintf("%s: %v connections over both nodes, want 1", f.name, conns))
			}
		}
		for n, want := range leaves {
			if got, _ := value(scrapes[n], "podflow_packets_ignored_total", map[string]string{"reason": "other_node_reports"}); got != want {
				mismatches = append(mismatches, fmt.Sprintf("%s left %v packets to the other node, want %v (what the other counted of the flows crossing both)", n, got, want))
			}
		}
		return mismatches
	})
	for n := range nodes {
		// This kernel attaches no conntrack tuple to NFLOG: the Services
		// are named from the first packets logged before DNAT, and in
		// connection mode from conntrack's original tuple.
		method := "log"
		if m == connectionMode {
			method = "conntrack"
		}
		if v, _ := value(scrapes[n], "podflow_service_naming", map[string]string{"method": method}); v != 1 {
			t.Errorf("%s: podflow_service_naming{method=%q} = %v, want 1", n, method, v)
		}
		if v, _ := value(scrapes[n], "podflow_service_naming_misses_total", nil); v != 0 {
			t.Errorf("%s: %v translated packets without a Service", n, v)
		}
		if v, _ := twonodeSum(scrapes[n], "podflow_attribution_misses_total", nil); v != 0 {
			t.Errorf("%s: %v attribution misses", n, v)
		}
		for _, kind := range []string{"Unknown"} {
			if v, _ := twonodeSum(scrapes[n], "podflow_packets_total", map[string]string{"source_kind": kind}); v != 0 {
				t.Errorf("%s: %v packets from an %s source", n, v, kind)
			}
		}
	}
}

const natC6 = "fd00:10:244:2::2"

// natRulesN1 and natRulesN2 translate the way kube-proxy's nftables mode
// does: DNAT in a nat chain at dstnat (prerouting for forwarded traffic,
// output for the node's own), the mark 0x4000 on what must be
// masqueraded (outside clients of externalTrafficPolicy Cluster, a pod
// reaching itself, the node's own processes), and masquerade at srcnat.
const natRulesN1 = `table inet pfkube_nat {
 chain pre {
  type nat hook prerouting priority dstnat; policy accept;
  ip daddr 10.96.0.10 udp dport 80 dnat ip to 10.244.2.2:7001
  ip6 daddr fd00:10:96::10 udp dport 80 dnat ip6 to [fd00:10:244:2::2]:7011
  ip saddr 10.244.1.6 ip daddr 10.96.0.20 udp dport 80 meta mark set meta mark | 0x4000 dnat ip to 10.244.1.6:7005
 }
 chain post {
  type nat hook postrouting priority srcnat; policy accept;
  meta mark & 0x4000 == 0x4000 masquerade
 }
}
`

const natRulesN2 = `table inet pfkube_nat {
 chain pre {
  type nat hook prerouting priority dstnat; policy accept;
  ip daddr 192.168.50.2 udp dport 30001 meta mark set meta mark | 0x4000 dnat ip to 10.244.1.6:7002
  ip daddr 192.0.2.100 udp dport 80 meta mark set meta mark | 0x4000 dnat ip to 10.244.1.6:7003
  ip daddr 192.168.50.2 udp dport 30002 dnat ip to 10.244.2.2:7004
 }
 chain out {
  type nat hook output priority -100; policy accept;
  ip daddr 10.96.0.30 udp dport 80 meta mark set meta mark | 0x4000 dnat ip to 10.244.1.6:7006
 }
 chain post {
  type nat hook postrouting priority srcnat; policy accept;
  meta mark & 0x4000 == 0x4000 masquerade
 }
}
`

type natNet struct {
	n1, n2, a, b, c, x *netnstest.NS
}

// natTopology is twonode's routed pair of nodes, dual-stack towards pods
// A and C, with an outside client x behind n2 (198.51.100.10, whose
// default route is n2: it reaches n2's node address and a load balancer
// address, 192.0.2.100, through it).
func natTopology(t *testing.T) *natNet {
	t.Helper()
	tw := twonodeTopology(t)
	tn := &natNet{n1: tw.n1, n2: tw.n2, a: tw.a, b: tw.b, c: tw.c, x: netnstest.New(t, "pfkube-x-")}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(netnstest.Link(tn.n2, "pfk-x", []string{"198.51.100.1/24"}, tn.x, "eth0", []string{"198.51.100.10/24"}))
	tn.x.MustRun(t, "ip", "route", "add", "default", "via", "198.51.100.1")
	for _, a := range []struct {
		ns   *netnstest.NS
		dev  string
		addr string
	}{
		{tn.n1, "pfk-n2", "fd00:50::1/64"}, {tn.n2, "pfk-n1", "fd00:50::2/64"},
		{tn.n1, "pfk-a", "fd00:10:244:1::1/64"}, {tn.a, "eth0", "fd00:10:244:1::2/64"},
		{tn.n2, "pfk-c", "fd00:10:244:2::1/64"}, {tn.c, "eth0", natC6 + "/64"},
	} {
		a.ns.MustRun(t, "ip", "-6", "addr", "add", a.addr, "dev", a.dev, "nodad")
	}
	tn.a.MustRun(t, "ip", "-6", "route", "add", "default", "via", "fd00:10:244:1::1")
	tn.c.MustRun(t, "ip", "-6", "route", "add", "default", "via", "fd00:10:244:2::1")
	tn.n1.MustRun(t, "ip", "-6", "route", "add", "fd00:10:244:2::/64", "via", "fd00:50::2")
	tn.n2.MustRun(t, "ip", "-6", "route", "add", "fd00:10:244:1::/64", "via", "fd00:50::1")
	// The node's own processes route Service addresses like any other.
	tn.n2.MustRun(t, "ip", "route", "add", "10.96.0.0/12", "via", "192.168.50.1")
	for _, n := range []*netnstest.NS{tn.n1, tn.n2} {
		n.MustRun(t, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
	}
	return tn
}

// natPods are twonode's pods, dual-stack where the topology is, and a
// hostNetwork pod on n2 (named as its node).
func natPods(gen int) []corev1.Pod {
	pods := twonodePods(gen)
	for i := range pods {
		switch pods[i].Status.PodIP {
		case twonodeA:
			pods[i].Status.PodIPs = append(pods[i].Status.PodIPs, corev1.PodIP{IP: "fd00:10:244:1::2"})
		case twonodeC:
			pods[i].Status.PodIPs = append(pods[i].Status.PodIPs, corev1.PodIP{IP: natC6})
		}
	}
	return append(pods, corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "proxy-n2", UID: "uid-proxy-n2", ResourceVersion: "1"},
		Spec:       corev1.PodSpec{NodeName: "n2", HostNetwork: true},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "192.168.50.2", PodIPs: []corev1.PodIP{{IP: "192.168.50.2"}}},
	})
}

// natServices are the Services the rules above implement.
func natServices() []corev1.Service {
	svc := func(ns, name string, typ corev1.ServiceType, ips []string, port, nodePort int32, lb string) corev1.Service {
		s := corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-svc-" + name), ResourceVersion: "1"},
			Spec: corev1.ServiceSpec{Type: typ, ClusterIP: ips[0], ClusterIPs: ips,
				Ports: []corev1.ServicePort{{Protocol: corev1.ProtocolUDP, Port: port, NodePort: nodePort}}},
		}
		if lb != "" {
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: lb}}
		}
		return s
	}
	return []corev1.Service{
		svc("gamma", "sink", corev1.ServiceTypeClusterIP, []string{"10.96.0.10", "fd00:10:96::10"}, 80, 0, ""),
		svc("alpha", "cache-nodeport", corev1.ServiceTypeNodePort, []string{"10.96.0.11"}, 80, 30001, ""),
		svc("alpha", "cache-lb", corev1.ServiceTypeLoadBalancer, []string{"10.96.0.12"}, 80, 31000, "192.0.2.100"),
		svc("gamma", "sink-local", corev1.ServiceTypeNodePort, []string{"10.96.0.13"}, 80, 30002, ""),
		svc("alpha", "cache", corev1.ServiceTypeClusterIP, []string{"10.96.0.20"}, 80, 0, ""),
		svc("alpha", "cache-for-nodes", corev1.ServiceTypeClusterIP, []string{"10.96.0.30"}, 80, 0, ""),
	}
}
