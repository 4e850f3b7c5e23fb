//go:build linux

package integration

import (
	"maps"
	"net"
	"strconv"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/podflow/podflow/exporter/internal/capture/netnstest"
)

// twoNodeIdentities places the client on node-a and the server on node-b.
const twoNodeIdentities = `endpoints:
  - addresses: [10.99.1.2]
    namespace: alpha
    workload: client
    kind: Deployment
    node: node-a
  - addresses: [10.99.2.2]
    namespace: beta
    workload: server
    kind: StatefulSet
    node: node-b
  - addresses: [10.99.1.1, 10.98.0.1]
    workload: node-a
    kind: Node
  - addresses: [10.99.2.1, 10.98.0.2]
    workload: node-b
    kind: Node
`

// TestEachConnectionReportedOnce runs one podflow per node on a path
// client → node-a → node-b → server. Both see every packet; only the
// initiator's node counts it, the other counts it as ignored, and the sum
// over both nodes equals what the client's kernel counted.
func TestEachConnectionReportedOnce(t *testing.T) { eachMode(t, testEachConnectionReportedOnce) }

func testEachConnectionReportedOnce(t *testing.T, m captureMode) {
	netnstest.RequireRoot(t)
	nodeA := netnstest.New(t, nsPrefix+"na-")
	nodeB := netnstest.New(t, nsPrefix+"nb-")
	client := netnstest.New(t, nsPrefix+"cli-")
	server := netnstest.New(t, nsPrefix+"srv-")
	for _, ns := range []*netnstest.NS{nodeA, nodeB, client, server} {
		ns.MustRun(t, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	}
	for _, l := range []struct {
		a       *netnstest.NS
		aIf, aA string
		b       *netnstest.NS
		bIf, bA string
	}{
		{nodeA, "pfc0", "10.99.1.1/24", client, "eth0", clientV4 + "/24"},
		{nodeB, "pfs0", "10.99.2.1/24", server, "eth0", serverV4 + "/24"},
		{nodeA, "pfab", "10.98.0.1/24", nodeB, "pfba", "10.98.0.2/24"},
	} {
		if err := netnstest.Link(l.a, l.aIf, []string{l.aA}, l.b, l.bIf, []string{l.bA}); err != nil {
			t.Fatal(err)
		}
		// Wire packets all the way, so that both nodes log each one
		// (see buildTopology).
		setOffload(t, l.a, l.aIf, "tso", "off", "gso", "off", "gro", "off")
		setOffload(t, l.b, l.bIf, "tso", "off", "gso", "off", "gro", "off")
	}
	nodeA.MustRun(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	nodeB.MustRun(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	nodeA.MustRun(t, "ip", "route", "add", "10.99.2.0/24", "via", "10.98.0.2")
	nodeB.MustRun(t, "ip", "route", "add", "10.99.1.0/24", "via", "10.98.0.1")
	client.MustRun(t, "ip", "route", "add", "default", "via", "10.99.1.1")
	server.MustRun(t, "ip", "route", "add", "default", "via", "10.99.2.1")
	client.MustRun(t, "ping", "-n", "-q", "-c", "1", serverV4) // resolve neighbours first
	if out, err := nftApply(client, kernelCounters); err != nil {
		t.Fatalf("loading the test's counters: %v: %s", err, out)
	}
	if out, err := nftApply(server, serverCounters); err != nil {
		t.Fatalf("loading the test's counters: %v: %s", err, out)
	}

	ids := writeFile(t, "identities.yml", twoNodeIdentities)
	a := startPodflow(t, nodeA, "127.0.0.1:9810", append(m.flags(), "--identity.file="+ids, "--kube.node-name=node-a")...)
	b := startPodflow(t, nodeB, "127.0.0.1:9810", append(m.flags(), "--identity.file="+ids, "--kube.node-name=node-b")...)
	a.waitReady()
	b.waitReady()

	serveTCP(t, server, tcp4Port, 4000)
	for range 2 {
		tcpExchange(t, client, net.JoinHostPort(serverV4, strconv.Itoa(tcp4Port)), 10000)
	}
	client.MustRun(t, "ping", "-n", "-q", "-c", "3", "-i", "0.2", serverV4)
	kernel := readKernelCounters(t, client)
	maps.Copy(kernel, readKernelCounters(t, server))

	pair := func(port int, proto, dir string) map[string]string {
		m := labels(port, proto, dir)
		return m
	}
	sum := func(mfs map[string]*dto.MetricFamily, name string) float64 {
		total := 0.0
		for _, m := range mfs[name].GetMetric() {
			total += m.GetCounter().GetValue()
		}
		return total
	}
	var lastA, lastB map[string]*dto.MetricFamily
	deadline := time.Now().Add(20 * time.Second)
	for {
		lastA, lastB = mustScrape(a), mustScrape(b)
		ok := true
		for _, f := range []struct {
			name  string
			port  int
			proto string
		}{{"tcp4", tcp4Port, "TCP"}, {"icmp4", 0, "ICMP"}} {
			for _, dir := range []string{"original", "reply"} {
				k := kernel[f.name+"-"+dir]
				gotA, _ := value(lastA, "podflow_packets_total", pair(f.port, f.proto, dir))
				bytesA, _ := value(lastA, "podflow_bytes_total", pair(f.port, f.proto, dir))
				_, onB := value(lastB, "podflow_packets_total", pair(f.port, f.proto, dir))
				if gotA != float64(k.packets) || bytesA != float64(k.bytes) || onB {
					ok = false
				}
			}
		}
		// node-b saw the same packets and left them all to node-a.
		ignoredB, _ := value(lastB, "podflow_packets_ignored_total", map[string]string{"reason": "other_node_reports"})
		if ok && ignoredB == sum(lastA, "podflow_packets_total") && sum(lastB, "podflow_packets_total") == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not reported exactly once (kernel %+v):\nnode-a:\n%s\nnode-b:\n%s", kernel, familyText(lastA), familyText(lastB))
		}
		time.Sleep(250 * time.Millisecond)
	}

	// The other way round: the server initiates, node-b reports.
	server.MustRun(t, "ping", "-n", "-q", "-c", "2", "-i", "0.2", clientV4)
	reverse := map[string]string{
		"source_namespace": "beta", "source_workload": "server", "source_kind": "StatefulSet",
		"destination_namespace": "alpha", "destination_workload": "client", "destination_kind": "Deployment",
		"destination_port": "0", "protocol": "ICMP", "direction": "original",
	}
	deadline = time.Now().Add(20 * time.Second)
	for {
		onB, _ := value(mustScrape(b), "podflow_packets_total", reverse)
		_, onA := value(mustScrape(a), "podflow_packets_total", reverse)
		if onB == 2 && !onA {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server-initiated ping: node-b counted %v (want 2), node-a has the series: %v", onB, onA)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func familyText(mfs map[string]*dto.MetricFamily) string {
	out := ""
	for _, name := range []string{"podflow_packets_total", "podflow_bytes_total", "podflow_packets_ignored_total"} {
		for _, m := range mfs[name].GetMetric() {
			out += name + " " + m.String() + "\n"
		}
	}
	return out
}
