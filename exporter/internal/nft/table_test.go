package nft

import (
	"context"
	"errors"
	"flag"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables/expr"
	"github.com/podflow/podflow/exporter/internal/capture/netnstest"
)

var update = flag.Bool("update", false, "rewrite the golden testdata/*.nft files")

func TestRulesOnlyReturn(t *testing.T) {
	for _, connection := range []bool{false, true} {
		cfg := DefaultConfig()
		cfg.SampleRate = 3
		cfg.PreDNAT = true
		cfg.Connection = connection
		rulesOnlyReturn(t, &cfg)
	}
}

func rulesOnlyReturn(t *testing.T, cfg *Config) {
	t.Helper()
	for _, r := range buildSpec(cfg).rules {
		for _, e := range r.Exprs {
			v, ok := e.(*expr.Verdict)
			switch {
			case !ok, v.Kind == expr.VerdictReturn:
			case v.Kind == expr.VerdictGoto && v.Chain == chainDNAT && r.Chain.Name != chainDNAT:
				// A goto to the table's own log chain: its rules return.
			case v.Kind == expr.VerdictJump && v.Chain == chainRelated && r.Chain.Name != chainRelated,
				v.Kind == expr.VerdictGoto && v.Chain == chainICMPError && r.Chain.Name == chainRelated:
				// Connection mode's ICMP errors: their rules return to the
				// base chain, whose next rule returns.
			default:
				t.Errorf("rule in %s sets verdict %v; podflow must never change a verdict", r.Chain.Name, v.Kind)
			}
		}
	}
}

// progname is the comment nft adds to an owned table: the name of the
// owning process, which is the test binary here.
var progname = regexp.MustCompile(` # progname \S+`)

func listTable(t *testing.T, ns *netnstest.NS) string {
	t.Helper()
	return progname.ReplaceAllString(ns.MustRun(t, "nft", "list", "table", "inet", TableName), "")
}

// withOwnerFlag adds the owner flag to the listing of a table installed
// without it, to compare it with the golden files.
func withOwnerFlag(listing string) string {
	return strings.Replace(listing, "table inet podflow {\n", "table inet podflow {\n\tflags owner\n\n", 1)
}

func compareGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("nft list table inet %s differs from %s (run with -update after checking):\n--- got\n%s\n--- want\n%s", TableName, path, got, want)
	}
}

func TestInstallGolden(t *testing.T) {
	for _, tc := range []struct {
		golden string
		cfg    func() Config
	}{
		{"default.nft", DefaultConfig},
		{"services.nft", func() Config {
			c := DefaultConfig()
			c.PreDNAT = true
			return c
		}},
		{"connection.nft", func() Config {
			c := DefaultConfig()
			c.Connection = true
			return c
		}},
		{"connection-services.nft", func() Config {
			c := DefaultConfig()
			c.Connection = true
			c.PreDNAT = true
			return c
		}},
		{"sampled.nft", func() Config {
			c := DefaultConfig()
			c.SampleRate = 10
			c.Group = 7
			c.SnapLen = 96
			c.QueueThreshold = 64
			c.Overlays = []Overlay{{"vxlan", 17, 4789}, {"ipip", 4, 0}}
			return c
		}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			ns := netnstest.New(t, "pfcap-")
			cfg := tc.cfg()
			cfg.NetNS = ns.FD
			tbl := New(cfg, nil)
			if err := tbl.Install(); err != nil {
				t.Fatal(err)
			}
			compareGolden(t, tc.golden, listTable(t, ns))
			if s := tbl.Stats(); s.SyncsOK != 1 || s.SyncsError != 0 || !s.Installed {
				t.Errorf("Stats() = %+v, want one successful sync", s)
			}
		})
	}
}

