// Command podflow-sysbench is podflow's system benchmark of the capture path
// (make bench-system, as root). It builds a forwarding topology of
// network namespaces, generator -> router -> sink, and measures, in one
// run:
//
//   - modes: packet mode and connection mode side by side, on long flows
//     (one connection) and short ones (a new connection every 10
//     packets), at fixed rates and at the generator's maximum, next to
//     the router with no table and with a table that only loads
//     conntrack: packets per second forwarded, podflow's CPU per
//     forwarded packet, the kernel's softirq time, whether podflow counted
//     what was sent, and the targets of connection mode;
//   - setup: the rate of new connections podflow keeps up with, with no
//     lost NFLOG packets or conntrack events;
//   - readers: podflow's reader and pipeline next to a bare go-nflog
//     reader on the packet-mode table, and the drain rate from a full
//     socket buffer;
//   - services: what naming Services costs without the conntrack glue.
//
// It removes its namespaces on every exit.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/podflow/podflow/exporter/internal/capture/netnstest"
	"github.com/podflow/podflow/exporter/internal/conntrack"
	"github.com/podflow/podflow/exporter/internal/nft"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	if len(args) > 0 {
		switch args[0] {
		case "gen":
			return gen(args[1:])
		case "consume":
			return consume(args[1:])
		}
	}
	fs := flag.NewFlagSet("sysbench", flag.ContinueOnError)
	parts := fs.String("parts", "modes,setup,readers,services", "what to measure, comma-separated: modes, setup, readers, services")
	shapes := fs.String("shapes", "long,short", "modes: flow shapes, long (one connection) and short (a new connection every -per-conn packets)")
	perConn := fs.Uint64("per-conn", 10, "modes: packets per connection of short flows")
	flowRates := fs.String("flow-rates", "50000,100000,max", "modes: offered rates in packets per second; max sends as fast as possible")
	captureModes := fs.String("capture-modes", "packet,connection", "modes and setup: podflow's capture modes to measure")
	baselines := fs.String("baselines", "none,conntrack,acct", "modes: router baselines without podflow: none (no table), conntrack (a table that loads conntrack and logs nothing), acct (the same with conntrack accounting on)")
	targetReps := fs.Int("target-reps", 5, "modes: runs of the conntrack baseline and of connection mode at the maximum rate on long flows, whose medians the target compares")
	dumpInterval := fs.Duration("dump-interval", conntrack.DefaultDumpInterval, "connection mode: how often podflow dumps the conntrack table (--conntrack.dump-interval)")
	setupRates := fs.String("setup-rates", "1000,2000,5000,10000,20000,50000,100000,max", "setup: offered rates of new connections per second (one packet each)")
	setupDuration := fs.Duration("setup-duration", 2*time.Second, "setup: how long each rate is offered")
	setupMax := fs.Uint64("setup-max", 150000, "setup: at most this many connections per rate, so that the conntrack table never fills")
	rates := fs.String("rates", "25000,50000,100000,max", "readers: offered rates in packets per second, comma-separated; max sends as fast as possible; empty skips them")
	duration := fs.Duration("duration", 5*time.Second, "modes, readers and services: how long each rate is offered")
	burst := fs.Uint64("burst", 500000, "readers: packets logged while the consumer is stopped, for the drain rate; 0 skips it")
	modes := fs.String("modes", "podflow,gonflog", "readers: consumers to measure: podflow (capture and pipeline), gonflog (bare go-nflog reader)")
	connSmoke := fs.Uint64("connection-smoke", 0, "instead of measuring, send this many packets on long and on short flows at a trivially low rate in connection mode and check podflow counts each packet, byte and connection once")
	smoke := fs.Uint64("smoke", 0, "instead of measuring, send this many packets at a trivially low rate and check podflow counts each once")
	services := fs.String("services", "1000,10000", "services: rates of new connections per second at which to measure Service naming without the conntrack glue; empty skips it")
	servicePkts := fs.Int("service-packets", 20000, "services: packets per second of established connections at which to measure Service naming")
	servicesSmoke := fs.Uint64("services-smoke", 0, "instead of measuring, open this many connections to a translated Service at a trivially low rate and check each is counted once, under its Service")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	b, err := newBench(self, *smoke == 0 && *servicesSmoke == 0 && *connSmoke == 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sysbench:", err)
		return 1
	}
	defer b.close()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		b.close()
		os.Exit(1)
	}()
	if *servicesSmoke > 0 {
		if err := b.servicesSmoke(*servicesSmoke); err != nil {
			fmt.Fprintln(os.Stderr, "sysbench services smoke:", err)
			return 1
		}
		fmt.Printf("services smoke: %d connections counted once each, under their Service\n", *servicesSmoke)
		return 0
	}
	b.dumpInterval = *dumpInterval
	if *connSmoke > 0 {
		if err := b.connectionSmoke(*connSmoke, *perConn); err != nil {
			fmt.Fprintln(os.Stderr, "sysbench connection smoke:", err)
			return 1
		}
		fmt.Printf("connection smoke: %d packets on long and on short flows counted once each, with their bytes and connections\n", *connSmoke)
		return 0
	}
	if *smoke > 0 {
		if err := b.smoke(*smoke); err != nil {
			fmt.Fprintln(os.Stderr, "sysbench smoke:", err)
			return 1
		}
		fmt.Printf("smoke: %d packets forwarded, %d counted once each\n", *smoke, *smoke)
		return 0
	}
	want := map[string]bool{}
	for _, p := range list(*parts) {
		switch p {
		case "modes", "setup", "readers", "services":
			want[p] = true
		default:
			fmt.Fprintf(os.Stderr, "sysbench: unknown part %q (modes, setup, readers, services)\n", p)
			return 2
		}
	}
	b.header()
	defer func() { fmt.Printf("\nload average at the end: %s\n", loadavg()) }()
	if want["modes"] {
		fc := flowConfig{shapes: list(*shapes), rates: list(*flowRates), modes: list(*captureModes), baselines: list(*baselines),
			perConn: *perConn, d: *duration, reps: *targetReps}
		if err := b.flows(&fc); err != nil {
			fmt.Fprintln(os.Stderr, "sysbench modes:", err)
			return 1
		}
	}
	if want["setup"] {
		if err := b.setup(list(*setupRates), list(*captureModes), *setupDuration, *setupMax); err != nil {
			fmt.Fprintln(os.Stderr, "sysbench setup:", err)
			return 1
		}
	}
	if err := b.useConfig("packet"); err != nil {
		fmt.Fprintln(os.Stderr, "sysbench:", err)
		return 1
	}
	if want["readers"] && *rates != "" {
		if err := b.measure(strings.Split(*rates, ","), strings.Split(*modes, ","), *duration, *burst); err != nil {
			fmt.Fprintln(os.Stderr, "sysbench:", err)
			return 1
		}
	}
	if want["services"] && *services != "" {
		if err := b.services(strings.Split(*services, ","), *servicePkts, *duration); err != nil {
			fmt.Fprintln(os.Stderr, "sysbench services:", err)
			return 1
		}
	}
	return 0
}

