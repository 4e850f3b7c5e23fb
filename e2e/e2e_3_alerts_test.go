package e2e_test

import (
	"context"
	"net/netip"
	"os/exec"
	"path/filepath"
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
