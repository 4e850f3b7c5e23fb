package harness

import (
	"fmt"
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
