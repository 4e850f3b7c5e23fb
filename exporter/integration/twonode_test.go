//go:build linux

package integration

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podflow/podflow/exporter/internal/capture/netnstest"
)

// TestTwoNodes runs two podflow binaries, each in its own node
// namespace, with their Kubernetes identities from an API server both
// reach over HTTP (the test serves the objects; podflow's informers list
// and watch them as in a cluster). Pods sit behind each node, the nodes
// route to each other, and real traffic flows across nodes, within a
// node and from a node. Each connection must be counted by exactly one
// instance, and the sum of both instances' counters must equal the
// traffic sent.
//
//	podA (alpha/client, Deployment) ─┐             ┌─ podC (gamma/sink, StatefulSet)
//	                                 n1 ─────────── n2
//	podB (alpha/cache, StatefulSet) ─┘
func TestTwoNodes(t *testing.T) { eachMode(t, testTwoNodes) }

func testTwoNodes(t *testing.T, m captureMode) {
	tn := twonodeTopology(t)
	api := twonodeServeAPI(t, tn.n1, tn.n2)
	kubeconfig := writeFile(t, "kubeconfig", api.kubeconfig())

	// Neighbours first, so that no first packet waits and is retransmitted.
	tn.a.MustRun(t, "ping", "-4", "-n", "-q", "-c", "1", twonodeC)
	tn.a.MustRun(t, "ping", "-4", "-n", "-q", "-c", "1", twonodeB)
	tn.c.MustRun(t, "ping", "-4", "-n", "-q", "-c", "1", twonodeB)
	tn.n2.MustRun(t, "ping", "-4", "-n", "-q", "-c", "1", twonodeA)
	if out, err := nftApply(tn.a, twonodeKernelCounters); err != nil {
		t.Fatalf("loading the test's counters: %v: %s", err, out)
	}
	if out, err := nftApply(tn.c, twonodeServerCounters); err != nil {
		t.Fatalf("loading the test's counters: %v: %s", err, out)
	}

	if m == connectionMode {
		tn.wirePacketsOnly(t)
	}
	d1 := twonodeStart(t, tn.n1, "n1", kubeconfig, m)
	d2 := twonodeStart(t, tn.n2, "n2", kubeconfig, m)
	d1.waitReady()
	d2.waitReady()
	nodes := map[string]*daemon{"n1": d1, "n2": d2}

	serveTCP(t, tn.c, 7000, 5000)
	serveUDP(t, tn.c, 7001)
	serveUDP(t, tn.b, 7002)
	serveUDP(t, tn.b, 7003)

	const (
		tcpPayload             = 60000
		pingCount, pingPayload = 3, 100
		ipv4, udpHdr, icmpHdr  = 20, 8, 8
	)
	// Across nodes, from n1's pod.
	tn.a.MustRun(t, "ping", "-4", "-n", "-q", "-c", strconv.Itoa(pingCount), "-i", "0.2", "-s", strconv.Itoa(pingPayload), twonodeC)
	udpExchange(t, tn.a, net.JoinHostPort(twonodeC, "7001"), 5, 100)
	if got := tcpExchange(t, tn.a, net.JoinHostPort(twonodeC, "7000"), tcpPayload); got != 5000 {
		t.Fatalf("tcp reply of %d bytes, want 5000", got)
	}
	// Within n1.
	udpExchange(t, tn.a, net.JoinHostPort(twonodeB, "7002"), 3, 50)
	// Across nodes, from n2's pod.
	udpExchange(t, tn.c, net.JoinHostPort(twonodeB, "7003"), 4, 200)
	// From node n2 itself to a pod on n1.
	tn.n2.MustRun(t, "ping", "-4", "-n", "-q", "-c", "2", "-i", "0.2", "-s", "56", twonodeA)

	kernel := readTwonodeCounters(t, tn.a)
	maps.Copy(kernel, readTwonodeCounters(t, tn.c))
	client, cache, sink, node2 := twonodeClient, twonodeCache, twonodeSink, twonodeNode2
	type flowWant struct {
		name     string
		src, dst twonodeEnd
		port     int
		proto    string
		reporter string
		// packets and bytes per direction
		orig, reply count
	}
	flows := []flowWant{
		{"ICMP pod to pod across nodes", client, sink, 0, "ICMP", "n1",
			count{pingCount, pingCount * (pingPayload + icmpHdr + ipv4)}, count{pingCount, pingCount * (pingPayload + icmpHdr + ipv4)}},
		{"UDP pod to pod across nodes", client, sink, 7001, "UDP", "n1",
			count{5, 5 * (100 + udpHdr + ipv4)}, count{5, 5 * (100 + udpHdr + ipv4)}},
		{"TCP pod to pod across nodes", client, sink, 7000, "TCP", "n1", kernel["tcp-original"], kernel["tcp-reply"]},
		{"UDP pod to pod within a node", client, cache, 7002, "UDP", "n1",
			count{3, 3 * (50 + udpHdr + ipv4)}, count{3, 3 * (50 + udpHdr + ipv4)}},
		{"UDP pod to pod across nodes, reverse", sink, cache, 7003, "UDP", "n2",
			count{4, 4 * (200 + udpHdr + ipv4)}, count{4, 4 * (200 + udpHdr + ipv4)}},
		{"ICMP node to pod", node2, client, 0, "ICMP", "n2",
			count{2, 2 * (56 + icmpHdr + ipv4)}, count{2, 2 * (56 + icmpHdr + ipv4)}},
	}
	if c := kernel["tcp-original"]; c.bytes < tcpPayload {
		t.Fatalf("kernel counted %+v from the TCP client, less than its payload", c)
	}

	scrapes := twonodeUntilEqual(t, nodes, func(scrapes map[string]map[string]*dto.MetricFamily) []string {
		var mismatches []string
		for _, f := range flows {
			for _, dir := range []struct {
				name string
				want count
			}{{"original", f.orig}, {"reply", f.reply}} {
				match := f.src.labels(f.dst, f.port, f.proto)
				match["direction"] = dir.name
				mismatches = append(mismatches, twonodeCheck(scrapes, f.name+" "+dir.name, match, f.reporter, dir.want)...)
			}
		}
		return mismatches
	})

	// One TCP connection, counted once in the cluster.
	var conns float64
	for n := range nodes {
		c, _ := twonodeSum(scrapes[n], "podflow_connections_total", client.labels(sink, 7000, "TCP"))
		conns += c
	}
	if syn := kernel["tcp-syn"].packets; conns != float64(syn) {
		t.Errorf("TCP connections over both nodes = %v, want %d (SYNs sent)", conns, syn)
	}
	// Each instance saw the other's connections and left them alone.
	for n, d := range nodes {
		mfs, _ := d.scrape()
		if v, _ := value(mfs, "podflow_packets_ignored_total", map[string]string{"reason": "other_node_reports"}); v == 0 {
			t.Errorf("%s ignored no packet of the other node's connections", n)
		} else {
			p, series := twonodeSum(mfs, "podflow_packets_total", nil)
			t.Logf("%s: counted %v packets in %d series, left %v to the other node", n, p, series, v)
		}
		if !d.logHas("Kubernetes caches synced", time.Second) {
			t.Errorf("%s did not log its informers' sync", n)
		}
		for _, r := range []string{"pods", "services", "nodes", "replicasets", "jobs"} {
			if v, ok := value(mfs, "podflow_kubernetes_synced", map[string]string{"resource": r}); !ok || v != 1 {
				t.Errorf("%s: podflow_kubernetes_synced{resource=%q} = %v (present %v)", n, r, v, ok)
			}
		}
		if v, _ := twonodeSum(mfs, "podflow_attribution_misses_total", nil); v != 0 {
			t.Errorf("%s: %v attribution misses", n, v)
		}
	}
	if api.lists(1) == 0 {
		t.Error("podflow never listed from the API server")
	}
}

