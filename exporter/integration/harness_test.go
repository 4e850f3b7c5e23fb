//go:build linux

// Package integration runs the real podflow binary in throwaway network
// namespaces: a "node" namespace that routes between "pod" namespaces,
// real traffic of known size, and the scraped counters compared with
// what was sent and with the kernel's own counters. Every test needs
// root and skips without it.
package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/podflow/podflow/exporter/internal/capture/netnstest"
)

// nsPrefix names every namespace these tests create.
const nsPrefix = "pfint-"

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// podflowBinary builds the daemon once per test run.
func podflowBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "podflow-integration-")
		if buildErr != nil {
			return
		}
		binary = filepath.Join(buildDir, "podflow")
		cmd := exec.Command("go", "build", "-o", binary, "github.com/podflow/podflow/exporter/cmd/podflow")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %w: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

// topology is a node namespace routing between two pod namespaces.
type topology struct {
	node, client, server *netnstest.NS
}

const (
	clientV4, clientV6 = "10.99.1.2", "fd99:1::2"
	serverV4, serverV6 = "10.99.2.2", "fd99:2::2"
)

// identities names the pods and the node for podflow.
const identities = `endpoints:
  - addresses: [10.99.1.2, "fd99:1::2"]
    namespace: alpha
    workload: client
    kind: Deployment
    pod: client-7d9c-x1
    node: node-1
  - addresses: [10.99.2.2, "fd99:2::2"]
    namespace: beta
    workload: server
    kind: StatefulSet
    pod: server-0
    node: node-1
  - addresses: [10.99.1.1, 10.99.2.1, "fd99:1::1", "fd99:2::1"]
    workload: node-1
    kind: Node
`

func newTopology(t *testing.T) *topology { return buildTopology(t, true) }

// newTopologyV4 is a topology without IPv6, whose node namespace sends
// nothing on its own (no neighbour discovery, no MLD reports).
func newTopologyV4(t *testing.T) *topology { return buildTopology(t, false) }