func TestInstallReplacesLeftover(t *testing.T) {
	ns := netnstest.New(t, "pfcap-")
	// A leftover from a crashed run with another configuration, and an
	// unrelated table that must survive.
	ns.MustRun(t, "nft", "add table inet podflow; add chain inet podflow stale { type filter hook forward priority 0; }; add rule inet podflow stale counter")
	ns.MustRun(t, "nft", "add table inet other; add chain inet other keep; add rule inet other keep counter")
	cfg := DefaultConfig()
	cfg.NetNS = ns.FD
	tbl := New(cfg, nil)
	for range 2 {
		if err := tbl.Install(); err != nil {
			t.Fatal(err)
		}
		compareGolden(t, "default.nft", listTable(t, ns))
	}
	if out := ns.MustRun(t, "nft", "list", "table", "inet", "other"); !strings.Contains(out, "chain keep") {
		t.Errorf("the unrelated table changed:\n%s", out)
	}
	if err := tbl.Delete(); err != nil {
		t.Fatal(err)
	}
	if out, err := ns.Run("nft", "list", "table", "inet", TableName); err == nil {
		t.Errorf("table still there after Delete:\n%s", out)
	}
	if err := tbl.Delete(); err != nil {
		t.Errorf("deleting a missing table: %v", err)
	}
	if out := ns.MustRun(t, "nft", "list", "tables"); strings.TrimSpace(out) != "table inet other" {
		t.Errorf("tables after Delete = %q, want only inet other", out)
	}
}

// TestOwnedTable checks the owner flag: another process can neither
// delete nor change the table, and the table goes with the socket that
// owns it (a crash), after which a check puts it back.
func TestOwnedTable(t *testing.T) {
	ns := netnstest.New(t, "pfcap-")
	cfg := DefaultConfig()
	cfg.NetNS = ns.FD
	tbl := New(cfg, nil)
	if err := tbl.Install(); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"delete table inet podflow", "insert rule inet podflow input counter", "flush table inet podflow"} {
		if out, err := ns.Run("nft", cmd); err == nil || !strings.Contains(out, "Operation not permitted") {
			t.Errorf("nft %s: %v %s; want EPERM", cmd, err, out)
		}
	}
	compareGolden(t, "default.nft", listTable(t, ns))
	// Flushing the ruleset, as a firewall reload does, skips it.
	ns.MustRun(t, "nft", "flush", "ruleset")
	compareGolden(t, "default.nft", listTable(t, ns))

	// A second podflow's table is refused: it cannot replace the first.
	second := New(cfg, nil)
	if err := second.Install(); err == nil || !strings.Contains(err.Error(), "another process owns it") {
		t.Errorf("second Install = %v, want refused", err)
	}
	if err := second.Delete(); err != nil {
		t.Errorf("second Delete (nothing installed): %v", err)
	}
	compareGolden(t, "default.nft", listTable(t, ns))

	// The owner's socket closes (as when podflow is killed): the kernel
	// deletes the table, and the next check rebuilds it.
	_ = tbl.own.close()
	if out, err := ns.Run("nft", "list", "table", "inet", TableName); err == nil {
		t.Fatalf("table still there after its owner socket closed:\n%s", out)
	}
	tbl.Assert()
	compareGolden(t, "default.nft", listTable(t, ns))
	if s := tbl.Stats(); s.SyncsOK != 1 || s.SyncsReinstall != 1 || s.SyncsError != 0 || !s.Installed {
		t.Errorf("Stats() = %+v, want one install and one reinstall", s)
	}
	if err := tbl.Delete(); err != nil {
		t.Fatal(err)
	}
	if out, err := ns.Run("nft", "list", "table", "inet", TableName); err == nil {
		t.Errorf("table still there after Delete:\n%s", out)
	}
}

