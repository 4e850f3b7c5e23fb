package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podflow/podflow/exporter/internal/nft"
)

// packetSize is the IP length of every generated packet.
const packetSize = 46

// ctOnlyTable loads conntrack in the router and logs nothing: the
// reference of connection mode's target, since real nodes always track
// connections.
const ctOnlyTable = `table inet pfbsct {
 chain postrouting {
  type filter hook postrouting priority 99; policy accept;
  ct state invalid drop
 }
}`

// useConfig makes the router run one of the measured configurations:
// none (no table at all), conntrack (ctOnlyTable, accounting off),
// acct (the same with nf_conntrack_acct on), packet (podflow's table in
// packet mode) or connection (podflow's table in connection mode; the
// consumer turns accounting on, as podflow does). It removes what the
// previous one installed and empties the conntrack table, so that every
// run starts from no connections.
func (b *bench) useConfig(name string) error {
	if b.table != nil {
		if err := b.table.Delete(); err != nil {
			return err
		}
		b.table = nil
	}
	if b.config == "conntrack" || b.config == "acct" {
		if _, err := b.rt.Run("nft", "delete", "table", "inet", "pfbsct"); err != nil {
			return err
		}
	}
	b.config = ""
	acct := "0"
	switch name {
	case "none":
	case "conntrack", "acct":
		cmd := b.rt.Command("nft", "-f", "-")
		cmd.Stdin = strings.NewReader(ctOnlyTable)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("nft: %w: %s", err, out)
		}
		if name == "acct" {
			acct = "1"
		}
	case "packet", "connection":
		cfg := nft.DefaultConfig()
		cfg.Group, cfg.NetNS = group, b.rt.FD
		if name == "connection" {
			connectionTable(&cfg)
		}
		t := nft.New(cfg, nil)
		if err := t.Install(); err != nil {
			return err
		}
		b.table = t
	default:
		return fmt.Errorf("unknown router configuration %q (none, conntrack, acct, packet, connection)", name)
	}
	b.config = name
	if _, err := b.rt.Run("sysctl", "-q", "-w", "net.netfilter.nf_conntrack_acct="+acct); err != nil {
		return err
	}
	return b.flushConntrack()
}

// flushConntrack empties the router's conntrack table over ctnetlink
// (IPCTNL_MSG_CT_DELETE with no tuple: all entries of every family).
func (b *bench) flushConntrack() error {
	return b.rt.Do(func() error {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		if err != nil {
			return fmt.Errorf("ctnetlink: %w", err)
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return fmt.Errorf("ctnetlink: %w", err)
		}
		req := make([]byte, 16+4)                                 // nlmsghdr, nfgenmsg{AF_UNSPEC, NFNETLINK_V0, res_id 0}
		binary.NativeEndian.PutUint32(req[0:4], uint32(len(req))) //nolint:gosec // 20 bytes
		binary.NativeEndian.PutUint16(req[4:6], ctDelete)
		binary.NativeEndian.PutUint16(req[6:8], unix.NLM_F_REQUEST|unix.NLM_F_ACK)
		binary.NativeEndian.PutUint32(req[8:12], 1)
		if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return fmt.Errorf("ctnetlink flush: %w", err)
		}
		buf := make([]byte, 4096)
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return fmt.Errorf("ctnetlink flush: %w", err)
		}
		if n < 20 || binary.NativeEndian.Uint16(buf[4:6]) != unix.NLMSG_ERROR {
			return errors.New("ctnetlink flush: no acknowledgement")
		}
		if errno := int32(binary.NativeEndian.Uint32(buf[16:20])); errno < 0 { //nolint:gosec // the kernel's negative errno
			return fmt.Errorf("ctnetlink flush: %w", unix.Errno(-errno)) //nolint:gosec // positive here
		}
		return nil
	})
}

// flowConfig is what the modes part measures.
type flowConfig struct {
	shapes, rates, modes, baselines []string
	perConn                         uint64
	d                               time.Duration
	reps                            int
}