func buildTopology(t *testing.T, ipv6 bool) *topology {
	t.Helper()
	netnstest.RequireRoot(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("skipped: nft(8) is not installed")
	}
	tp := &topology{
		node:   netnstest.New(t, nsPrefix+"node-"),
		client: netnstest.New(t, nsPrefix+"cli-"),
		server: netnstest.New(t, nsPrefix+"srv-"),
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	addrs := func(v4, v6 string) []string {
		if ipv6 {
			return []string{v4, v6}
		}
		return []string{v4}
	}
	if !ipv6 {
		for _, ns := range []*netnstest.NS{tp.node, tp.client, tp.server} {
			ns.MustRun(t, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
		}
	}
	must(netnstest.Link(tp.node, "pfc0", addrs("10.99.1.1/24", "fd99:1::1/64"), tp.client, "eth0", addrs(clientV4+"/24", clientV6+"/64")))
	must(netnstest.Link(tp.node, "pfs0", addrs("10.99.2.1/24", "fd99:2::1/64"), tp.server, "eth0", addrs(serverV4+"/24", serverV6+"/64")))
	// The exact tests compare podflow with the kernel's own counters,
	// which count a segmentation offload super-packet once: with offload
	// off every packet is a wire packet. TestSegmentationOffload turns it
	// on again.
	for _, l := range tp.links() {
		setOffload(t, l.ns, l.ifc, "tso", "off", "gso", "off", "gro", "off")
	}
	tp.node.MustRun(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	if ipv6 {
		tp.node.MustRun(t, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
	}
	for _, r := range []struct {
		ns     *netnstest.NS
		v4, v6 string
	}{{tp.client, "10.99.1.1", "fd99:1::1"}, {tp.server, "10.99.2.1", "fd99:2::1"}} {
		r.ns.MustRun(t, "ip", "route", "add", "default", "via", r.v4)
		if ipv6 {
			r.ns.MustRun(t, "ip", "-6", "route", "add", "default", "via", r.v6)
		}
	}
	// A Kubernetes node always tracks connections (kube-proxy); so does
	// this one, through a table of the test's own.
	if out, err := nftApply(tp.node, "table inet pfint_ct {\n chain pre {\n  type filter hook prerouting priority 0; policy accept;\n  ct state new counter\n }\n}\n"); err != nil {
		t.Logf("no conntrack in the node namespace (%v: %s); podflow orients by packet heuristics", err, out)
	}
	return tp
}

type link struct {
	ns  *netnstest.NS
	ifc string
}

// links returns both ends of the topology's two veth pairs.
func (tp *topology) links() []link {
	return []link{{tp.node, "pfc0"}, {tp.client, "eth0"}, {tp.node, "pfs0"}, {tp.server, "eth0"}}
}

// setOffload sets offload features of ifc in ns (ethtool -K).
func setOffload(t *testing.T, ns *netnstest.NS, ifc string, features ...string) {
	t.Helper()
	if _, err := exec.LookPath("ethtool"); err != nil {
		t.Fatal("ethtool(8) is needed to set the veths' segmentation offload (Debian package ethtool)")
	}
	ns.MustRun(t, append([]string{"ethtool", "-K", ifc}, features...)...)
}

func nftApply(ns *netnstest.NS, ruleset string) (string, error) {
	cmd := ns.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// hasTable reports whether the node namespace holds inet podflow.
func hasTable(t *testing.T, ns *netnstest.NS) bool {
	t.Helper()
	out := ns.MustRun(t, "nft", "list", "tables")
	return strings.Contains(out, "table inet podflow")
}

// captureMode is one way podflow counts (--capture.mode). The exact-count
// tests run once in each, as subtests named after it, and expect the
// same counters from both.
type captureMode string

const (
	packetMode     captureMode = "packet"
	connectionMode captureMode = "connection"
)

// ctDumpInterval is the tests' --conntrack.dump-interval: short, so that
// the counters of live connections arrive within the tests' waits.
const ctDumpInterval = "500ms"

// flags returns podflow's flags for the mode.
func (m captureMode) flags() []string {
	if m == connectionMode {
		return []string{"--capture.mode=connection", "--conntrack.dump-interval=" + ctDumpInterval}
	}
	return []string{"--capture.mode=packet"}
}

// testModes are the modes the tests run in: both, or those named in
// PODFLOW_TEST_MODES (comma-separated), to run one alone.
func testModes() []captureMode {
	env := os.Getenv("PODFLOW_TEST_MODES")
	if env == "" {
		return []captureMode{packetMode, connectionMode}
	}
	var ms []captureMode
	for _, m := range strings.Split(env, ",") {
		ms = append(ms, captureMode(strings.TrimSpace(m)))
	}
	return ms
}

// eachMode runs test once per capture mode, as a subtest named after it.
func eachMode(t *testing.T, test func(t *testing.T, m captureMode)) {
	for _, m := range testModes() {
		t.Run(string(m), func(t *testing.T) { test(t, m) })
	}
}

// daemon is one running podflow.
type daemon struct {
	t    *testing.T
	ns   *netnstest.NS
	cmd  *exec.Cmd
	log  *lockedBuffer
	addr string
	done chan struct{}
	err  error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// writeFile writes content into the test's temporary directory.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startPodflow runs podflow in ns, listening on addr, with the test's
// identities and extra flags (which replace the defaults they name). It is
// stopped (SIGKILL) when the test ends if it still runs.
func startPodflow(t *testing.T, ns *netnstest.NS, addr string, extra ...string) *daemon {
	t.Helper()
	var args []string
	for _, def := range []string{
		"--web.listen-address=" + addr,
		"--identity.file=" + writeFile(t, "identities.yml", identities),
		"--kube.node-name=node-1",
		"--log.level=debug",
	} {
		name, _, _ := strings.Cut(def, "=")
		if !slices.ContainsFunc(extra, func(e string) bool { return strings.HasPrefix(e, name+"=") }) {
			args = append(args, def)
		}
	}
	return runPodflow(t, ns, addr, "podflow", append(args, extra...)...)
}

// runPodflow starts the podflow binary in ns with args, serving on addr.
// It is killed when the test ends if it still runs, and its log, named
// after what, is printed when the test failed.
func runPodflow(t *testing.T, ns *netnstest.NS, addr, what string, args ...string) *daemon {
	t.Helper()
	d := &daemon{t: t, ns: ns, addr: addr, log: &lockedBuffer{}, done: make(chan struct{})}
	d.cmd = ns.Command(append([]string{podflowBinary(t)}, args...)...)
	if slices.Contains(args, "--capture.mode=connection") {
		// As in the DaemonSet's container, /proc/sys is read-only: the
		// table, not the sysctl, must switch conntrack accounting on. ip
		// netns exec runs the command in a mount namespace of its own,
		// and exec keeps podflow's PID the one signals go to.
		d.cmd = ns.Command(append([]string{"sh", "-c", `mount -o bind,ro /proc/sys /proc/sys && exec "$0" "$@"`, podflowBinary(t)}, args...)...)
	}
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		if !d.exited() {
			_ = d.cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", what, d.log.String())
		}
	})
	return d
}

func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// wait waits for the process to exit and returns its exit code.
func (d *daemon) wait(timeout time.Duration) int {
	d.t.Helper()
	select {
	case <-d.done:
	case <-time.After(timeout):
		d.t.Fatalf("podflow did not exit within %v; log:\n%s", timeout, d.log.String())
	}
	return d.cmd.ProcessState.ExitCode()
}

// signal sends sig to podflow. ip netns exec runs it in place (exec), so
// the process is podflow itself.
func (d *daemon) signal(sig syscall.Signal) {
	d.t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		d.t.Fatal(err)
	}
}

// client returns an HTTP client whose connections are made in ns.
func httpClient(ns *netnstest.NS) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				var c net.Conn
				err := ns.Do(func() error {
					var err error
					c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
					return err
				})
				return c, err
			},
		},
	}
}

