package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of /proc/stat: USER_HZ, 100 on every Linux
// architecture podflow runs on.
const userHZ = 100

// readSoftirq reads the time CPU n (all CPUs when n is negative) spent
// in softirq, where the kernel forwards, tracks and logs packets, from
// /proc/stat. Unless the kernel is built with IRQ time accounting it
// samples it at each tick, so short runs are coarse.
func readSoftirq(n int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	name := "cpu"
	if n >= 0 {
		name += strconv.Itoa(n)
	}
	for line := range strings.Lines(string(b)) {
		// cpuN user nice system idle iowait irq softirq ...
		f := strings.Fields(line)
		if len(f) < 8 || f[0] != name {
			continue
		}
		v, err := strconv.ParseInt(f[7], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat %s: %w", name, err)
		}
		return time.Duration(v) * time.Second / userHZ, nil
	}
	return 0, fmt.Errorf("/proc/stat has no %s line", name)
}

// genCPU is the CPU the generator runs on, where the router's forwarding
// runs too (in the softirq of the generator's sends); -1 when it is not
// pinned.
func (b *bench) genCPU() int {
	if b.pin {
		return 0
	}
	return -1
}

// loadavg returns the first three fields of /proc/loadavg.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// header prints what the run measures on.
func (b *bench) header() {
	release := "unknown"
	if v, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		release = strings.TrimSpace(string(v))
	}
	fmt.Printf("podflow system benchmark: generator -> router -> sink, %d CPUs, Linux %s, generator pinned to CPU0 and consumer to CPU1: %v; load average at the start: %s\n\n",
		runtime.NumCPU(), release, b.pin, loadavg())
}
