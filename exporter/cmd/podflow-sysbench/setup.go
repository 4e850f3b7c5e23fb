package main

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"
)

// setupTimeout is the router's UDP conntrack timeout during the setup
// part: each one-packet connection ends (a destroy event) about a second
// after it starts, so that destroy events follow at the setup rate and the
// table, shared by the whole machine's hash, never fills.
const setupTimeout = "1"

// setupPoint is one capture mode at one rate of new connections.
type setupPoint struct {
	mode, rate string
	point
}

// clean tells whether podflow kept up: every connection and packet
// counted, nothing lost.
func (s *setupPoint) clean() bool { return exact(&s.point, s.sent) }

// setup offers new connections (one 46-byte packet each) at each rate to
// podflow in each capture mode, and reports what it counted and lost.
func (b *bench) setup(rates, modes []string, d time.Duration, most uint64) error {
	if _, err := b.rt.Run("sysctl", "-q", "-w", "net.netfilter.nf_conntrack_udp_timeout="+setupTimeout); err != nil {
		return err
	}
	defer func() { _, _ = b.rt.Run("sysctl", "-q", "-w", "net.netfilter.nf_conntrack_udp_timeout=30") }()
	var pts []setupPoint
	for i, rate := range rates {
		order := slices.Clone(modes)
		if i%2 == 1 {
			slices.Reverse(order)
		}
		for _, mode := range order {
			r, count := 0, most
			if rate != "max" {
				n, err := strconv.Atoi(rate)
				if err != nil {
					return fmt.Errorf("rate %q: %w", rate, err)
				}
				r, count = n, min(uint64(float64(n)*d.Seconds()), most)
			}
			if err := b.useConfig(mode); err != nil {
				return err
			}
			genArgs := []string{"gen", "-dst", "10.245.2.2", "-shape", "short", "-per-conn", "1",
				"-rate", strconv.Itoa(r), "-count", strconv.FormatUint(count, 10), "-duration", time.Minute.String()}
			p, err := b.run(b.podflowArgs(mode), genArgs, func(r *report, fwd, sent uint64) bool {
				return r.Counted >= fwd && r.Conns >= sent
			})
			if err != nil {
				return fmt.Errorf("%s mode at %s connections per second: %w", mode, rate, err)
			}
			pts = append(pts, setupPoint{mode, rate, p})
			fmt.Fprintf(os.Stderr, "  setup, %s mode at %s/s: sent %d (%.0f/s), counted %d connections, lost %d NFLOG, %d conntrack events\n",
				mode, rate, p.sent, p.pps, p.conns, p.lost, p.ctLost)
		}
	}
	fmt.Printf("\nConnection setup rate: a new connection per 46-byte UDP packet, at most %d per rate (%v at the lower ones); "+
		"the router's UDP conntrack timeout is %s s, so connections end (destroy events) at the rate they start\n", most, d, setupTimeout)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "mode\toffered /s\tachieved /s\tconnections\tforwarded\tcounted connections\tcounted packets\tNFLOG lost\tENOBUFS\thand-off drops\tct lost events\tct lost connections\tfailed dumps\tpodflow µs/connection\tclean\t")
	for i := range pts {
		s := &pts[i]
		fmt.Fprintf(w, "%s\t%s\t%.0f\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.2f\t%s\t\n", s.mode, s.rate, s.pps, s.sent, s.forwarded, s.conns, s.counted,
			s.lost, s.overruns, s.full+s.connsFull, s.ctLost, s.ctLostConns, s.ctDumpErrors,
			float64(s.cpuMicros)/float64(max(s.sent, 1)), map[bool]string{true: "yes", false: "no"}[s.clean()])
	}
	_ = w.Flush()
	for _, mode := range modes {
		// Rates in the order offered: the highest clean one, and the
		// lowest that lost something, since runs at the edge differ.
		var best, top, lossy float64
		for i := range pts {
			if pts[i].mode != mode {
				continue
			}
			top = max(top, pts[i].pps)
			switch {
			case pts[i].clean():
				best = max(best, pts[i].pps)
			case lossy == 0 || pts[i].pps < lossy:
				lossy = pts[i].pps
			}
		}
		worst := "none lost anything"
		if lossy > 0 {
			worst = fmt.Sprintf("the lowest that lost something: %.0f", lossy)
		}
		fmt.Printf("%s mode: highest clean setup rate %.0f connections per second, %s (the generator reached %.0f)\n", mode, best, worst, top)
	}
	return nil
}