// flowRow is one configuration at one shape and rate: one run, or
// several at the target's point (the row shows the median).
type flowRow struct {
	shape, rate, config string
	runs                []point
}

// median returns the run with the median forwarded rate.
func (r *flowRow) median() *point {
	s := slices.Clone(r.runs)
	slices.SortFunc(s, func(a, b point) int {
		switch {
		case fwdPPS(&a) < fwdPPS(&b):
			return -1
		case fwdPPS(&a) > fwdPPS(&b):
			return 1
		}
		return 0
	})
	return &s[len(s)/2]
}

// fwdPPS is the rate at which the sink received the packets.
func fwdPPS(p *point) float64 {
	return float64(p.forwarded) / max(p.wall.Seconds(), 1e-9)
}

func isMode(config string) bool { return config == "packet" || config == "connection" }

// wantConns is how many connections n packets of a shape open.
func wantConns(shape string, n, perConn uint64) uint64 {
	switch {
	case n == 0:
		return 0
	case shape == "long":
		return 1
	}
	return (n + perConn - 1) / perConn
}

// exact tells whether podflow counted each forwarded packet, its bytes
// and each connection once, lost nothing, and the router forwarded all.
func exact(p *point, want uint64) bool {
	return p.forwarded == p.sent && p.counted == p.forwarded && p.bytes == packetSize*p.forwarded && p.conns == want &&
		p.lost == 0 && p.overruns == 0 && p.full == 0 && p.ctLost == 0 && p.ctLostConns == 0 && p.connsFull == 0 && p.ctDumpErrors == 0
}

// flowPoint runs one configuration at one shape and rate.
func (b *bench) flowPoint(config, shape, rate string, perConn uint64, d time.Duration) (point, error) {
	p := point{mode: config, offered: rate}
	r, count := 0, uint64(0)
	if rate != "max" {
		n, err := strconv.Atoi(rate)
		if err != nil {
			return p, fmt.Errorf("rate %q: %w", rate, err)
		}
		r, count = n, uint64(float64(n)*d.Seconds())
	}
	if err := b.useConfig(config); err != nil {
		return p, err
	}
	genArgs := []string{"gen", "-dst", "10.245.2.2", "-shape", shape, "-per-conn", strconv.FormatUint(perConn, 10),
		"-rate", strconv.Itoa(r), "-count", strconv.FormatUint(count, 10), "-duration", d.String()}
	var consumerArgs []string
	if isMode(config) {
		consumerArgs = b.podflowArgs(config)
	}
	p, err := b.run(consumerArgs, genArgs, func(r *report, fwd, sent uint64) bool {
		return r.Counted >= fwd && r.Conns >= wantConns(shape, sent, perConn)
	})
	p.mode, p.offered = config, rate
	return p, err
}

// podflowArgs are the arguments of a podflow consumer in a capture mode.
func (b *bench) podflowArgs(mode string) []string {
	return []string{"consume", "-mode", "podflow", "-capture", mode, "-dump-interval", b.dumpInterval.String(),
		"-group", strconv.Itoa(group), "-rcvbuf", strconv.Itoa(8 << 20)}
}

