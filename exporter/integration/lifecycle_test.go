//go:build linux

package integration

import (
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/podflow/podflow/exporter/internal/capture/netnstest"
)

// pingCounted pings the server from the client and waits until podflow
// counted the echo requests.
func pingCounted(t *testing.T, tp *topology, d *daemon, n int) {
	t.Helper()
	before, _ := value(mustScrape(d), "podflow_packets_total", labels(0, "ICMP", "original"))
	tp.client.MustRun(t, "ping", "-4", "-n", "-q", "-c", strconv.Itoa(n), "-i", "0.2", serverV4)
	want := before + float64(n)
	deadline := time.Now().Add(15 * time.Second)
	for {
		got, _ := value(mustScrape(d), "podflow_packets_total", labels(0, "ICMP", "original"))
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ICMP packets counted = %v, want %v", got, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func mustScrape(d *daemon) map[string]*dto.MetricFamily {
	mfs, _ := d.scrape()
	return mfs
}

// TestSIGTERMDeletesTable checks the table is in place while podflow
// runs and gone after SIGTERM, with a clean exit.
func TestSIGTERMDeletesTable(t *testing.T) { eachMode(t, testSIGTERMDeletesTable) }

func testSIGTERMDeletesTable(t *testing.T, m captureMode) {
	tp := newTopology(t)
	d := startPodflow(t, tp.node, "127.0.0.1:9810", m.flags()...)
	d.waitReady()
	if !hasTable(t, tp.node) {
		t.Fatal("no table inet podflow while podflow runs")
	}
	pingCounted(t, tp, d, 2)
	d.signal(syscall.SIGTERM)
	if code := d.wait(20 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM; log:\n%s", code, d.log.String())
	}
	// Connection mode reads the live connections' counters once more
	// before it stops capturing.
	if m == connectionMode && !strings.Contains(d.log.String(), "read the live connections' counters a last time") {
		t.Errorf("podflow stopped without a last dump; log:\n%s", d.log.String())
	}
	if hasTable(t, tp.node) {
		t.Fatal("table inet podflow left behind after SIGTERM")
	}
}

// TestKillAndRestart checks that after kill -9 the kernel deletes the
// table (it belongs to podflow's netlink socket), a new instance installs
// it again and counting resumes.
func TestKillAndRestart(t *testing.T) { eachMode(t, testKillAndRestart) }

func testKillAndRestart(t *testing.T, m captureMode) {
	tp := newTopology(t)
	d := startPodflow(t, tp.node, "127.0.0.1:9810", m.flags()...)
	d.waitReady()
	pingCounted(t, tp, d, 2)
	d.signal(syscall.SIGKILL)
	d.wait(10 * time.Second)
	if hasTable(t, tp.node) {
		t.Fatal("table inet podflow outlived the podflow that owned it")
	}
	d2 := startPodflow(t, tp.node, "127.0.0.1:9810", m.flags()...)
	d2.waitReady()
	if n := strings.Count(tp.node.MustRun(t, "nft", "list", "tables"), "table inet podflow"); n != 1 {
		t.Fatalf("%d podflow tables after restart, want 1", n)
	}
	pingCounted(t, tp, d2, 3)
	d2.signal(syscall.SIGTERM)
	if code := d2.wait(20 * time.Second); code != 0 || hasTable(t, tp.node) {
		t.Fatalf("exit code %d, table left %v", code, hasTable(t, tp.node))
	}
}

// TestSecondInstance checks that a second podflow on the same node (a
// botched upgrade, a debug run) fails clearly without touching the first
// one's table: it cannot bind the NFLOG group, says so and exits, and the
// first keeps counting exactly, its table never missing or rebuilt.
func TestSecondInstance(t *testing.T) { eachMode(t, testSecondInstance) }

func testSecondInstance(t *testing.T, m captureMode) {
	tp := newTopology(t)
	first := startPodflow(t, tp.node, "127.0.0.1:9810", append(m.flags(), "--nftables.resync-interval=1s")...)
	first.waitReady()
	pingCounted(t, tp, first, 2)
	table := tp.node.MustRun(t, "nft", "list", "table", "inet", "podflow")

	second := startPodflow(t, tp.node, "127.0.0.1:9811", m.flags()...)
	if code := second.wait(60 * time.Second); code != 1 {
		t.Fatalf("the second podflow exited with %d, want 1; log:\n%s", code, second.log.String())
	}
	for _, msg := range []string{"NFLOG group 100 is in use by another process", "is another podflow running on this node?"} {
		if !strings.Contains(second.log.String(), msg) {
			t.Errorf("the second podflow's log does not say %q:\n%s", msg, second.log.String())
		}
	}
	if got := tp.node.MustRun(t, "nft", "list", "table", "inet", "podflow"); got != table {
		t.Errorf("the second podflow changed the table:\n%s\nwas:\n%s", got, table)
	}

	// The first keeps counting, exactly, and never had to rebuild.
	pingCounted(t, tp, first, 3)
	mfs := mustScrape(first)
	for result, want := range map[string]float64{"reinstall": 0, "error": 0} {
		if v, ok := value(mfs, "podflow_nftables_syncs_total", map[string]string{"result": result}); !ok || v != want {
			t.Errorf("first podflow_nftables_syncs_total{result=%q} = %v (present %v), want %v", result, v, ok, want)
		}
	}
	if v, _ := value(mfs, "podflow_capture_bound", nil); v != 1 {
		t.Errorf("first podflow_capture_bound = %v, want 1", v)
	}
}

// TestBadStartLeavesNoTable checks that a bad flag value and an
// unreadable web config fail with a clear message, a non-zero exit and
// no table.
func TestBadStartLeavesNoTable(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, nsPrefix+"bad-")
	ids := writeFile(t, "identities.yml", identities)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bad flag value", []string{"--identity.file=" + ids, "--nflog.group=seventy"}, `--nflog.group="seventy"`},
		{"bad duration", []string{"--identity.file=" + ids, "--metrics.idle-timeout=often"}, `--metrics.idle-timeout="often"`},
		{"unreadable web config", []string{"--identity.file=" + ids, "--web.config.file=/nonexistent/web.yml"}, "/nonexistent/web.yml"},
		{"bad web config", []string{"--identity.file=" + ids, "--web.config.file=" + writeFile(t, "web.yml", "tls_server_config: [\n")}, "web.config.file"},
		{"bad identity file", []string{"--identity.file=" + writeFile(t, "bad.yml", "endpoints:\n  - addresses: [10.0.0.300]\n")}, "line 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := ns.Command(append([]string{podflowBinary(t), "--web.listen-address=127.0.0.1:9810"}, tc.args...)...)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if err == nil || !errors.As(err, &exit) || exit.ExitCode() == 0 {
				t.Fatalf("exit %v, want non-zero; output:\n%s", err, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("output does not mention %q:\n%s", tc.want, out)
			}
			if hasTable(t, ns) {
				t.Fatal("a failed start left table inet podflow behind")
			}
		})
	}
}

// TestVersion checks --version prints the build and exits 0 without
// touching the kernel.
func TestVersion(t *testing.T) {
	netnstest.RequireRoot(t)
	out, err := exec.Command(podflowBinary(t), "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "podflow, version") || !strings.Contains(string(out), "go version:") {
		t.Fatalf("--version: %v\n%s", err, out)
	}
}
