package main

import (
	"os"
	"testing"

	"github.com/podflow/podflow/exporter/internal/capture/netnstest"
)

// TestMain lets the benchmark re-execute the test binary as its generator
// and consumer, as it does with its own binary.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && (os.Args[1] == "gen" || os.Args[1] == "consume") {
		os.Exit(run(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// TestSmoke runs the whole benchmark topology at a rate too low to lose
// anything and checks that podflow counts every forwarded packet once.
// It asserts counts, not timings.
func TestSmoke(t *testing.T) {
	netnstest.RequireRoot(t)
	if testing.Short() {
		t.Skip("skipped in -short mode")
	}
	if code := run([]string{"-smoke", "1000"}); code != 0 {
		t.Fatalf("sysbench -smoke 1000 exited %d", code)
	}
}

// TestServicesSmoke opens connections to an address the router
// translates, with Service naming on: each connection's packet is logged
// before and after DNAT, counted once, under its Service.
func TestServicesSmoke(t *testing.T) {
	netnstest.RequireRoot(t)
	if testing.Short() {
		t.Skip("skipped in -short mode")
	}
	if code := run([]string{"-services-smoke", "200"}); code != 0 {
		t.Fatalf("sysbench -services-smoke 200 exited %d", code)
	}
}

// TestConnectionSmoke runs the topology with podflow in connection mode
// at a rate too low to lose anything, on one long flow and on short ones
// (a new connection every 10 packets): every packet, byte and connection
// is counted once, from conntrack accounting (dumped every second) and the
// logged first packets.
func TestConnectionSmoke(t *testing.T) {
	netnstest.RequireRoot(t)
	if testing.Short() {
		t.Skip("skipped in -short mode")
	}
	if code := run([]string{"-connection-smoke", "1000", "-dump-interval", "1s"}); code != 0 {
		t.Fatalf("sysbench -connection-smoke 1000 -dump-interval 1s exited %d", code)
	}
}