const group = 100

// list splits a comma-separated flag, dropping empty items.
func list(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

type bench struct {
	self           string
	pin            bool
	gen, rt, sink  *netnstest.NS
	table          *nft.Table
	mu             sync.Mutex
	children       []*exec.Cmd
	closed         bool
	forwardCounter *regexp.Regexp
	nextPort       int    // the next source port of new connections
	config         string // what the router runs: see useConfig
	dumpInterval   time.Duration
}

func newBench(self string, pin bool) (*bench, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("needs root: it creates network namespaces and nftables tables")
	}
	b := &bench{self: self, forwardCounter: regexp.MustCompile(`packets (\d+)`), nextPort: 1024}
	if _, err := exec.LookPath("taskset"); err == nil && pin && runtime.NumCPU() >= 2 {
		b.pin = true
	}
	ok := false
	defer func() {
		if !ok {
			b.close()
		}
	}()
	for _, p := range []**netnstest.NS{&b.gen, &b.rt, &b.sink} {
		ns, err := netnstest.Create("pfbs-")
		if err != nil {
			return nil, err
		}
		*p = ns
	}
	if err := netnstest.Link(b.gen, "g0", []string{"10.245.1.2/24"}, b.rt, "r1", []string{"10.245.1.1/24"}); err != nil {
		return nil, err
	}
	if err := netnstest.Link(b.rt, "r2", []string{"10.245.2.1/24"}, b.sink, "s0", []string{"10.245.2.2/24"}); err != nil {
		return nil, err
	}
	steps := []struct {
		ns   *netnstest.NS
		args []string
	}{
		{b.gen, []string{"ip", "route", "add", "10.245.0.0/16", "via", "10.245.1.1"}},
		{b.sink, []string{"ip", "route", "add", "10.245.0.0/16", "via", "10.245.2.1"}},
		{b.rt, []string{"sysctl", "-q", "-w", "net.ipv4.ip_forward=1"}},
		// The sink counts and drops the datagrams before they reach a
		// socket, so that it sends no ICMP back; the router runs no
		// table but the one measured.
		{b.sink, []string{"nft", "add table inet pfbssink; add counter inet pfbssink forwarded; add chain inet pfbssink pre { type filter hook prerouting priority 0; }; add rule inet pfbssink pre ip saddr 10.245.1.2 udp dport 9000-9063 counter name forwarded drop"}},
	}
	for _, ns := range []*netnstest.NS{b.gen, b.rt, b.sink} {
		// IPv4 only: no multicast listener reports among the counts.
		steps = append(steps, struct {
			ns   *netnstest.NS
			args []string
		}{ns, []string{"sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"}})
	}
	for _, s := range steps {
		if _, err := s.ns.Run(s.args...); err != nil {
			return nil, err
		}
	}
	if err := b.useConfig("packet"); err != nil {
		return nil, err
	}
	ok = true
	return b, nil
}