// TestRunReassertsAndKeepsCountersMonotonic runs without the owner flag,
// as on a kernel older than 5.12, where other agents can delete or edit
// the table.
func TestRunReassertsAndKeepsCountersMonotonic(t *testing.T) {
	ns := netnstest.New(t, "pfcap-")
	cfg := DefaultConfig()
	cfg.NetNS = ns.FD
	tbl := New(cfg, nil)
	tbl.ownerless = true
	if err := tbl.Install(); err != nil {
		t.Fatal(err)
	}
	// VXLAN packets through the postrouting chain: UDP to 4789 leaves
	// through a veth (lo is skipped).
	ns.MustRun(t, "ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1")
	ns.MustRun(t, "ip", "addr", "add", "192.0.2.1/24", "dev", "v0")
	ns.MustRun(t, "ip", "link", "set", "v0", "up")
	ns.MustRun(t, "ip", "link", "set", "v1", "up")
	send := func(n int) {
		for range n {
			ns.MustRun(t, "bash", "-c", "echo x >/dev/udp/192.0.2.2/4789")
		}
	}
	send(3)
	tbl.Assert()
	if got := tbl.Stats().Overlays["vxlan"]; got != 3 {
		t.Fatalf("vxlan packets = %d, want 3", got)
	}

	// Another agent deletes the table: Run puts it back.
	ns.MustRun(t, "nft", "delete", "table", "inet", TableName)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tbl.Run(ctx, 20*time.Millisecond); close(done) }()
	waitFor(t, func() bool { _, err := ns.Run("nft", "list", "table", "inet", TableName); return err == nil })
	cancel()
	<-done
	compareGolden(t, "default.nft", withOwnerFlag(listTable(t, ns)))

	// Another agent edits it: the next assert rebuilds it.
	send(2)
	ns.MustRun(t, "nft", "insert", "rule", "inet", TableName, ChainInput, "counter")
	tbl.Assert()
	compareGolden(t, "default.nft", withOwnerFlag(listTable(t, ns)))
	send(1)
	tbl.Assert()
	s := tbl.Stats()
	// 3 before the deletion (lost counts of a deleted table are gone), 2
	// before the rebuild, 1 after.
	if got := s.Overlays["vxlan"]; got != 6 {
		t.Errorf("vxlan packets = %d, want 6 (monotonic across rebuilds)", got)
	}
	// The deletion and the edit each cost one reinstall; every other
	// check found the table as built.
	if s.SyncsOK < 3 || s.SyncsReinstall != 2 || s.SyncsError != 0 || !s.Installed {
		t.Errorf("Stats() = %+v, want >= 3 successful syncs, 2 reinstalls and no error", s)
	}
	if _, ok := s.Overlays["geneve"]; !ok {
		t.Errorf("Stats().Overlays lacks geneve: %v", s.Overlays)
	}
}

