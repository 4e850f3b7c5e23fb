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
// scenario traffic.
type IgnoredMeter struct {
	env   *Env
	node  *Node
	table string
	// marked is what the kernel saw per address pair at Mark, to name
	// the packets when a delta is off.
	marked map[string]int
}

var ignoredRE = regexp.MustCompile(`(?m)^podflow_packets_ignored_total\{reason="other_node_reports"\} (\S+)$`)

// NewIgnoredMeter installs the scrape counters on n.
func (e *Env) NewIgnoredMeter(n *Node) (*IgnoredMeter, error) {
	counterTableSeq++
	name := fmt.Sprintf("pfe2e-scrapes%d", counterTableSeq)
	pairs := "    meta nfproto ipv4 update @pairs4 { ip saddr . ip daddr . meta l4proto }\n" +
		"    meta nfproto ipv6 update @pairs6 { ip6 saddr . ip6 daddr . meta l4proto }\n"
	rs := "table inet " + name + " {\n" +
		"  set pairs4 { type ipv4_addr . ipv4_addr . inet_proto; flags dynamic; counter; size 65535; }\n" +
		"  set pairs6 { type ipv6_addr . ipv6_addr . inet_proto; flags dynamic; counter; size 65535; }\n" +
		"  chain input { type filter hook input priority 0; policy accept;\n" +
		"    ip saddr " + cpV4 + " tcp dport 9810 counter\n" + pairs + "  }\n" +
		"  chain postrouting { type filter hook postrouting priority 0; policy accept;\n" +
		"    ip daddr " + cpV4 + " tcp sport 9810 counter\n" + pairs + "  }\n}\n"
	if err := n.NS.Nft(rs); err != nil {
		return nil, err
	}
	m := &IgnoredMeter{env: e, node: n, table: name}
	e.AddCleanup(func() { _ = m.Delete() })
	return m, nil
}

var (
	packetsRE = regexp.MustCompile(`(?m)^\s*ip6? [sd]addr .* counter packets (\d+) bytes`)
	elementRE = regexp.MustCompile(`([0-9a-f:.]+ \. [0-9a-f:.]+ \. [a-z0-9-]+) counter packets (\d+)`)
)

func (m *IgnoredMeter) scrapes() (int, error) {
	out, err := m.node.NS.Exec("nft", "list", "table", "inet", m.table)
	if err != nil {
		return 0, err
	}
	total := 0
	for _, s := range packetsRE.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.Atoi(s[1])
		total += v
	}
	return total, nil
}

// read returns ignored minus scrapes once no scrape packet arrived while
// podflow's counter was read. podflow is read from the node's own address:
// that connection is the node's own, which it reports, never ignores.
func (m *IgnoredMeter) read(ctx context.Context) (int, error) {
	for i := 0; i < 50; i++ {
		before, err := m.scrapes()
		if err != nil {
			return 0, err
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
	for time.Now().Before(deadline) {
		v, err := m.read(ctx)
		if err != nil {
			return 0, err
		}
		switch {
		case since.IsZero() || v != last:
			last, since = v, time.Now()
		case time.Since(since) >= settleFor:
			return v, nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	return 0, fmt.Errorf("podflow on %s: other_node_reports never settled", m.node.Name)
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
func (m *IgnoredMeter) changes() string {
	now, err := m.pairs()
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for k, v := range now {
		if d := v - m.marked[k]; d != 0 {
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