// close stops every child and removes the namespaces; it is idempotent.
func (b *bench) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.closed = true
	for _, c := range b.children {
		if c.Process != nil && c.ProcessState == nil {
			_ = c.Process.Signal(syscall.SIGCONT)
			_ = c.Process.Kill()
		}
	}
	if b.table != nil {
		_ = b.table.Delete()
	}
	for _, ns := range []*netnstest.NS{b.gen, b.rt, b.sink} {
		if ns != nil {
			ns.Close()
		}
	}
}

func (b *bench) command(ns *netnstest.NS, cpu string, args ...string) *exec.Cmd {
	full := []string{b.self}
	if b.pin {
		full = []string{"taskset", "-c", cpu, b.self}
	}
	return ns.Command(append(full, args...)...)
}

func (b *bench) forwarded() (uint64, error) {
	out, err := b.sink.Run("nft", "list", "counter", "inet", "pfbssink", "forwarded")
	if err != nil {
		return 0, err
	}
	m := b.forwardCounter.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no packet count in %q", out)
	}
	return strconv.ParseUint(m[1], 10, 64)
}

func (b *bench) generate(rate int, count uint64, d time.Duration) (genResult, error) {
	return b.generateArgs([]string{"gen", "-dst", "10.245.2.2", "-rate", strconv.Itoa(rate), "-count", strconv.FormatUint(count, 10), "-duration", d.String()})
}

func (b *bench) generateArgs(args []string) (genResult, error) {
	var res genResult
	cmd := b.command(b.gen, "0", args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return res, fmt.Errorf("generator: %w", err)
	}
	err = json.Unmarshal(out, &res)
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		res.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return res, err
}

type consumer struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func (b *bench) startConsumer(mode string, rcvbuf int) (*consumer, error) {
	return b.startConsumerArgs([]string{"consume", "-mode", mode, "-group", strconv.Itoa(group), "-rcvbuf", strconv.Itoa(rcvbuf)})
}