// flows measures every configuration at every shape and rate, alternating
// their order from one rate to the next; at the maximum rate on long
// flows it runs the conntrack baseline and connection mode fc.reps times
// each, interleaved, for the target.
func (b *bench) flows(fc *flowConfig) error {
	configs := append(slices.Clone(fc.baselines), fc.modes...)
	fmt.Printf("Packet and connection mode: 46-byte UDP from a raw socket, %v per rate; long flows are one connection, short ones a new connection every %d packets; "+
		"forwarded is counted at the sink; the generator's CPU includes the router's forwarding, which runs in the softirq of its sends on its core (CPU0), whose softirq time is shown too; "+
		"podflow's CPU is its reader's, pipeline's and conntrack source's, on CPU1, from just before the run until it has counted everything (its share of a core is over that time); "+
		"connection mode dumps conntrack every %v\n", fc.d, fc.perConn, b.dumpInterval)
	var rows []*flowRow
	for _, shape := range fc.shapes {
		for i, rate := range fc.rates {
			order := slices.Clone(configs)
			if i%2 == 1 {
				slices.Reverse(order)
			}
			var these []*flowRow
			for _, c := range order {
				these = append(these, &flowRow{shape: shape, rate: rate, config: c})
			}
			for rep := 0; ; rep++ {
				ran := false
				for _, row := range these {
					n := 1
					if shape == "long" && rate == "max" && (row.config == "conntrack" || row.config == "connection") {
						n = max(fc.reps, 1)
					}
					if rep >= n {
						continue
					}
					p, err := b.flowPoint(row.config, shape, rate, fc.perConn, fc.d)
					if err != nil {
						return fmt.Errorf("%s, %s flows at %s: %w", row.config, shape, rate, err)
					}
					row.runs = append(row.runs, p)
					ran = true
					fmt.Fprintf(os.Stderr, "  %s, %s flows at %s: sent %d, forwarded %d (%.0f/s), counted %d, connections %d; lost: %s\n",
						row.config, shape, rate, p.sent, p.forwarded, fwdPPS(&p), p.counted, p.conns, losses(&p))
				}
				if !ran {
					break
				}
			}
			rows = append(rows, these...)
		}
	}
	b.printFlows(rows, fc)
	return nil
}

func (b *bench) printFlows(rows []*flowRow, fc *flowConfig) {
	find := func(shape, rate, config string) *point {
		for _, r := range rows {
			if r.shape == shape && r.rate == rate && r.config == config {
				return r.median()
			}
		}
		return nil
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "flows\toffered\trouter\truns\tforwarded pps\tvs conntrack\tgenerator µs/pkt\tCPU0 softirq µs/pkt\tpodflow µs/pkt\tpodflow % of a core\tsent\tforwarded\tlogged\tcounted\tbytes\tconnections\tlost\texact\t")
	for _, r := range rows {
		p := r.median()
		runs := strconv.Itoa(len(r.runs))
		if len(r.runs) > 1 {
			lo, hi := fwdPPS(&r.runs[0]), fwdPPS(&r.runs[0])
			for i := range r.runs {
				lo, hi = min(lo, fwdPPS(&r.runs[i])), max(hi, fwdPPS(&r.runs[i]))
			}
			runs = fmt.Sprintf("%d (%.0fk-%.0fk)", len(r.runs), lo/1e3, hi/1e3)
		}
		vs := "-"
		if ref := find(r.shape, r.rate, "conntrack"); ref != nil && r.config != "conntrack" {
			vs = fmt.Sprintf("%+.1f%%", 100*(fwdPPS(p)-fwdPPS(ref))/fwdPPS(ref))
		}
		fwd := float64(max(p.forwarded, 1))
		pf, core, logged, counted, bytes, conns, lost, ok := "-", "-", "-", "-", "-", "-", "-", "-"
		if isMode(r.config) {
			want := wantConns(r.shape, p.sent, fc.perConn)
			pf = fmt.Sprintf("%.3f", float64(p.cpuMicros)/fwd)
			core = fmt.Sprintf("%.1f", 100*float64(p.cpuMicros)/float64(max(p.window.Microseconds(), 1)))
			logged, counted, bytes = strconv.FormatUint(p.received, 10), strconv.FormatUint(p.counted, 10), strconv.FormatUint(p.bytes, 10)
			conns = fmt.Sprintf("%d/%d", p.conns, want)
			lost = fmt.Sprintf("%d", p.lost+p.overruns+p.full+p.ctLost+p.ctLostConns+p.connsFull+p.ctDumpErrors)
			ok = "no"
			if exact(p, want) {
				ok = "yes"
			}
		} else if p.forwarded == p.sent {
			ok = "yes"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%.0f\t%s\t%.2f\t%.2f\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			r.shape, r.rate, r.config, runs, fwdPPS(p), vs,
			float64(p.genProc.Microseconds())/fwd, float64(p.softirq.Microseconds())/fwd,
			pf, core, p.sent, p.forwarded, logged, counted, bytes, conns, lost, ok)
	}
	_ = w.Flush()
	fmt.Println("(logged: packets podflow read from NFLOG; lost: NFLOG sequence gaps, ENOBUFS, hand-off drops, lost conntrack events and connections, failed dumps; exact: every forwarded packet, its bytes and every connection counted once, nothing lost, and everything sent forwarded)")

	ct, conn := find("long", "max", "conntrack"), find("long", "max", "connection")
	if ct == nil || conn == nil {
		fmt.Println("\ntargets: not checked (they need the conntrack baseline and connection mode at the maximum rate on long flows)")
		return
	}
	d := 100 * (fwdPPS(conn) - fwdPPS(ct)) / fwdPPS(ct)
	fmt.Printf("\ntarget: at the maximum rate on long flows, connection mode forwards within 5%% of the conntrack-only router: %.0f vs %.0f packets per second (%+.1f%%, medians of %d runs): %s\n",
		fwdPPS(conn), fwdPPS(ct), d, max(fc.reps, 1), passFail(d >= -5))
	gc, gt := float64(conn.genProc.Microseconds())/float64(max(conn.forwarded, 1)), float64(ct.genProc.Microseconds())/float64(max(ct.forwarded, 1))
	fmt.Printf("        the same by the generator core's CPU per forwarded packet, which other work on the machine moves less: %.2f vs %.2f µs (%+.1f%%): %s\n",
		gc, gt, 100*(gc-gt)/gt, passFail(gc <= gt/0.95))
	us := float64(conn.cpuMicros) / float64(max(conn.forwarded, 1))
	fmt.Printf("target: at the maximum rate on long flows, podflow's CPU per forwarded packet in connection mode is below 0.2 µs: %.3f µs: %s\n", us, passFail(us < 0.2))
	var notExact []string
	for _, r := range rows {
		if isMode(r.config) && !exact(r.median(), wantConns(r.shape, r.median().sent, fc.perConn)) {
			notExact = append(notExact, fmt.Sprintf("%s mode, %s flows at %s", r.config, r.shape, r.rate))
		}
	}
	if len(notExact) == 0 {
		fmt.Println("counts: every run of both modes counted what was sent exactly")
	} else {
		fmt.Printf("counts: not exact in %s (see the table)\n", strings.Join(notExact, "; "))
	}
}

