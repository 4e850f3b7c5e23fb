package rulescheck

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestInhibitionInAlertmanager posts alerts to a real Alertmanager running
// the example configuration and reads back which ones it inhibits. The
// receivers are pointed at a loopback server, so nothing leaves the host.
func TestInhibitionInAlertmanager(t *testing.T) {
	bin := os.Getenv("ALERTMANAGER")
	if bin == "" {
		t.Skip("ALERTMANAGER is not set: run through `make test-rules`")
	}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	defer hook.Close()

	raw, err := os.ReadFile(filepath.Join(root, amDir, "alertmanager.yml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.NewReplacer(
		"http://pager.example.internal/", hook.URL+"/",
		"http://chat.example.internal/", hook.URL+"/",
	).Replace(string(raw))
	if strings.Contains(cfg, "example.internal") {
		t.Fatal("a receiver still points outside the host")
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeLoopbackAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, bin,
		"--config.file="+cfgPath,
		"--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--cluster.listen-address=",
		"--log.level=warn",
	)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("alertmanager output:\n%s", logs.String())
		}
	}()
	base := "http://" + addr
	waitReady(t, base+"/-/ready")

	pairLabels := func(src, dst, dstKind string) map[string]string {
		m := map[string]string{
			"cluster": "prod", "source_namespace": "shop", "source_workload": src, "source_kind": "Deployment",
			"destination_workload": dst, "destination_kind": dstKind,
		}
		if dstKind != "Network" {
			m["destination_namespace"] = "shop"
		}
		return m
	}
	alerts := map[string]map[string]string{
		"down":      {"alertname": "PodflowExporterDown", "severity": "warning", "category": "health", "cluster": "prod", "job": "podflow", "instance": "10.0.0.1:9810"},
		"new":       merge(pairLabels("web", "cache", "Deployment"), "alertname", "PodflowNewCommunication", "severity", "warning", "category", "security"),
		"scan":      merge(map[string]string{"cluster": "prod", "source_namespace": "shop", "source_workload": "evil", "source_kind": "Deployment"}, "alertname", "PodflowPortScan", "severity", "warning", "category", "security"),
		"scanport":  merge(pairLabels("evil", "db", "Deployment"), "alertname", "PodflowNewDestinationPort", "severity", "warning", "category", "security", "destination_port", "6432", "protocol", "TCP"),
		"denylist":  merge(pairLabels("web", "denylist-tor", "Network"), "alertname", "PodflowDenylistedDestination", "severity", "critical", "category", "security", "destination_port", "9001", "protocol", "TCP"),
		"network":   merge(pairLabels("web", "denylist-tor", "Network"), "alertname", "PodflowNewExternalNetwork", "severity", "warning", "category", "security"),
		"staging":   merge(merge(pairLabels("web", "cache", "Deployment"), "cluster", "staging"), "alertname", "PodflowNewCommunication", "severity", "warning", "category", "security"),
		"forbidden": merge(pairLabels("sandbox", "api", "Deployment"), "alertname", "PodflowForbiddenCommunication", "severity", "critical", "category", "security", "destination_port", "443", "protocol", "TCP"),
	}
	want := map[string]bool{
		"down":      false,
		"new":       true,  // exporter down in the same cluster
		"scan":      true,  // exporter down in the same cluster
		"scanport":  true,  // the source's port scan (and the exporter)
		"denylist":  false, // policy alerts are never held back
		"network":   true,  // the critical of the same pair (and the exporter)
		"staging":   false, // another cluster
		"forbidden": false,
	}
	var post []map[string]any
	now := time.Now().UTC().Add(-time.Minute)
	for _, ls := range alerts {
		post = append(post, map[string]any{"labels": ls, "startsAt": now.Format(time.RFC3339), "endsAt": now.Add(time.Hour).Format(time.RFC3339)})
	}
	body, _ := json.Marshal(post)
	resp, err := http.Post(base+"/api/v2/alerts", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("posting alerts: %s", resp.Status)
	}

	var got map[string]bool
	deadline := time.Now().Add(15 * time.Second)
	for {
		got = inhibitedAlerts(t, base, alerts)
		if fmt.Sprint(got) == fmt.Sprint(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s (%v): inhibited = %v, want %v", name, alerts[name], got[name], w)
		}
	}

	// Once the exporter is back, only the pair's critical and the source's
	// port scan hold anything back.
	post = []map[string]any{{"labels": alerts["down"], "startsAt": now.Format(time.RFC3339), "endsAt": time.Now().UTC().Add(-time.Second).Format(time.RFC3339)}}
	body, _ = json.Marshal(post)
	resp, err = http.Post(base+"/api/v2/alerts", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	delete(alerts, "down")
	want = map[string]bool{"new": false, "scan": false, "scanport": true, "denylist": false, "network": true, "staging": false, "forbidden": false}
	deadline = time.Now().Add(15 * time.Second)
	for {
		got = inhibitedAlerts(t, base, alerts)
		if fmt.Sprint(got) == fmt.Sprint(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("exporter back: %s: inhibited = %v, want %v", name, got[name], w)
		}
	}
}

func merge(m map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// inhibitedAlerts reads the active alerts and reports, for each named
// label set, whether Alertmanager lists it as inhibited.
func inhibitedAlerts(t *testing.T, base string, named map[string]map[string]string) map[string]bool {
	t.Helper()
	resp, err := http.Get(base + "/api/v2/alerts")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list []struct {
		Labels map[string]string `json:"labels"`
		Status struct {
			State       string   `json:"state"`
			InhibitedBy []string `json:"inhibitedBy"`
		} `json:"status"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for name, ls := range named {
		for _, a := range list {
			if fmt.Sprint(a.Labels) == fmt.Sprint(ls) {
				out[name] = len(a.Status.InhibitedBy) > 0
			}
		}
	}
	return out
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func waitReady(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s never became ready", url)
}
