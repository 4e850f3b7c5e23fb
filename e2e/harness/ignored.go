package harness

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// IgnoredMeter reads, on one node, how many packets podflow left to another
// node (podflow_packets_ignored_total{reason="other_node_reports"}), net of
// the one steady source of such packets in the sandbox: Prometheus'
// scrapes, which the control-plane node initiates and which no podflow
// reports. The kernel counts the scrapes (nftables counters at input and
// postrouting, where podflow logs), so the net value moves only with
// scenario traffic. podflow counts a segmentation offload super-packet as
// the wire packets it stands for (package offload), and a scrape's
// answer leaves in super-packets: the counters sort the scrapes' packets
// by length into what each stands for on the fabric's links.
type IgnoredMeter struct {
	env   *Env
	node  *Node
	table string
	// marked is what the kernel saw per address pair at Mark, to name
	// the packets when a delta is off.
	marked map[string]int
	// seen is the scrapes' count last read, and changed when it last
	// changed.
	seen    int
	changed time.Time
}

// deliveryDelay bounds how long after the kernel counted a packet podflow
// has counted it too: NFLOG holds a packet up to its flush timeout (one
// second by default) until the queue threshold fills, and podflow's
// pipeline flushes a partial batch every 200 ms.
const deliveryDelay = 1500 * time.Millisecond

var ignoredRE = regexp.MustCompile(`(?m)^podflow_packets_ignored_total\{reason="other_node_reports"\} (\S+)$`)

// NewIgnoredMeter installs the scrape counters on n.
func (e *Env) NewIgnoredMeter(n *Node) (*IgnoredMeter, error) {
	counterTableSeq++
	name := fmt.Sprintf("pfe2e-scrapes%d", counterTableSeq)
	// Per pair, with the ports of TCP and UDP, for a failing WaitDelta to
	// say what moved.
	pairs := "    meta nfproto ipv4 meta l4proto { tcp, udp } update @ports4 { ip saddr . ip daddr . meta l4proto . th sport . th dport } return\n" +
		"    meta nfproto ipv6 meta l4proto { tcp, udp } update @ports6 { ip6 saddr . ip6 daddr . meta l4proto . th sport . th dport } return\n" +
		"    meta nfproto ipv4 update @pairs4 { ip saddr . ip daddr . meta l4proto }\n" +
		"    meta nfproto ipv6 update @pairs6 { ip6 saddr . ip6 daddr . meta l4proto }\n"
	rs := "table inet " + name + " {\n" +
		"  set pairs4 { type ipv4_addr . ipv4_addr . inet_proto; flags dynamic; counter; size 65535; }\n" +
		"  set pairs6 { type ipv6_addr . ipv6_addr . inet_proto; flags dynamic; counter; size 65535; }\n" +
		"  set ports4 { type ipv4_addr . ipv4_addr . inet_proto . inet_service . inet_service; flags dynamic; counter; size 65535; }\n" +
		"  set ports6 { type ipv6_addr . ipv6_addr . inet_proto . inet_service . inet_service; flags dynamic; counter; size 65535; }\n" +
		"  chain input { type filter hook input priority 0; policy accept;\n" +
		wireRules("ip saddr "+cpV4+" tcp dport 9810") + pairs + "  }\n" +
		"  chain postrouting { type filter hook postrouting priority 0; policy accept;\n" +
		wireRules("ip daddr "+cpV4+" tcp sport 9810") + pairs + "  }\n}\n"
	if err := n.NS.Nft(rs); err != nil {
		return nil, err
	}
	m := &IgnoredMeter{env: e, node: n, table: name}
	e.AddCleanup(func() { _ = m.Delete() })
	return m, nil
}

// fabricMTU is the MTU of every node's link to the fabric (attach leaves
// the veth's default), the one a scrape's packets cross.
const fabricMTU = 1500

// scrapeHeader is the length of a scrape packet's headers: IPv4 and TCP
// with the timestamp option, which Linux uses on both ends.
const scrapeHeader = 20 + 32

// wireRules counts the packets that match match by the wire packets each
// stands for, as podflow does (package offload: n = ceil((L - H) / (MTU -
// H)) for an L3 length L over the header length H): a rule per n, whose
// comment is n. A long packet with other headers has a rule of its own
// (n = 0), which scrapes reports as an error.
func wireRules(match string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "    %s meta length <= %d counter comment \"w1\"\n", match, fabricMTU)
	per := fabricMTU - scrapeHeader
	for n := 2; scrapeHeader+(n-1)*per < 65536; n++ {
		fmt.Fprintf(&b, "    %s tcp doff 8 meta length %d-%d counter comment \"w%d\"\n", match, scrapeHeader+(n-1)*per+1, scrapeHeader+n*per, n)
	}
	fmt.Fprintf(&b, "    %s tcp doff != 8 meta length > %d counter comment \"w0\"\n", match, fabricMTU)
	return b.String()
}

var (
	wireRE    = regexp.MustCompile(`counter packets (\d+) bytes \d+ comment "w(\d+)"`)
	elementRE = regexp.MustCompile(`([0-9a-f:.]+ \. [0-9a-f:.]+ \. [a-z0-9-]+(?: \. [a-z0-9-]+ \. [a-z0-9-]+)?) counter packets (\d+)`)
)

// scrapes returns the scrapes' packets as podflow counts them.
func (m *IgnoredMeter) scrapes() (int, error) {
	out, err := m.node.NS.Exec("nft", "list", "table", "inet", m.table)
	if err != nil {
		return 0, err
	}
	total := 0
	for _, s := range wireRE.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.Atoi(s[1])
		n, _ := strconv.Atoi(s[2])
		if n == 0 && v > 0 {
			return 0, fmt.Errorf("%d scrape packets on %s longer than the MTU with TCP headers of another length than the meter knows", v, m.node.Name)
		}
		if m.env.ConnectionMode() {
			// Connection mode counts what conntrack's accounting
			// counts: each packet the kernel handled, a super-packet
			// as one (docs/architecture.md, "Connection mode").
			n = 1
		}
		total += n * v
	}
	return total, nil
}