// losses names every loss counter of a run.
func losses(p *point) string {
	return fmt.Sprintf("%d NFLOG, %d ENOBUFS, %d hand-off, %d conntrack events, %d connections, %d conntrack hand-off, %d failed dumps",
		p.lost, p.overruns, p.full, p.ctLost, p.ctLostConns, p.connsFull, p.ctDumpErrors)
}

func passFail(ok bool) string {
	if ok {
		return "pass"
	}
	return "FAIL"
}

// connectionSmoke sends n packets on a long flow and n on short flows at
// a trivially low rate with podflow in connection mode, and checks that
// it counts every packet, byte and connection once and loses nothing.
func (b *bench) connectionSmoke(n, perConn uint64) error {
	for _, shape := range []string{"long", "short"} {
		rate := "2000"
		d := time.Duration(min(n, 1<<20)) * time.Second / 2000 //nolint:gosec // bounded
		p, err := b.flowPoint("connection", shape, rate, perConn, d)
		if err != nil {
			return fmt.Errorf("%s flows: %w", shape, err)
		}
		if want := wantConns(shape, n, perConn); p.sent != n || !exact(&p, want) {
			return fmt.Errorf("%s flows, %d packets of %d bytes on %d connections: sent %d, forwarded %d, counted %d packets, %d bytes, %d connections; lost: %s",
				shape, n, packetSize, want, p.sent, p.forwarded, p.counted, p.bytes, p.conns, losses(&p))
		}
	}
	return nil
}