// get fetches a path from podflow and returns the status and body.
func (d *daemon) get(path string) (int, string, error) {
	resp, err := httpClient(d.ns).Get("http://" + d.addr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// waitReady waits until /readyz answers 200.
func (d *daemon) waitReady() {
	d.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body, err := d.get("/readyz")
		if err == nil && code == http.StatusOK {
			return
		}
		if d.exited() {
			d.t.Fatalf("podflow exited (%v); log:\n%s", d.err, d.log.String())
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("podflow not ready: %d %q %v; log:\n%s", code, body, err, d.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// scrape returns /metrics parsed.
func (d *daemon) scrape() (map[string]*dto.MetricFamily, string) {
	d.t.Helper()
	code, body, err := d.get("/metrics")
	if err != nil || code != http.StatusOK {
		d.t.Fatalf("scrape: %d %v", code, err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		d.t.Fatalf("parsing the scrape: %v", err)
	}
	return mfs, body
}

// value returns the value of the series of name whose labels include
// match, and whether it exists.
func value(mfs map[string]*dto.MetricFamily, name string, match map[string]string) (float64, bool) {
	mf, ok := mfs[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range match {
			if labels[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// waitDumps waits until podflow, in connection mode, has read the
// conntrack table n more times, so that every live connection's counts
// up to now are in its counters.
func (d *daemon) waitDumps(n float64) {
	d.t.Helper()
	start, _ := value(mustScrape(d), "podflow_conntrack_dumps_total", nil)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if got, _ := value(mustScrape(d), "podflow_conntrack_dumps_total", nil); got >= start+n {
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("podflow read the conntrack table fewer than %v times in 20s", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// logHas waits until podflow's log contains s.
func (d *daemon) logHas(s string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(d.log.String(), s) {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// conntrack reports whether NFLOG delivers conntrack data to podflow.
func (d *daemon) conntrack() bool {
	sc := bufio.NewScanner(strings.NewReader(d.log.String()))
	for sc.Scan() {
		if strings.Contains(sc.Text(), "NFLOG group bound") {
			return strings.Contains(sc.Text(), "conntrack=true")
		}
	}
	return false
}

func waitABit() { time.Sleep(100 * time.Millisecond) }
