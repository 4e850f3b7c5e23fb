package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/podflow/podflow/exporter/internal/nft"
)

// The Service address of the naming benchmark: the router translates it
// to the sink, as kube-proxy translates a ClusterIP to a pod.
const benchService = "10.245.3.10"

const serviceNAT = `table ip pfbsnat {
 chain pre {
  type nat hook prerouting priority dstnat; policy accept;
  ip daddr ` + benchService + ` dnat to 10.245.2.2
 }
}`

// naming is one measurement of Service naming: the consumer with naming
// off (no pre-DNAT chains, no natinfo), with the pre-DNAT log, and (for
// new connections) with a ctnetlink lookup per connection instead.
type naming struct {
	what    string
	rate    int
	units   string
	off     point
	designs []design
}

type design struct {
	name string
	pt   point
}

// services measures what naming Services costs where NFLOG carries no
// conntrack tuple: per new connection (each datagram from a new socket,
// so each is a connection's first packet, logged before and after DNAT)
// at each rate of conns, and per packet of established connections (64
// flows at pktRate).
func (b *bench) services(connRates []string, pktRate int, d time.Duration) error {
	undo, err := b.translate()
	if err != nil {
		return err
	}
	defer undo()
	var rows []naming
	for _, r := range connRates {
		rate, err := strconv.Atoi(strings.TrimSpace(r))
		if err != nil {
			return fmt.Errorf("connection rate %q: %w", r, err)
		}
		// One second of new connections: each takes a source port of
		// its own, for each of the three designs.
		n, err := b.namingPair(rate, time.Second, true)
		if err != nil {
			return err
		}
		n.what, n.units = "new connections", "connection"
		rows = append(rows, n)
	}
	n, err := b.namingPair(pktRate, d, false)
	if err != nil {
		return err
	}
	n.what, n.units = "packets of 64 established connections", "packet"
	rows = append(rows, n)

	fmt.Printf("\nService naming without the conntrack glue: every packet goes to %s and is translated to the sink; naming off "+
		"(no pre-DNAT chains), log (first packets logged before DNAT, joined by natinfo), ctnetlink (a conntrack lookup by reply tuple per new connection)\n", benchService)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "traffic\trate /s\tnaming\tforwarded\treceived\tcounted\tnamed\tseq lost\tCPU µs per unit\tCPU % of a core\textra µs per unit\t")
	for i := range rows {
		n := &rows[i]
		row := func(name string, p *point, extra string) {
			fmt.Fprintf(w, "%s\t%d\t%s\t%d\t%d\t%d\t%d\t%d\t%.2f\t%.1f\t%s\t\n", n.what, n.rate, name, p.forwarded, p.received, p.counted, p.named,
				p.lost, perUnit(p), 100*float64(p.cpuMicros)/float64(max(p.wall.Microseconds(), 1)), extra)
		}
		row("off", &n.off, "")
		for j := range n.designs {
			d := &n.designs[j]
			row(d.name, &d.pt, fmt.Sprintf("%.2f per %s", perUnit(&d.pt)-perUnit(&n.off), n.units))
		}
	}
	return w.Flush()
}

// perUnit is the consumer's CPU per forwarded packet (one per connection
// in the new-connection runs).
func perUnit(p *point) float64 { return float64(p.cpuMicros) / float64(max(p.forwarded, 1)) }

// namingPair measures one rate with naming off, then with each design.
func (b *bench) namingPair(rate int, d time.Duration, newConns bool) (naming, error) {
	n := naming{rate: rate}
	variants := []struct {
		name    string
		preDNAT bool
		flag    string
	}{{"off", false, ""}, {"log", true, "-services"}}
	if newConns {
		variants = append(variants, struct {
			name    string
			preDNAT bool
			flag    string
		}{"ctnetlink", false, "-ctget"})
	}
	for _, v := range variants {
		cfg := nft.DefaultConfig()
		cfg.Group, cfg.NetNS, cfg.PreDNAT = group, b.rt.FD, v.preDNAT
		if err := b.reinstall(&cfg); err != nil {
			return n, err
		}
		p, err := b.namingRun(rate, d, newConns, v.flag)
		if err != nil {
			return n, err
		}
		fmt.Fprintf(os.Stderr, "  naming %s, %d/s (new connections: %v): forwarded %d, counted %d, named %d\n", v.name, rate, newConns, p.forwarded, p.counted, p.named)
		if v.name == "off" {
			n.off = p
		} else {
			n.designs = append(n.designs, design{v.name, p})
		}
	}
	return n, nil
}

func (b *bench) namingRun(rate int, d time.Duration, newConns bool, flag string) (point, error) {
	args := []string{"consume", "-mode", "podflow", "-group", strconv.Itoa(group), "-rcvbuf", strconv.Itoa(8 << 20)}
	if flag != "" {
		args = append(args, flag)
	}
	genArgs := []string{"gen", "-dst", benchService, "-rate", strconv.Itoa(rate), "-count", strconv.Itoa(int(float64(rate) * d.Seconds())), "-duration", (2 * d).String()}
	if newConns {
		genArgs = append(genArgs, "-newconns", "-sport", strconv.Itoa(b.nextPort))
		b.nextPort += int(float64(rate) * d.Seconds())
	}
	p, err := b.runOnce(args, genArgs)
	p.mode = "podflow"
	return p, err
}

// translate installs the router's DNAT of benchService; undo removes it.
func (b *bench) translate() (undo func(), err error) {
	cmd := b.rt.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(serviceNAT)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("nft: %w: %s", err, out)
	}
	return func() { _, _ = b.rt.Run("nft", "delete", "table", "ip", "pfbsnat") }, nil
}

// servicesSmoke opens n connections to benchService at a trivially low
// rate with naming on, and checks that each one's packet was logged twice
// (before and after DNAT), counted once, and counted under its Service.
func (b *bench) servicesSmoke(n uint64) error {
	undo, err := b.translate()
	if err != nil {
		return err
	}
	defer undo()
	cfg := nft.DefaultConfig()
	cfg.Group, cfg.NetNS, cfg.PreDNAT = group, b.rt.FD, true
	if err := b.reinstall(&cfg); err != nil {
		return err
	}
	p, err := b.namingRun(500, time.Duration(min(n, 1<<20))*time.Second/500, true, "-services") //nolint:gosec // bounded
	if err != nil {
		return err
	}
	want := n
	if p.forwarded != want || p.received != 2*want || p.counted != want || p.named != want || p.lost != 0 {
		return fmt.Errorf("%d connections: forwarded %d, received %d, counted %d, named %d, lost %d; want %d, %d, %d, %d, 0",
			n, p.forwarded, p.received, p.counted, p.named, p.lost, want, 2*want, want, want)
	}
	return nil
}

// reinstall replaces the router's podflow table with one built from cfg.
// The table belongs to the netlink socket of the nft.Table that installed
// it, so the old one is deleted first and the new one is kept in b.table
// for as long as the bench runs.
func (b *bench) reinstall(cfg *nft.Config) error {
	if b.table != nil {
		if err := b.table.Delete(); err != nil {
			return err
		}
	}
	b.table = nft.New(*cfg, nil)
	return b.table.Install()
}