// read returns ignored minus scrapes once no scrape packet arrived while
// podflow's counter was read, nor for deliveryDelay before. podflow is
// read from the node's own address: that connection is the node's own,
// which it reports, never ignores.
func (m *IgnoredMeter) read(ctx context.Context) (int, error) {
	for i := 0; i < 100; i++ {
		before, err := m.scrapes()
		if err != nil {
			return 0, err
		}
		if before != m.seen || m.changed.IsZero() {
			m.seen, m.changed = before, time.Now()
		}
		if time.Since(m.changed) < deliveryDelay {
			// podflow may not have counted the last scrape yet.
			time.Sleep(200 * time.Millisecond)
			continue
		}
		code, body, err := m.env.HTTPGet(ctx, m.node.NS, "http://"+m.node.MetricsAddr()+"/metrics")
		if err != nil || code != 200 {
			return 0, fmt.Errorf("podflow on %s: /metrics: %d %v", m.node.Name, code, err)
		}
		after, err := m.scrapes()
		if err != nil {
			return 0, err
		}
		if before != after {
			continue
		}
		match := ignoredRE.FindStringSubmatch(body)
		if match == nil {
			return 0, fmt.Errorf("podflow on %s: no podflow_packets_ignored_total{reason=\"other_node_reports\"}", m.node.Name)
		}
		v, err := strconv.ParseFloat(match[1], 64)
		if err != nil {
			return 0, err
		}
		return int(v) - after, nil
	}
	return 0, fmt.Errorf("podflow on %s: scrapes never paused", m.node.Name)
}

// Settled returns the net value once it has held still for settleFor:
// longer than the scrape interval, so that podflow has drained what the
// kernel logged even on a machine so busy that podflow runs seconds
// behind the kernel's counters.
func (m *IgnoredMeter) Settled(ctx context.Context) (int, error) {
	const settleFor = 5 * time.Second
	deadline := time.Now().Add(60 * time.Second)
	last, since := 0, time.Time{}
	start, err := m.pairs()
	if err != nil {
		return 0, err
	}
	var values []int
	for time.Now().Before(deadline) {
		v, err := m.read(ctx)
		if err != nil {
			return 0, err
		}
		switch {
		case since.IsZero() || v != last:
			last, since = v, time.Now()
			values = append(values, v)
		case time.Since(since) >= settleFor:
			return v, nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	return 0, fmt.Errorf("podflow on %s: other_node_reports never settled: net values %v; the kernel saw meanwhile:%s", m.node.Name, values, m.changesSince(start))
}

// pairs returns the kernel's packet counts per source, destination and
// protocol on the node (both hooks summed).
func (m *IgnoredMeter) pairs() (map[string]int, error) {
	out, err := m.node.NS.Exec("nft", "list", "table", "inet", m.table)
	if err != nil {
		return nil, err
	}
	c := map[string]int{}
	for _, s := range elementRE.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.Atoi(s[2])
		c[s[1]] += v
	}
	return c, nil
}

// Mark returns the settled net value and remembers the kernel's per-pair
// counts, which a failing WaitDelta reports the changes of.
func (m *IgnoredMeter) Mark(ctx context.Context) (int, error) {
	resume, err := m.pauseScrapes()
	if err != nil {
		return 0, err
	}
	defer resume()
	v, err := m.Settled(ctx)
	if err != nil {
		return 0, err
	}
	m.marked, err = m.pairs()
	return v, err
}

// changes lists the pairs whose packets the kernel saw since Mark.
func (m *IgnoredMeter) changes() string { return m.changesSince(m.marked) }

// changesSince lists the pairs whose packets the kernel saw since it
// counted then.
func (m *IgnoredMeter) changesSince(then map[string]int) string {
	now, err := m.pairs()
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for k, v := range now {
		if d := v - then[k]; d != 0 {
			fmt.Fprintf(&b, "\n    %s: %d packets", k, d)
		}
	}
	return b.String()
}

// WaitDelta waits until the net value has moved by want from base.
func (m *IgnoredMeter) WaitDelta(ctx context.Context, base, want int, timeout time.Duration) error {
	resume, err := m.pauseScrapes()
	if err != nil {
		return err
	}
	defer resume()
	deadline := time.Now().Add(timeout)
	got := 0
	for time.Now().Before(deadline) {
		v, err := m.read(ctx)
		if err != nil {
			return err
		}
		got = v - base
		if got == want {
			// Hold: no more packets may arrive after the expected ones.
			v, err = m.Settled(ctx)
			if err != nil {
				return err
			}
			if got = v - base; got == want {
				return nil
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	return fmt.Errorf("podflow on %s: other_node_reports moved by %d, want %d; the kernel saw on %s since the mark:%s", m.node.Name, got, want, m.node.Name, m.changes())
}

// pauseScrapes holds Prometheus' scrapes while the meter reads, in
// connection mode: podflow counts a scrape's packets at the next conntrack
// dump, after the kernel's counters here did, so the net value moves with
// every scrape until they stop. In packet mode podflow counts them as they
// pass and nothing is paused.
func (m *IgnoredMeter) pauseScrapes() (func(), error) {
	if !m.env.ConnectionMode() {
		return func() {}, nil
	}
	return m.env.PauseScrapes()
}

// Delete removes the counters.
func (m *IgnoredMeter) Delete() error {
	_, err := m.node.NS.Exec("nft", "delete", "table", "inet", m.table)
	return err
}
