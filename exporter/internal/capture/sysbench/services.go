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

// naming is one measurement of Service naming: CPU of the consumer with
// naming off (no pre-DNAT chains, no natinfo) and on.
type naming struct {
	what               string
	rate               int
	units              string
	off, on            point
	offPerUnit, onUnit float64
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
		// Two seconds of new connections: each takes a source port.
		n, err := b.namingPair(rate, 2*time.Second, true)
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

	fmt.Printf("\nService naming without the conntrack glue: every packet goes to %s and is translated to the sink; "+
		"naming off (no pre-DNAT chains) and on (first packets logged before DNAT, joined by natinfo)\n", benchService)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "traffic\trate /s\tnaming\tforwarded\treceived\tcounted\tseq lost\tCPU µs per unit\tCPU % of a core\textra µs per unit\t")
	for _, n := range rows {
		for _, p := range []struct {
			name string
			pt   point
		}{{"off", n.off}, {"on", n.on}} {
			extra := ""
			if p.name == "on" {
				extra = fmt.Sprintf("%.2f per %s", perUnit(n.on)-perUnit(n.off), n.units)
			}
			fmt.Fprintf(w, "%s\t%d\t%s\t%d\t%d\t%d\t%d\t%.2f\t%.1f\t%s\t\n", n.what, n.rate, p.name, p.pt.forwarded, p.pt.received, p.pt.counted,
				p.pt.lost, perUnit(p.pt), 100*float64(p.pt.cpuMicros)/float64(max(p.pt.wall.Microseconds(), 1)), extra)
		}
	}
	return w.Flush()
}

// perUnit is the consumer's CPU per forwarded packet (one per connection
// in the new-connection runs).
func perUnit(p point) float64 { return float64(p.cpuMicros) / float64(max(p.forwarded, 1)) }

// namingPair measures one rate with naming off, then on.
func (b *bench) namingPair(rate int, d time.Duration, newConns bool) (naming, error) {
	n := naming{rate: rate}
	for _, on := range []bool{false, true} {
		cfg := nft.DefaultConfig()
		cfg.Group, cfg.NetNS, cfg.PreDNAT = group, b.rt.FD, on
		table := nft.New(cfg, nil)
		if err := table.Install(); err != nil {
			return n, err
		}
		p, err := b.namingRun(rate, d, newConns, on)
		if err != nil {
			return n, err
		}
		fmt.Fprintf(os.Stderr, "  naming %v, %d/s (new connections: %v): forwarded %d, counted %d\n", on, rate, newConns, p.forwarded, p.counted)
		if on {
			n.on = p
		} else {
			n.off = p
		}
	}
	return n, nil
}

func (b *bench) namingRun(rate int, d time.Duration, newConns, on bool) (point, error) {
	args := []string{"consume", "-mode", "podflow", "-group", strconv.Itoa(group), "-rcvbuf", strconv.Itoa(8 << 20)}
	if on {
		args = append(args, "-services")
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
func (b *bench) servicesSmoke(n int) error {
	undo, err := b.translate()
	if err != nil {
		return err
	}
	defer undo()
	cfg := nft.DefaultConfig()
	cfg.Group, cfg.NetNS, cfg.PreDNAT = group, b.rt.FD, true
	if err := nft.New(cfg, nil).Install(); err != nil {
		return err
	}
	p, err := b.namingRun(500, time.Duration(n)*time.Second/500, true, true)
	if err != nil {
		return err
	}
	want := uint64(n)
	if p.forwarded != want || p.received != 2*want || p.counted != want || p.named != want || p.lost != 0 {
		return fmt.Errorf("%d connections: forwarded %d, received %d, counted %d, named %d, lost %d; want %d, %d, %d, %d, 0",
			n, p.forwarded, p.received, p.counted, p.named, p.lost, want, 2*want, want, want)
	}
	return nil
}