// TestTwoNodesAPIOutage cuts both instances off the API server: they go
// on counting with the identities they had, count and log the failure,
// stay ready, and when the API server comes back with the cluster
// changed they follow it without a restart.
func TestTwoNodesAPIOutage(t *testing.T) { eachMode(t, testTwoNodesAPIOutage) }

func testTwoNodesAPIOutage(t *testing.T, m captureMode) {
	tn := twonodeTopology(t)
	api := twonodeServeAPI(t, tn.n1, tn.n2)
	kubeconfig := writeFile(t, "kubeconfig", api.kubeconfig())
	tn.a.MustRun(t, "ping", "-4", "-n", "-q", "-c", "1", twonodeC)
	d1 := twonodeStart(t, tn.n1, "n1", kubeconfig, m)
	d2 := twonodeStart(t, tn.n2, "n2", kubeconfig, m)
	d1.waitReady()
	d2.waitReady()
	serveUDP(t, tn.c, 7001)
	client := twonodeEnd{"alpha", "client", "Deployment"}
	oldSink := client.labels(twonodeEnd{"gamma", "sink", "StatefulSet"}, 7001, "UDP")
	newSink := client.labels(twonodeEnd{"gamma", "sink-v2", "Deployment"}, 7001, "UDP")
	for _, m := range []map[string]string{oldSink, newSink} {
		m["direction"] = "original"
	}
	podErrors := map[string]string{"resource": "pods"}

	api.stop()
	for _, d := range []*daemon{d1, d2} {
		twonodeEventually(t, "pod list/watch errors counted", func() bool {
			v, _ := value(mustScrape(d), "podflow_kubernetes_errors_total", podErrors)
			return v > 0
		})
		if !d.logHas("Kubernetes list/watch failed", 5*time.Second) {
			t.Error("the outage was not logged")
		}
		if code, _, err := d.get("/readyz"); err != nil || code != http.StatusOK {
			t.Errorf("/readyz during the outage = %d %v, want 200: the last known state still answers", code, err)
		}
	}
	// Counting goes on with the last known identities.
	udpExchange(t, tn.a, net.JoinHostPort(twonodeC, "7001"), 5, 100)
	twonodeEventually(t, "traffic counted during the outage", func() bool {
		v, _ := twonodeSum(mustScrape(d1), "podflow_packets_total", oldSink)
		return v == 5
	})

	// The API server comes back; meanwhile the sink pod was replaced by a
	// Deployment's pod on the same address.
	api.setGeneration(2)
	api.start()
	twonodeEventually(t, "both instances relisted", func() bool { return api.lists(2) >= 2 })
	// The new identity applies as soon as the relist is processed: send
	// one datagram at a time until it is counted under the new name.
	sent := 0
	twonodeEventually(t, "traffic counted under the new identity", func() bool {
		udpExchange(t, tn.a, net.JoinHostPort(twonodeC, "7001"), 1, 100)
		sent++
		v, _ := twonodeSum(mustScrape(d1), "podflow_packets_total", newSink)
		return v > 0
	})
	// While the relist is processed, a datagram may meet the new pod
	// before its ReplicaSet (kind ReplicaSet) or between the old pod's
	// removal and the new pod's arrival (Unknown): it is still counted,
	// once, under some name. Sum every series of the port on both nodes.
	allToSink := map[string]string{"destination_port": "7001", "protocol": "UDP", "direction": "original"}
	twonodeEventually(t, "every datagram counted once", func() bool {
		v1, _ := twonodeSum(mustScrape(d1), "podflow_packets_total", allToSink)
		v2, _ := twonodeSum(mustScrape(d2), "podflow_packets_total", allToSink)
		return v1+v2 == float64(5+sent)
	})
	for _, d := range []*daemon{d1, d2} {
		if d.exited() {
			t.Fatalf("podflow exited: %v", d.err)
		}
		o, _ := twonodeSum(mustScrape(d2), "podflow_packets_total", oldSink)
		n, _ := twonodeSum(mustScrape(d2), "podflow_packets_total", newSink)
		if o+n != 0 {
			t.Errorf("n2 counted %v packets of n1's connection", o+n)
		}
	}
	t.Logf("%d datagrams until the new identity applied after the API server came back", sent)
}

