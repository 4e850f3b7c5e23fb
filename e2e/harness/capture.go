package harness

import (
	"fmt"
	"syscall"
	"time"
)

// Capture modes of podflow the sandbox runs it in (--capture.mode).
const (
	// CapturePacket: every packet is logged to podflow and counted as it
	// passes.
	CapturePacket = "packet"
	// CaptureConnection: only what starts a connection is logged; bytes
	// and packets come from conntrack's accounting, read at the end of
	// each connection and every ConntrackDumpInterval.
	CaptureConnection = "connection"
)

// ConntrackDumpInterval is podflow's --conntrack.dump-interval in
// connection mode: short, so that the counts of a connection that is still
// open settle within a scrape or two (the default is 10s).
const ConntrackDumpInterval = 2 * time.Second

// ConnectionMode reports whether podflow counts from conntrack's accounting.
func (e *Env) ConnectionMode() bool { return e.CaptureMode == CaptureConnection }

// CountsSettle is how long after a flow's last packet podflow's counters
// may still move: nothing in packet mode (podflow drains the log at once),
// a dump interval in connection mode while the connection is in the
// conntrack table.
func (e *Env) CountsSettle() time.Duration {
	if e.ConnectionMode() {
		return ConntrackDumpInterval
	}
	return 0
}

// PauseScrapes stops Prometheus (SIGSTOP) until the returned function
// resumes it (SIGCONT); pauses nest. In connection mode the packets of
// Prometheus' scrapes reach podflow's counters only at the next dump, so
// a reading of podflow that nets them out against the kernel's own count
// holds still only while no scrape runs.
func (e *Env) PauseScrapes() (resume func(), err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.Prom == nil || e.Prom.Proc == nil {
		return func() {}, nil
	}
	pid := e.Prom.Proc.PID()
	if e.scrapePauses == 0 {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			return nil, fmt.Errorf("pause prometheus: %w", err)
		}
	}
	e.scrapePauses++
	done := false
	return func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		if done {
			return
		}
		done = true
		e.scrapePauses--
		if e.scrapePauses == 0 {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}, nil
}

// captureArgs are the capture flags of every node's podflow.
func (e *Env) captureArgs() []string {
	switch e.CaptureMode {
	case "":
		return nil
	case CaptureConnection:
		return []string{"--capture.mode=" + CaptureConnection, fmt.Sprintf("--conntrack.dump-interval=%v", ConntrackDumpInterval)}
	default:
		return []string{"--capture.mode=" + e.CaptureMode}
	}
}
