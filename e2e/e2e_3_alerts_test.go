package e2e_test

import (
	"context"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/podflow/podflow/e2e/harness"
)

// needAlerting skips the test, saying why, when the shipped rules or the
// shipped Alertmanager configuration are not in the tree.
func needAlerting(t *testing.T) *harness.Sandbox {
	t.Helper()
	s := sandbox(t)
	if !rulesLoaded {
		t.Skip("rules/podflow-recording.rules.yaml or E2E_RULES_DIR missing: no rules to evaluate")
	}
	if !alertmanagerUp {
		t.Skip("rules/alertmanager/alertmanager.yml missing: no Alertmanager configuration to route with")
	}
	return s
}

// expectedReceiver asks amtool which receiver the shipped configuration
// routes an alert with these labels to.
func expectedReceiver(t *testing.T, labels map[string]string) string {
	t.Helper()
	args := []string{"config", "routes", "test", "--config.file=" + filepath.Join(repoRoot, "rules/alertmanager/alertmanager.yml")}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, k+"="+labels[k])
	}
	out, err := exec.Command(amtoolBin(), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("amtool %v: %v: %s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func labelsMatch(got map[string]string, want map[string]string) bool {
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

func TestAlertNewCommunication(t *testing.T) {
	s := needAlerting(t)
	ctx := context.Background()
	known := []struct{ src, dst *harness.Pod }{}
	_ = known
	// Known pairs, live: they must raise nothing.
	frontend, debug, db := s.Pod("shop/frontend"), s.Pod("shop/debug"), s.Pod("shop/db")
	checkoutSvc := s.Services["shop/checkout"]
	if _, err := s.Env.TCPSink(s.Pod("shop/checkout").NS, 8080, true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Env.TCPSink(db.NS, 5432, true); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := harness.TCPExchange(ctx, frontend.NS, netip.AddrPortFrom(checkoutSvc.ClusterIP(4), 80), 2000, true); err != nil {
			t.Fatal(err)
		}
		if err := harness.TCPExchange(ctx, s.Pod("shop/checkout").NS, netip.AddrPortFrom(db.IPv4, 5432), 500, true); err != nil {
			t.Fatal(err)
		}
	}
	// A new pair between known workloads: debug has only ever talked to
	// checkout, db only ever heard from checkout and report.
	if err := harness.TCPExchange(ctx, debug.NS, netip.AddrPortFrom(db.IPv4, 5432), 300, true); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"alertname":             "PodflowNewCommunication",
		"source_namespace":      "shop",
		"source_workload":       "debug",
		"source_kind":           "Pod",
		"destination_namespace": "shop",
		"destination_workload":  "db",
		"destination_kind":      "StatefulSet",
		"severity":              "warning",
		"category":              "security",
	}
	a, err := s.Env.Hook.Wait(ctx, 3*time.Minute, func(a harness.WebhookAlert) bool { return labelsMatch(a.Labels, want) })
	if err != nil {
		t.Fatal(err)
	}
	if r := expectedReceiver(t, a.Labels); a.Receiver != r {
		t.Errorf("PodflowNewCommunication reached receiver %q, the shipped routes say %q", a.Receiver, r)
	}
	for _, k := range []string{"summary", "description", "runbook_url"} {
		if a.Annotations[k] == "" {
			t.Errorf("PodflowNewCommunication without annotation %s: %v", k, a.Annotations)
		}
	}
	checkInBrowser(t, s, "PodflowNewCommunication", "shop/debug", "shop/db")
	// Known pairs on their known ports raised nothing, in Prometheus or at
	// the receiver. (The other scenarios use new ports on these pairs on
	// purpose: PodflowNewDestinationPort for those is right.)
	for _, p := range []struct{ src, dst, port string }{{"frontend", "checkout", "8080"}, {"checkout", "db", "5432"}} {
		q := `ALERTS{alertname=~"PodflowNewCommunication|PodflowTrafficAnomaly|PodflowNewExternalNetwork",source_workload="` + p.src + `",destination_workload="` + p.dst + `"}` +
			` or ALERTS{alertname="PodflowNewDestinationPort",source_workload="` + p.src + `",destination_workload="` + p.dst + `",destination_port="` + p.port + `"}`
		res, err := s.Env.Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != 0 {
			t.Errorf("known pair %s -> %s:%s raised %v", p.src, p.dst, p.port, res)
		}
		for _, a := range s.Env.Hook.Alerts() {
			l := a.Labels
			if l["source_workload"] != p.src || l["destination_workload"] != p.dst {
				continue
			}
			if l["alertname"] == "PodflowNewDestinationPort" && l["destination_port"] != p.port {
				continue
			}
			if strings.HasPrefix(l["alertname"], "PodflowNew") || l["alertname"] == "PodflowTrafficAnomaly" {
				t.Errorf("known pair %s -> %s:%s reached the receiver: %v", p.src, p.dst, p.port, l)
				break
			}
		}
	}
}

func TestAlertDenylistedDestination(t *testing.T) {
	s := needAlerting(t)
	ctx := context.Background()
	if _, err := s.Env.UDPSink(s.Env.Fabric, 9001, false); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// One short exchange is enough.
	if err := harness.SendUDP(ctx, s.Pod("shop/frontend").NS, netip.AddrPortFrom(harness.OutsideDenyV4, 9001), 1, 64, false); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"alertname":            "PodflowDenylistedDestination",
		"source_namespace":     "shop",
		"source_workload":      "frontend",
		"destination_kind":     "Network",
		"destination_workload": "denylist-tor",
		"severity":             "critical",
	}
	a, err := s.Env.Hook.Wait(ctx, 2*time.Minute, func(a harness.WebhookAlert) bool { return labelsMatch(a.Labels, want) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("PodflowDenylistedDestination at %s after %v", a.Receiver, a.At.Sub(start).Round(time.Second))
	if r := expectedReceiver(t, a.Labels); a.Receiver != r {
		t.Errorf("PodflowDenylistedDestination reached receiver %q, the shipped routes say %q", a.Receiver, r)
	}
}

// TestAlertExporterDownInhibits: a node's podflow stops; PodflowExporterDown
// reaches the platform route, and while it fires the behavioural alerts are
// inhibited (the shipped inhibit rule), not delivered.
func TestAlertExporterDownInhibits(t *testing.T) {
	s := needAlerting(t)
	ctx := context.Background()
	e := s.Env
	// A behavioural alert to inhibit: a new pair between known workloads.
	report, checkout := s.Pod("batch/report"), s.Pod("shop/checkout")
	if _, err := e.TCPSink(checkout.NS, 8081, true); err != nil {
		t.Fatal(err)
	}
	if err := harness.TCPExchange(ctx, report.NS, netip.AddrPortFrom(checkout.IPv4, 8081), 100, true); err != nil {
		t.Fatal(err)
	}
	isNew := func(a harness.WebhookAlert) bool {
		return a.Labels["alertname"] == "PodflowNewCommunication" && a.Labels["source_workload"] == "report" && a.Labels["destination_workload"] == "checkout"
	}
	if _, err := e.Hook.Wait(ctx, 3*time.Minute, isNew); err != nil {
		t.Fatal(err)
	}
	n2 := s.Nodes[1]
	n2.Podflow.Stop(10 * time.Second)
	defer func() {
		if err := e.StartPodflow(n2); err != nil {
			t.Error(err)
			return
		}
		if err := e.WaitPodflowReady(ctx, n2, 60*time.Second); err != nil {
			t.Error(err)
		}
		if err := e.WaitTargetsUp(ctx, time.Minute); err != nil {
			t.Error(err)
		}
	}()
	down, err := e.Hook.Wait(ctx, 2*time.Minute, func(a harness.WebhookAlert) bool {
		return a.Labels["alertname"] == "PodflowExporterDown" && a.Labels["instance"] == n2.MetricsAddr()
	})
	if err != nil {
		t.Fatal(err)
	}
	if r := expectedReceiver(t, down.Labels); down.Receiver != r {
		t.Errorf("PodflowExporterDown reached receiver %q, the shipped routes say %q", down.Receiver, r)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		alerts, err := e.AMAlerts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var state string
		for _, a := range alerts {
			if a.Labels["alertname"] == "PodflowNewCommunication" && a.Labels["source_workload"] == "report" {
				state = a.Status.State
				if len(a.Status.InhibitedBy) > 0 {
					t.Logf("PodflowNewCommunication report -> checkout inhibited by %v", a.Status.InhibitedBy)
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("PodflowNewCommunication report -> checkout not inhibited while PodflowExporterDown fires (state %q)", state)
		}
		time.Sleep(2 * time.Second)
	}
}

// deliveredSince lists the firing notifications received at or after since
// that name the source workload and one of the alert names.
func deliveredSince(s *harness.Sandbox, since time.Time, source string, alertnames ...string) []harness.WebhookAlert {
	var out []harness.WebhookAlert
	for _, a := range s.Env.Hook.Alerts() {
		if a.Status == "firing" && !a.At.Before(since) && a.Labels["source_workload"] == source && slices.Contains(alertnames, a.Labels["alertname"]) {
			out = append(out, a)
		}
	}
	return out
}

// sourceWarning is the label set of a security warning about a source
// workload.
func sourceWarning(alertname, namespace, workload, kind string) map[string]string {
	return map[string]string{
		"alertname":        alertname,
		"source_namespace": namespace,
		"source_workload":  workload,
		"source_kind":      kind,
		"severity":         "warning",
		"category":         "security",
	}
}

// oneNotification waits for the incident's alert, lets the per-pair and
// per-port alerts the incident would otherwise raise have their chance
// (rule evaluations, their for, grouping), and requires that exactly one
// notification reached a receiver, through the shipped route, and that
// Prometheus itself holds none of the per-pair or per-port alerts.
func oneNotification(t *testing.T, s *harness.Sandbox, since time.Time, want map[string]string, held ...string) {
	t.Helper()
	ctx := context.Background()
	a, err := s.Env.Hook.Wait(ctx, 3*time.Minute, func(a harness.WebhookAlert) bool { return !a.At.Before(since) && labelsMatch(a.Labels, want) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s delivered to %s after %v", want["alertname"], a.Receiver, a.At.Sub(since).Round(time.Second))
	if r := expectedReceiver(t, a.Labels); a.Receiver != r {
		t.Errorf("%s reached receiver %q, the shipped routes say %q", want["alertname"], a.Receiver, r)
	}
	// Longer than the per-pair alerts' for, an evaluation and a group
	// interval together.
	time.Sleep(30 * time.Second)
	src := want["source_workload"]
	if got := deliveredSince(s, since, src, append(held, want["alertname"])...); len(got) != 1 {
		var names []string
		for _, g := range got {
			names = append(names, g.Labels["alertname"]+" "+g.Labels["destination_workload"]+":"+g.Labels["destination_port"])
		}
		t.Errorf("%s: %d notifications, want exactly one (%s): %v", src, len(got), want["alertname"], names)
	}
	q := `ALERTS{source_workload="` + src + `", alertname=~"` + strings.Join(held, "|") + `"}`
	res, err := s.Env.Query(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 0 {
		t.Errorf("Prometheus holds %d per-pair or per-port alerts of %s during the incident: %v", len(res), src, res)
	}
}

// TestAlertPortScanOneNotification: shop/frontend probes 25 ports of
// shop/checkout, a pair it knows on 8080 only. Without the storm guard
// that is one PodflowNewDestinationPort per port beside PodflowPortScan;
// the shipped rules and routes deliver PodflowPortScan alone.
func TestAlertPortScanOneNotification(t *testing.T) {
	s := needAlerting(t)
	ctx := context.Background()
	src, dst := s.Pod("shop/frontend"), s.Pod("shop/checkout")
	start := time.Now()
	refused := 0
	for port := 9100; port < 9125; port++ {
		// Nothing listens there: each probe is a SYN and a reset.
		if err := harness.TCPExchange(ctx, src.NS, netip.AddrPortFrom(dst.IPv4, uint16(port)), 1, false); err != nil {
			refused++
		}
	}
	if refused != 25 {
		t.Fatalf("%d of 25 probed ports refused the connection; the scan needs closed ports", refused)
	}
	oneNotification(t, s, start, sourceWarning("PodflowPortScan", "shop", "frontend", "Deployment"),
		"PodflowNewDestinationPort", "PodflowNewCommunication", "PodflowUnansweredConnections")
}

// TestAlertFanOutOneNotification: the node agent on node-1 reaches every
// pod and node of the sandbox, none of which it talked to before (its
// baseline: the API server and neighbour discovery). Without the storm
// guard that is one PodflowNewCommunication per pair beside PodflowFanOut;
// the shipped rules and routes deliver PodflowFanOut alone.
func TestAlertFanOutOneNotification(t *testing.T) {
	s := needAlerting(t)
	ctx := context.Background()
	agent := s.Pod("monitoring/node-agent")
	var targets []netip.Addr
	for _, k := range []string{"shop/frontend", "shop/debug", "batch/report", "shop/checkout", "shop/db"} {
		targets = append(targets, s.Pod(k).IPv4)
	}
	for _, n := range s.Nodes {
		targets = append(targets, n.IPv4)
	}
	start := time.Now()
	for _, a := range targets {
		// Refused or answered, each connection attempt makes the pair.
		_ = harness.TCPExchange(ctx, agent.NS, netip.AddrPortFrom(a, 9200), 1, false)
	}
	oneNotification(t, s, start, sourceWarning("PodflowFanOut", "monitoring", "node-agent", "DaemonSet"),
		"PodflowNewCommunication", "PodflowNewDestinationPort", "PodflowUnansweredConnections")
}

// TestAlertEgressAnomaly: shop/frontend, which sends about 500 B/s to the
// corp network in its baseline, uploads a few hundred KiB a second there
// over its usual port. PodflowEgressAnomaly reaches the route the shipped
// configuration names.
func TestAlertEgressAnomaly(t *testing.T) {
	s := needAlerting(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := s.Env.TCPSink(s.Env.Fabric, 443, false); err != nil {
		t.Fatal(err)
	}
	src := s.Pod("shop/frontend")
	start := time.Now()
	upload := make(chan error, 1)
	go func() {
		for ctx.Err() == nil {
			if err := harness.TCPExchange(ctx, src.NS, netip.AddrPortFrom(harness.OutsideCorpV4, 443), 64<<10, false); err != nil && ctx.Err() == nil {
				upload <- err
				return
			}
			time.Sleep(250 * time.Millisecond)
		}
	}()
	want := sourceWarning("PodflowEgressAnomaly", "shop", "frontend", "Deployment")
	a, err := s.Env.Hook.Wait(ctx, 3*time.Minute, func(a harness.WebhookAlert) bool { return !a.At.Before(start) && labelsMatch(a.Labels, want) })
	select {
	case uerr := <-upload:
		t.Fatalf("upload to corp: %v", uerr)
	default:
	}
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	t.Logf("PodflowEgressAnomaly at %s after %v: %s", a.Receiver, a.At.Sub(start).Round(time.Second), a.Annotations["description"])
	if r := expectedReceiver(t, a.Labels); a.Receiver != r {
		t.Errorf("PodflowEgressAnomaly reached receiver %q, the shipped routes say %q", a.Receiver, r)
	}
	for _, k := range []string{"summary", "description", "runbook_url"} {
		if a.Annotations[k] == "" {
			t.Errorf("PodflowEgressAnomaly without annotation %s: %v", k, a.Annotations)
		}
	}
}
