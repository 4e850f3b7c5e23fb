package e2e_test

import (
	"context"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podflow/podflow/e2e/harness"
)

// What people look at, checked in headless Chromium (Debian's chromium,
// installed by make setup): each page's screenshot is kept beside the e2e
// logs (screenshots/ in the run's directory, or $E2E_SCREENSHOTS), so that a
// failed run shows what a user would have seen.

var (
	forwardsMu sync.Mutex
	forwards   = map[string]net.Addr{}
)

// hostURL is a server of the sandbox as a browser on the host reaches it:
// the harness forwards a loopback port into the control plane's namespace.
func hostURL(t *testing.T, s *harness.Sandbox, target string) string {
	t.Helper()
	forwardsMu.Lock()
	defer forwardsMu.Unlock()
	addr, ok := forwards[target]
	if !ok {
		var err error
		if addr, err = s.Env.Forward("127.0.0.1:0", s.Env.CPNS, target); err != nil {
			t.Fatalf("forwarding %s to the host: %v", target, err)
		}
		forwards[target] = addr
	}
	return "http://" + addr.String()
}

func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("E2E_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join(theEnv.Dir, "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browse opens pageURL in headless Chromium, keeps a screenshot as
// name.png, and returns the page's DOM after its scripts ran.
func browse(t *testing.T, pageURL, name string) string {
	t.Helper()
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium not found: run make setup")
	}
	png := filepath.Join(screenshotDir(t), name+".png")
	run := func(args ...string) []byte {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		// --no-sandbox: the tests run as root, where Chromium's sandbox
		// refuses to start. The virtual time budget lets the page fetch
		// and render before the DOM and the picture are taken.
		base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
			"--hide-scrollbars", "--no-first-run", "--window-size=1400,1000", "--virtual-time-budget=20000",
			"--user-data-dir=" + t.TempDir()}
		out, err := exec.CommandContext(ctx, chromium, append(append(base, args...), pageURL)...).Output()
		if err != nil {
			t.Fatalf("chromium %v %s: %v", args, pageURL, err)
		}
		return out
	}
	run("--screenshot=" + png)
	if fi, err := os.Stat(png); err != nil || fi.Size() == 0 {
		t.Fatalf("no screenshot of %s: %v", pageURL, err)
	}
	t.Logf("screenshot of %s: %s", pageURL, png)
	return string(run("--dump-dom"))
}

// checkInBrowser looks, as a user would, at an alert about src -> dst while
// it fires: Prometheus' alerts page lists it as firing, the topology page
// draws the pair as a new edge, and the other pages the demo prints work.
func checkInBrowser(t *testing.T, s *harness.Sandbox, alert, src, dst string) {
	t.Helper()
	base := hostURL(t, s, s.Env.Prom.Addr)

	dom := browse(t, base+harness.PrometheusAlertsPath+"?search="+url.QueryEscape(alert), "prometheus-alerts")
	if strings.Contains(dom, "Error opening React index.html") {
		t.Errorf("Prometheus serves no web UI (built without its assets?)")
	}
	// The rule's row: its name, then its badges (firing (N), pending (N)).
	if i := strings.Index(dom, alert+"<"); i < 0 || !regexp.MustCompile(`firing \(\d+\)`).MatchString(dom[i:min(len(dom), i+4000)]) {
		t.Errorf("Prometheus' alerts page does not show %s firing; see the screenshot", alert)
	}

	bin := os.Getenv("PODFLOW_TOPOLOGY")
	if bin == "" {
		t.Fatal("PODFLOW_TOPOLOGY unset: run the end-to-end tests through `make e2e`")
	}
	page := filepath.Join(screenshotDir(t), "topology.html")
	out, err := exec.Command(bin, "--prometheus.url="+base, "--range=15m",
		"--output.html="+page, "--output.svg="+strings.TrimSuffix(page, ".html")+".svg").CombinedOutput()
	if err != nil {
		t.Fatalf("podflow-topology: %v: %s", err, out)
	}
	dom = browse(t, "file://"+page, "topology")
	edge := regexp.MustCompile(`<g id="new_edge_\d+" class="edge">\s*<title>[^<]*</title>\s*<g id="a_new_edge_\d+"><a xlink:title="` + regexp.QuoteMeta(src+" → "+dst+":"))
	if !edge.MatchString(dom) {
		t.Errorf("the topology page does not draw %s -> %s as a new edge; see the screenshot", src, dst)
	}
	row := regexp.MustCompile(`<tr class="new"><td>` + regexp.QuoteMeta(src) + ` \(\w+\)</td><td>` + regexp.QuoteMeta(dst) + ` `)
	if !row.MatchString(dom) {
		t.Errorf("the topology page's table does not list %s -> %s as new", src, dst)
	}
	checkDemoPages(t, s, base)
}

// checkDemoPages opens the other pages the demo prints: Prometheus' prepared
// query graphs the pairs, Alertmanager's new UI lists the alerts, and each
// podflow's landing page links its metrics.
func checkDemoPages(t *testing.T, s *harness.Sandbox, promBase string) {
	t.Helper()
	// The graph's legend names the series: a pair the sandbox exchanges.
	graphed := func(dom string) bool {
		return strings.Contains(dom, "source_workload") && strings.Contains(dom, "checkout")
	}
	dom := browse(t, promBase+harness.PairTrafficQueryPath, "prometheus-query")
	// The DOM is taken in a second browser run: on a busy machine the
	// query's response can miss that run's time budget, so look again
	// before calling the page broken.
	for i := 0; i < 2 && !graphed(dom); i++ {
		dom = browse(t, promBase+harness.PairTrafficQueryPath, "prometheus-query")
	}
	if !graphed(dom) {
		t.Errorf("Prometheus' query page does not graph the pair traffic; see the screenshot")
	}
	if s.Env.AM != nil {
		dom = browse(t, hostURL(t, s, s.Env.AM.Addr)+harness.AlertmanagerAlertsPath, "alertmanager-alerts")
		if !regexp.MustCompile(`<tr class="alert"><td>PodflowNewCommunication</td><td class="active">active</td>`).MatchString(dom) {
			t.Errorf("Alertmanager's alerts page does not list PodflowNewCommunication as active; see the screenshot")
		}
	}
	for _, n := range s.Nodes {
		dom = browse(t, hostURL(t, s, n.MetricsAddr())+"/", "podflow-"+n.Name)
		if !strings.Contains(dom, `href="/metrics"`) && !strings.Contains(dom, `href="metrics"`) {
			t.Errorf("podflow's landing page on %s does not link its metrics; see the screenshot", n.Name)
		}
	}
}