// TestStatsNeverWaitsForNetlink checks that Stats, read on every scrape
// and readiness check, returns while netlink work holds the table.
func TestStatsNeverWaitsForNetlink(t *testing.T) {
	tbl := New(DefaultConfig(), nil)
	tbl.io.Lock() // an install or check stuck in the kernel
	defer tbl.io.Unlock()
	done := make(chan Stats)
	go func() { done <- tbl.Stats() }()
	select {
	case s := <-done:
		if s.Installed {
			t.Errorf("Stats() = %+v before any install", s)
		}
	case <-time.After(30 * time.Second): // a deadlock guard, not a timing
		t.Fatal("Stats waited for the netlink lock")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestReturnKeepsOtherVerdicts checks that podflow's rules never decide a
// packet's fate: return from a base chain applies the chain's policy,
// accept, which only hands the packet to the next chain on the hook. A
// drop in another table after podflow's chain (priority 200) still drops,
// and packets it accepts still pass, whatever log rule matched them.
func TestReturnKeepsOtherVerdicts(t *testing.T) {
	a := netnstest.New(t, "pfct-")
	b := netnstest.New(t, "pfct-")
	if err := netnstest.Link(a, "a0", []string{"192.0.2.1/24"}, b, "b0", []string{"192.0.2.2/24"}); err != nil {
		t.Fatal(err)
	}
	// A static neighbour: no packet waits for ARP.
	bmac := strings.TrimSpace(b.MustRun(t, "cat", "/sys/class/net/b0/address"))
	a.MustRun(t, "ip", "neigh", "replace", "192.0.2.2", "lladdr", bmac, "dev", "a0", "nud", "permanent")
	cfg := DefaultConfig()
	cfg.NetNS = a.FD
	// The table lives as long as the Table that owns it.
	tbl := New(cfg, nil)
	if err := tbl.Install(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tbl.Delete() }()
	// The other table drops UDP to 9999 after podflow's chain has logged
	// and returned; a counter of its own in b counts what arrives.
	a.MustRun(t, "nft", "add table inet pfcttest; add chain inet pfcttest out { type filter hook postrouting priority 200; policy accept; }; add rule inet pfcttest out udp dport 9999 drop")
	b.MustRun(t, "nft", "add table inet pfcttest; add counter inet pfcttest dropped; add counter inet pfcttest passed; add chain inet pfcttest in { type filter hook prerouting priority 0; }; add rule inet pfcttest in udp dport 9999 counter name dropped; add rule inet pfcttest in udp dport 9998 counter name passed")
	// Untracked packets take the last log rule, tracked ones the others.
	a.MustRun(t, "nft", "add table inet pfctraw; add chain inet pfctraw raw { type filter hook output priority raw; }; add rule inet pfctraw raw udp dport { 9999, 9998 } udp sport 7000 notrack")
	for _, src := range []int{7000, 7001} {
		var c *net.UDPConn
		if err := a.Do(func() (err error) { c, err = net.ListenUDP("udp4", &net.UDPAddr{Port: src}); return err }); err != nil {
			t.Fatal(err)
		}
		for _, port := range []int{9999, 9998} {
			for range 3 {
				_, err := c.WriteToUDP([]byte("x"), &net.UDPAddr{IP: net.IPv4(192, 0, 2, 2), Port: port})
				// A locally sent packet that a chain drops fails with
				// EPERM: the other table's drop took effect.
				if dropped := port == 9999; dropped != errors.Is(err, syscall.EPERM) || (!dropped && err != nil) {
					t.Errorf("send from %d to %d: %v", src, port, err)
				}
			}
		}
		c.Close()
	}
	// Delivery over the veth runs in softirq, after nc returns.
	count := func(name string) string { return b.MustRun(t, "nft", "list", "counter", "inet", "pfcttest", name) }
	waitFor(t, func() bool { return strings.Contains(count("passed"), "packets 6 ") })
	if out := count("dropped"); !strings.Contains(out, "packets 0 ") {
		t.Errorf("the other table's drop was overridden; the peer received:\n%s", out)
	}
}

// TestConnectionModeSwitchesAccountingOn checks that the table of
// connection mode turns conntrack accounting on in its namespace by
// itself, without writing the sysctl (read-only in a container).
func TestConnectionModeSwitchesAccountingOn(t *testing.T) {
	ns := netnstest.New(t, "pfcap-")
	acct := func() string {
		return strings.TrimSpace(ns.MustRun(t, "sh", "-c", "cat /proc/sys/net/netfilter/nf_conntrack_acct 2>/dev/null || echo missing"))
	}
	before := acct()
	if before == "1" {
		t.Skip("skipped: accounting is already on in a new namespace here")
	}
	for _, connection := range []bool{false, true} {
		cfg := DefaultConfig()
		cfg.NetNS = ns.FD
		cfg.Connection = connection
		tbl := New(cfg, nil)
		if err := tbl.Install(); err != nil {
			t.Fatal(err)
		}
		got := acct()
		if err := tbl.Delete(); err != nil {
			t.Fatal(err)
		}
		if want := map[bool]string{false: "0", true: "1"}[connection]; got != want {
			t.Errorf("connection mode %v: nf_conntrack_acct = %s after the install (%s before), want %s", connection, got, before, want)
		}
	}
}