func (b *bench) startConsumerArgs(args []string) (*consumer, error) {
	mode := args[2]
	cmd := b.command(b.rt, "1", args...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, errors.New("closed")
	}
	if err := cmd.Start(); err != nil {
		b.mu.Unlock()
		return nil, err
	}
	b.children = append(b.children, cmd)
	b.mu.Unlock()
	c := &consumer{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	var ready report
	if err := c.read(&ready); err != nil || !ready.Ready {
		if err == nil {
			err = errors.New("no ready line")
		}
		c.stop()
		return nil, fmt.Errorf("consumer %s did not get ready: %w", mode, err)
	}
	return c, nil
}

func (c *consumer) read(r *report) error {
	if !c.out.Scan() {
		err := c.out.Err()
		if err == nil {
			err = io.EOF
		}
		return fmt.Errorf("consumer exited: %w", err)
	}
	return json.Unmarshal(c.out.Bytes(), r)
}

func (c *consumer) report() (report, error) {
	var r report
	if _, err := io.WriteString(c.in, "report\n"); err != nil {
		return r, err
	}
	err := c.read(&r)
	return r, err
}

func (c *consumer) stop() {
	_ = c.in.Close()
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
	}
}

// settle is longer than the NFLOG flush timeout and the pipeline's
// partial-batch flush, so that every logged packet has been counted.
const settle = 1500 * time.Millisecond

type point struct {
	mode                 string
	offered              string
	sent, forwarded      uint64
	pps                  float64
	received, counted    uint64
	named                uint64
	lost, overruns, full uint64
	cpuMicros            int64
	wall                 time.Duration

	bytes, conns           uint64        // counted by podflow
	ctLost, ctDumpErrors   uint64        // conntrack events lost, failed dumps
	ctLostConns, connsFull uint64        // connections that ended unseen; conntrack flows the hand-off dropped
	softirq                time.Duration // of the generator's CPU, from /proc/stat
	genProc                time.Duration // the generator process's CPU time
	window                 time.Duration // between the consumer's first and last report
}

// sub returns the difference of two reports of one consumer.
func (r *report) sub(r0 *report) report {
	return report{
		Received: r.Received - r0.Received, Counted: r.Counted - r0.Counted, Named: r.Named - r0.Named,
		Bytes: r.Bytes - r0.Bytes, Conns: r.Conns - r0.Conns,
		Lost: r.Lost - r0.Lost, Overruns: r.Overruns - r0.Overruns, QueueFull: r.QueueFull - r0.QueueFull,
		ConnsQueueFull: r.ConnsQueueFull - r0.ConnsQueueFull,
		CTEvents:       r.CTEvents - r0.CTEvents, CTLostEvents: r.CTLostEvents - r0.CTLostEvents,
		CTDumpErrors: r.CTDumpErrors - r0.CTDumpErrors, CTLost: r.CTLost - r0.CTLost,
		CPUMicros: r.CPUMicros - r0.CPUMicros,
	}
}

func (b *bench) steady(mode, rate string, d time.Duration) (point, error) {
	r, count := 0, uint64(0)
	if rate != "max" {
		n, err := strconv.Atoi(rate)
		if err != nil {
			return point{mode: mode, offered: rate}, fmt.Errorf("rate %q: %w", rate, err)
		}
		r, count = n, uint64(float64(n)*d.Seconds())
	}
	p, err := b.runOnce([]string{"consume", "-mode", mode, "-group", strconv.Itoa(group), "-rcvbuf", strconv.Itoa(8 << 20)},
		[]string{"gen", "-dst", "10.245.2.2", "-rate", strconv.Itoa(r), "-count", strconv.FormatUint(count, 10), "-duration", d.String()})
	p.mode, p.offered = mode, rate
	return p, err
}

// runOnce starts a consumer with consumerArgs, runs the generator with
// genArgs, waits until everything logged is counted, and returns what
// the router forwarded and what the consumer received, counted and spent.
func (b *bench) runOnce(consumerArgs, genArgs []string) (point, error) {
	return b.run(consumerArgs, genArgs, nil)
}