// twonodeUntilEqual scrapes every node until check finds no mismatch,
// for at most 20 seconds, and fails with the mismatches and every node's
// podflow series if they remain. It returns the last scrapes.
func twonodeUntilEqual(t *testing.T, nodes map[string]*daemon, check func(map[string]map[string]*dto.MetricFamily) []string) map[string]map[string]*dto.MetricFamily {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		scrapes := map[string]map[string]*dto.MetricFamily{}
		for n, d := range nodes {
			scrapes[n], _ = d.scrape()
		}
		mismatches := check(scrapes)
		if len(mismatches) == 0 {
			return scrapes
		}
		if time.Now().After(deadline) {
			sort.Strings(mismatches)
			var b strings.Builder
			for _, n := range slices.Sorted(maps.Keys(nodes)) {
				_, body := nodes[n].scrape()
				fmt.Fprintf(&b, "\n%s:\n%s", n, grepPodflow(body))
			}
			t.Fatalf("counters differ:\n%s%s", strings.Join(mismatches, "\n"), b.String())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// twonodeCheck compares the sum over every node of one pair's packets and
// bytes (the series matching match) with want, and says where the pair
// was counted other than on reporter, or in more than one series.
func twonodeCheck(scrapes map[string]map[string]*dto.MetricFamily, what string, match map[string]string, reporter string, want count) []string {
	var mismatches []string
	var sumP, sumB float64
	for n, mfs := range scrapes {
		p, np := twonodeSum(mfs, "podflow_packets_total", match)
		b, _ := twonodeSum(mfs, "podflow_bytes_total", match)
		sumP, sumB = sumP+p, sumB+b
		if n != reporter && np > 0 {
			mismatches = append(mismatches, fmt.Sprintf("%s: also counted on %s (%v packets)", what, n, p))
		}
		if np > 1 {
			mismatches = append(mismatches, fmt.Sprintf("%s: %d series on %s", what, np, n))
		}
	}
	if sumP != float64(want.packets) || sumB != float64(want.bytes) {
		mismatches = append(mismatches, fmt.Sprintf("%s: the nodes sum to %v packets %v bytes, want %d and %d", what, sumP, sumB, want.packets, want.bytes))
	}
	return mismatches
}

// twonodeEventually polls cond until it holds, for at most a minute (the
// informers' retry backoff grows to several seconds).
func twonodeEventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

const (
	twonodeA = "10.244.1.2" // alpha/client-5f7c9-x, on n1
	twonodeB = "10.244.1.6" // alpha/cache-0, on n1
	twonodeC = "10.244.2.2" // gamma/sink-0, on n2
)

// twonodeKernelCounters counts what pod A exchanges with pod C over TCP,
// as it arrives: pod A's stack hands its link super-packets, which the
// nodes cut into wire packets on their way to a pod.
const (
	twonodeKernelCounters = `table inet pfkube_count {
 chain out {
  type filter hook output priority 0; policy accept;
  ip daddr 10.244.2.2 tcp dport 7000 tcp flags & (syn | ack) == syn counter comment "tcp-syn"
 }
 chain in {
  type filter hook input priority 0; policy accept;
  ip saddr 10.244.2.2 tcp sport 7000 counter comment "tcp-reply"
 }
}
`
	twonodeServerCounters = `table inet pfkube_count {
 chain in {
  type filter hook input priority 0; policy accept;
  ip saddr 10.244.1.2 tcp dport 7000 counter comment "tcp-original"
 }
}
`
)

func readTwonodeCounters(t *testing.T, ns *netnstest.NS) map[string]count {
	t.Helper()
	return readCounters(t, ns, "pfkube_count")
}

type twonodeEnd struct{ namespace, workload, kind string }

// The workloads of twonodePods and the second node.
var (
	twonodeClient = twonodeEnd{"alpha", "client", "Deployment"}
	twonodeCache  = twonodeEnd{"alpha", "cache", "StatefulSet"}
	twonodeSink   = twonodeEnd{"gamma", "sink", "StatefulSet"}
	twonodeNode2  = twonodeEnd{"", "n2", "Node"}
)

func (src twonodeEnd) labels(dst twonodeEnd, port int, proto string) map[string]string {
	return map[string]string{
		"source_namespace": src.namespace, "source_workload": src.workload, "source_kind": src.kind,
		"destination_namespace": dst.namespace, "destination_workload": dst.workload, "destination_kind": dst.kind,
		"destination_port": strconv.Itoa(port), "protocol": proto,
	}
}

// twonodeSum adds every series of name whose labels include match, and
// says how many there were. An absent label matches "".
func twonodeSum(mfs map[string]*dto.MetricFamily, name string, match map[string]string) (float64, int) {
	sum, n := 0.0, 0
next:
	for _, m := range mfs[name].GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range match {
			if have[k] != v {
				continue next
			}
		}
		n++
		sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return sum, n
}

type twonodeNet struct {
	n1, n2, a, b, c *netnstest.NS
}

// twonodeTopology builds two routed node namespaces with pod namespaces
// behind them. Each pod has its own /30 to its node; the pod CIDRs are
// 10.244.1.0/24 on n1 and 10.244.2.0/24 on n2, the nodes 192.168.50.1
// and .2.
func twonodeTopology(t *testing.T) *twonodeNet {
	t.Helper()
	netnstest.RequireRoot(t)
	if _, err := os.Stat("/usr/sbin/nft"); err != nil {
		if _, err := os.Stat("/sbin/nft"); err != nil {
			t.Skip("skipped: nft(8) is not installed")
		}
	}
	tn := &twonodeNet{
		n1: netnstest.New(t, "pfkube-n1-"),
		n2: netnstest.New(t, "pfkube-n2-"),
		a:  netnstest.New(t, "pfkube-a-"),
		b:  netnstest.New(t, "pfkube-b-"),
		c:  netnstest.New(t, "pfkube-c-"),
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(netnstest.Link(tn.n1, "pfk-n2", []string{"192.168.50.1/24"}, tn.n2, "pfk-n1", []string{"192.168.50.2/24"}))
	must(netnstest.Link(tn.n1, "pfk-a", []string{"10.244.1.1/30"}, tn.a, "eth0", []string{twonodeA + "/30"}))
	must(netnstest.Link(tn.n1, "pfk-b", []string{"10.244.1.5/30"}, tn.b, "eth0", []string{twonodeB + "/30"}))
	must(netnstest.Link(tn.n2, "pfk-c", []string{"10.244.2.1/30"}, tn.c, "eth0", []string{twonodeC + "/30"}))
	// The nodes send wire packets to their pods (see twonodeKernelCounters).
	setOffload(t, tn.n1, "pfk-a", "tso", "off", "gso", "off")
	setOffload(t, tn.n1, "pfk-b", "tso", "off", "gso", "off")
	setOffload(t, tn.n2, "pfk-c", "tso", "off", "gso", "off")
	tn.a.MustRun(t, "ip", "route", "add", "default", "via", "10.244.1.1")
	tn.b.MustRun(t, "ip", "route", "add", "default", "via", "10.244.1.5")
	tn.c.MustRun(t, "ip", "route", "add", "default", "via", "10.244.2.1")
	tn.n1.MustRun(t, "ip", "route", "add", "10.244.2.0/24", "via", "192.168.50.2")
	tn.n2.MustRun(t, "ip", "route", "add", "10.244.1.0/24", "via", "192.168.50.1")
	for _, n := range []*netnstest.NS{tn.n1, tn.n2} {
		n.MustRun(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
		// Nodes track connections, as kube-proxy makes them do.
		if out, err := nftApply(n, "table inet pfkube_ct {\n chain pre {\n  type filter hook prerouting priority 0; policy accept;\n  ct state new counter\n }\n}\n"); err != nil {
			t.Logf("no conntrack in %s (%v: %s)", n.Name, err, out)
		}
	}
	return tn
}

// wirePacketsOnly turns segmentation offload off on both ends of every
// link, for connection mode: conntrack counts the packets netfilter sees,
// and a TSO, GSO or GRO super-packet is one packet to it (podflow's packet
// mode counts its segments; TestSegmentationOffload measures the
// difference).
func (tn *twonodeNet) wirePacketsOnly(t *testing.T) {
	t.Helper()
	for _, l := range []struct {
		ns  *netnstest.NS
		ifc string
	}{
		{tn.n1, "pfk-n2"}, {tn.n2, "pfk-n1"}, {tn.n1, "pfk-a"}, {tn.a, "eth0"},
		{tn.n1, "pfk-b"}, {tn.b, "eth0"}, {tn.n2, "pfk-c"}, {tn.c, "eth0"},
	} {
		setOffload(t, l.ns, l.ifc, "tso", "off", "gso", "off", "gro", "off")
	}
}

// twonodeStart runs podflow in a node namespace with Kubernetes
// identities.
func twonodeStart(t *testing.T, ns *netnstest.NS, nodeName, kubeconfig string, m captureMode) *daemon {
	t.Helper()
	return runPodflow(t, ns, "127.0.0.1:9810", "podflow on "+nodeName, append(m.flags(),
		"--web.listen-address=127.0.0.1:9810",
		"--kube.kubeconfig="+kubeconfig,
		"--kube.node-name="+nodeName,
		"--log.level=debug",
	)...)
}

// twonodeAPI serves the cluster's objects the way kube-apiserver does
// for podflow's informers: JSON lists (typed for core objects,
// PartialObjectMetadataList for ReplicaSets and Jobs) and watches that
// stay open without events. It declines streaming lists (watch-list), so
// the informers fall back to list and watch. It can go down and come
// back with the cluster changed (generation 2: the sink pod belongs to a
// Deployment).
type twonodeAPI struct {
	t    *testing.T
	port int
	nss  []*netnstest.NS

	// pods and services are the cluster's pods (twonodePods when nil)
	// and Services.
	pods     func(gen int) []corev1.Pod
	services []corev1.Service

	mu       sync.Mutex
	srv      *http.Server
	gen      int
	podLists map[int]int // per generation
}

// twonodeServeAPI listens on the same loopback port inside each node
// namespace.
func twonodeServeAPI(t *testing.T, nss ...*netnstest.NS) *twonodeAPI {
	t.Helper()
	return twonodeServe(t, &twonodeAPI{nss: nss})
}

// twonodeServe serves a's objects; a names the namespaces and may name
// the pods and Services.
func twonodeServe(t *testing.T, a *twonodeAPI) *twonodeAPI {
	t.Helper()
	a.t, a.port, a.gen, a.podLists = t, 6443, 1, map[int]int{}
	a.start()
	t.Cleanup(a.stop)
	return a
}

func (a *twonodeAPI) start() {
	a.t.Helper()
	srv := &http.Server{Handler: a, ReadHeaderTimeout: 5 * time.Second}
	for _, ns := range a.nss {
		var l net.Listener
		if err := ns.Do(func() (err error) {
			l, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", a.port))
			return err
		}); err != nil {
			a.t.Fatal(err)
		}
		go func() { _ = srv.Serve(l) }()
	}
	a.mu.Lock()
	a.srv = srv
	a.mu.Unlock()
}

// stop closes the listeners and every connection, watches included.
func (a *twonodeAPI) stop() {
	a.mu.Lock()
	srv := a.srv
	a.srv = nil
	a.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

func (a *twonodeAPI) setGeneration(g int) {
	a.mu.Lock()
	a.gen = g
	a.mu.Unlock()
}

func (a *twonodeAPI) lists(gen int) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.podLists[gen]
}

func (a *twonodeAPI) kubeconfig() string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
  - name: twonode
    cluster: {server: "http://127.0.0.1:%d"}
users:
  - name: podflow
    user: {token: twonode}
contexts:
  - name: twonode
    context: {cluster: twonode, user: podflow}
current-context: twonode
`, a.port)
}

func (a *twonodeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("watch") == "true" || q.Get("watch") == "1" {
		if q.Get("sendInitialEvents") == "true" {
			twonodeStatus(w, http.StatusBadRequest, "streaming lists are not served here")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		<-r.Context().Done()
		return
	}
	a.mu.Lock()
	gen := a.gen
	a.mu.Unlock()
	// Objects and lists carry the generation as resource version: an
	// informer takes an object with an unchanged version for a resync.
	rv := strconv.Itoa(gen)
	lm := metav1.ListMeta{ResourceVersion: rv}
	yes := true
	rs := func(name, deployment string) metav1.PartialObjectMetadata {
		return metav1.PartialObjectMetadata{
			TypeMeta: metav1.TypeMeta{Kind: "PartialObjectMetadata", APIVersion: "meta.k8s.io/v1"},
			ObjectMeta: metav1.ObjectMeta{Namespace: "alpha", Name: name, UID: types.UID("uid-" + name), ResourceVersion: rv,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: deployment, UID: types.UID("uid-" + deployment), Controller: &yes}}},
		}
	}
	var list any
	switch r.URL.Path {
	case "/api/v1/pods":
		pods := twonodePods
		if a.pods != nil {
			pods = a.pods
		}
		list = &corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}, ListMeta: lm, Items: pods(gen)}
		a.mu.Lock()
		a.podLists[gen]++
		a.mu.Unlock()
	case "/api/v1/services":
		list = &corev1.ServiceList{TypeMeta: metav1.TypeMeta{Kind: "ServiceList", APIVersion: "v1"}, ListMeta: lm, Items: a.services}
	case "/api/v1/nodes":
		list = &corev1.NodeList{TypeMeta: metav1.TypeMeta{Kind: "NodeList", APIVersion: "v1"}, ListMeta: lm, Items: []corev1.Node{
			twonodeNode("n1", "192.168.50.1", "10.244.1.0/24", rv),
			twonodeNode("n2", "192.168.50.2", "10.244.2.0/24", rv),
		}}
	case "/apis/apps/v1/replicasets":
		l := &metav1.PartialObjectMetadataList{TypeMeta: metav1.TypeMeta{Kind: "PartialObjectMetadataList", APIVersion: "meta.k8s.io/v1"}, ListMeta: lm,
			Items: []metav1.PartialObjectMetadata{rs("client-5f7c9", "client")}}
		if gen > 1 {
			l.Items = append(l.Items, rs("sink-v2-6b8d", "sink-v2"))
			l.Items[1].Namespace = "gamma"
		}
		list = l
	case "/apis/batch/v1/jobs":
		list = &metav1.PartialObjectMetadataList{TypeMeta: metav1.TypeMeta{Kind: "PartialObjectMetadataList", APIVersion: "meta.k8s.io/v1"}, ListMeta: lm}
	default:
		twonodeStatus(w, http.StatusNotFound, "no such resource: "+r.URL.Path)
		return
	}
	b, err := json.Marshal(list)
	if err != nil {
		twonodeStatus(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

func twonodeStatus(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": msg, "code": code,
		"reason": map[int]string{http.StatusBadRequest: "BadRequest", http.StatusNotFound: "NotFound"}[code],
	})
}

func twonodePods(gen int) []corev1.Pod {
	yes := true
	rv := strconv.Itoa(gen)
	mk := func(ns, name, node, ip, ownerKind, owner string) corev1.Pod {
		return corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name), ResourceVersion: rv,
				OwnerReferences: []metav1.OwnerReference{{Kind: ownerKind, Name: owner, UID: types.UID("uid-" + owner), Controller: &yes}}},
			Spec:   corev1.PodSpec{NodeName: node},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
		}
	}
	sink := mk("gamma", "sink-0", "n2", twonodeC, "StatefulSet", "sink")
	if gen > 1 {
		// The sink was replaced by a Deployment's pod on the same address.
		sink = mk("gamma", "sink-v2-6b8d-y", "n2", twonodeC, "ReplicaSet", "sink-v2-6b8d")
	}
	return []corev1.Pod{
		mk("alpha", "client-5f7c9-x", "n1", twonodeA, "ReplicaSet", "client-5f7c9"),
		mk("alpha", "cache-0", "n1", twonodeB, "StatefulSet", "cache"),
		sink,
	}
}

func twonodeNode(name, ip, podCIDR, rv string) corev1.Node {
	return corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name), ResourceVersion: rv},
		Spec:       corev1.NodeSpec{PodCIDR: podCIDR, PodCIDRs: []string{podCIDR}},
		Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}},
	}
}