// run is runOnce with an end condition: after settle, it polls the
// consumer until done says everything sent is counted, or until its
// counts stop moving for stall. Without consumerArgs it runs the
// generator alone (a baseline).
func (b *bench) run(consumerArgs, genArgs []string, done func(r *report, forwarded, sent uint64) bool) (point, error) {
	var p point
	var c *consumer
	if consumerArgs != nil {
		var err error
		if c, err = b.startConsumerArgs(consumerArgs); err != nil {
			return p, err
		}
		defer c.stop()
	}
	f0, err := b.forwarded()
	if err != nil {
		return p, err
	}
	var r0, r1 report
	t0 := time.Now()
	if c != nil {
		if r0, err = c.report(); err != nil {
			return p, err
		}
	}
	si0, err := readSoftirq(b.genCPU())
	if err != nil {
		return p, err
	}
	g, err := b.generateArgs(genArgs)
	if err != nil {
		return p, err
	}
	si1, err := readSoftirq(b.genCPU())
	if err != nil {
		return p, err
	}
	p.softirq = si1 - si0
	if c == nil {
		time.Sleep(200 * time.Millisecond) // nothing to count: the last packets in flight
	} else {
		time.Sleep(settle)
	}
	var f1 uint64
	switch {
	case c != nil && done != nil:
		r1, f1, err = b.await(c, &r0, f0, func(r *report, f uint64) bool { return done(r, f, g.Sent) })
	case c != nil:
		if r1, err = c.report(); err == nil {
			f1, err = b.forwarded()
		}
	default:
		f1, err = b.forwarded()
	}
	if err != nil {
		return p, err
	}
	p.window = time.Since(t0)
	p.sent, p.pps = g.Sent, float64(g.Sent)/g.Seconds
	p.wall = time.Duration(g.Seconds * float64(time.Second)) // the consumer's share of a core while packets flow
	p.forwarded = f1 - f0
	p.genProc = g.CPU
	d := r1.sub(&r0)
	p.received, p.counted, p.named = d.Received, d.Counted, d.Named
	p.lost, p.overruns, p.full = d.Lost, d.Overruns, d.QueueFull
	p.cpuMicros = d.CPUMicros
	p.bytes, p.conns = d.Bytes, d.Conns
	p.ctLost, p.ctDumpErrors, p.ctLostConns, p.connsFull = d.CTLostEvents, d.CTDumpErrors, d.CTLost, d.ConnsQueueFull
	return p, nil
}

// stall is how long a consumer's counts may stand still before await
// gives up on the rest: longer than a dump interval and a conntrack
// timeout plus its garbage collection.
const stall = 4 * time.Second

// await polls the consumer until done is true for its counts since r0,
// or until they have not moved for stall (and two dump intervals).
func (b *bench) await(c *consumer, r0 *report, f0 uint64, done func(*report, uint64) bool) (report, uint64, error) {
	wait := stall + 2*b.dumpInterval
	var last report
	moved := time.Now()
	for {
		r, err := c.report()
		if err != nil {
			return r, 0, err
		}
		if r.Counted != last.Counted || r.Conns != last.Conns || r.Bytes != last.Bytes {
			last, moved = r, time.Now()
		}
		f, err := b.forwarded()
		if err != nil {
			return r, 0, err
		}
		if d := r.sub(r0); done(&d, f-f0) || time.Since(moved) > wait {
			return r, f, nil
		}
		time.Sleep(250 * time.Millisecond)
	}
}

type drain struct {
	mode                      string
	logged, received, counted uint64
	lost, overruns, full      uint64
	cpuMicros                 int64
}

func (b *bench) drain(mode string, burst uint64) (drain, error) {
	dr := drain{mode: mode}
	c, err := b.startConsumer(mode, 256<<20)
	if err != nil {
		return dr, err
	}
	defer c.stop()
	r0, err := c.report()
	if err != nil {
		return dr, err
	}
	f0, err := b.forwarded()
	if err != nil {
		return dr, err
	}
	if err := c.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return dr, err
	}
	if _, err := b.generate(0, burst, time.Minute); err != nil {
		_ = c.cmd.Process.Signal(syscall.SIGCONT)
		return dr, err
	}
	time.Sleep(settle)
	f1, err := b.forwarded()
	if err != nil {
		return dr, err
	}
	if err := c.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		return dr, err
	}
	// Wait until the consumer has drained its buffer: no progress for
	// three polls in a row.
	var last report
	for still := 0; still < 3; {
		time.Sleep(200 * time.Millisecond)
		r, err := c.report()
		if err != nil {
			return dr, err
		}
		if r.Received == last.Received && r.Counted == last.Counted {
			still++
		} else {
			still = 0
		}
		last = r
	}
	dr.logged = f1 - f0
	dr.received, dr.counted = last.Received-r0.Received, last.Counted-r0.Counted
	dr.lost, dr.overruns, dr.full = last.Lost-r0.Lost, last.Overruns-r0.Overruns, last.QueueFull-r0.QueueFull
	dr.cpuMicros = last.CPUMicros - r0.CPUMicros
	return dr, nil
}

func (b *bench) measure(rates, modes []string, d time.Duration, burst uint64) error {
	fmt.Printf("\nReaders: podflow's reader and pipeline next to a bare go-nflog reader, on packet mode's table (NFLOG group %d, queue threshold 16, snaplen 128); "+
		"46-byte UDP packets on 64 flows from one socket, %v per rate\n", group, d)
	var points []point
	for i, rate := range rates {
		order := modes
		if i%2 == 1 { // alternate which consumer goes first
			order = append([]string(nil), modes...)
			for l, r := 0, len(order)-1; l < r; l, r = l+1, r-1 {
				order[l], order[r] = order[r], order[l]
			}
		}
		for _, mode := range order {
			p, err := b.steady(mode, strings.TrimSpace(rate), d)
			if err != nil {
				return fmt.Errorf("%s at %s: %w", mode, rate, err)
			}
			points = append(points, p)
			fmt.Fprintf(os.Stderr, "  %s at %s: forwarded %d, counted %d\n", mode, rate, p.forwarded, p.counted)
		}
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "consumer\toffered\tachieved pps\tforwarded\treceived\tcounted\tmissing\tloss %\tseq lost\tENOBUFS\tqueue full\tCPU µs/pkt\tCPU % of a core\t")
	for i := range points {
		p := &points[i]
		missing := float64(p.forwarded) - float64(p.counted)
		fmt.Fprintf(w, "%s\t%s\t%.0f\t%d\t%d\t%d\t%.0f\t%.3f\t%d\t%d\t%d\t%.2f\t%.1f\t\n",
			p.mode, p.offered, p.pps, p.forwarded, p.received, p.counted, missing,
			100*missing/float64(max(p.forwarded, 1)), p.lost, p.overruns, p.full,
			float64(p.cpuMicros)/float64(max(p.received, 1)), 100*float64(p.cpuMicros)/float64(p.wall.Microseconds()))
	}
	_ = w.Flush()
	if burst == 0 {
		return nil
	}
	fmt.Printf("\ndrain from a full buffer: consumer stopped (SIGSTOP) while %d packets are logged into a 256 MiB socket buffer, then resumed\n", burst)
	w = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "consumer\tlogged\treceived\tcounted\tseq lost\tENOBUFS\tqueue full\tCPU s\tpackets per CPU second\t")
	for _, mode := range modes {
		dr, err := b.drain(mode, burst)
		if err != nil {
			return fmt.Errorf("%s drain: %w", mode, err)
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%.3f\t%.0f\t\n", dr.mode, dr.logged, dr.received, dr.counted, dr.lost, dr.overruns, dr.full,
			float64(dr.cpuMicros)/1e6, float64(dr.received)/(float64(max(dr.cpuMicros, 1))/1e6))
	}
	return w.Flush()
}

// smoke sends n packets at a rate so low that nothing may be lost and
// checks that podflow counted each forwarded packet exactly once.
func (b *bench) smoke(n uint64) error {
	c, err := b.startConsumer("podflow", 8<<20)
	if err != nil {
		return err
	}
	defer c.stop()
	if _, err := b.generate(2000, n, time.Minute); err != nil {
		return err
	}
	f, err := b.forwarded()
	if err != nil {
		return err
	}
	var r report
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if r, err = c.report(); err != nil {
			return err
		}
		if r.Counted >= n {
			break
		}
	}
	if f != n || r.Received != n || r.Counted != n || r.Lost != 0 {
		return fmt.Errorf("sent %d: forwarded %d, received %d, counted %d, lost %d; want all equal and nothing lost", n, f, r.Received, r.Counted, r.Lost)
	}
	return nil
}
