package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
)

// Alertmanager is the sandbox's Alertmanager, running the shipped
// configuration with every receiver pointed at the harness' webhook.
type Alertmanager struct {
	Proc   *Proc
	Addr   string
	Config string
}

// WebhookAlert is one alert as a receiver got it.
type WebhookAlert struct {
	Receiver    string
	Status      string
	Labels      map[string]string
	Annotations map[string]string
	At          time.Time
}

// Webhook is the receiver every route of the sandbox delivers to; the path
// names the receiver of the shipped configuration.
type Webhook struct {
	Addr    string
	mu      sync.Mutex
	alerts  []WebhookAlert
	notify  chan struct{}
	srv     *http.Server
	OnAlert func(WebhookAlert)
}

// StartWebhook listens in the control-plane namespace.
func (e *Env) StartWebhook() (*Webhook, error) {
	l, err := e.CPNS.Listen("tcp", net.JoinHostPort(cpV4, webhookPort))
	if err != nil {
		return nil, err
	}
	w := &Webhook{Addr: l.Addr().String(), notify: make(chan struct{}, 1)}
	w.srv = &http.Server{Handler: w, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = w.srv.Serve(l) }()
	e.Hook = w
	e.AddCleanup(func() { _ = w.srv.Close() })
	return w, nil
}

func (w *Webhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	var msg struct {
		Receiver string `json:"receiver"`
		Alerts   []struct {
			Status      string            `json:"status"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"alerts"`
	}
	if err := json.Unmarshal(body, &msg); err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	receiver := strings.TrimPrefix(r.URL.Path, "/")
	now := time.Now()
	var got []WebhookAlert
	for _, a := range msg.Alerts {
		got = append(got, WebhookAlert{Receiver: receiver, Status: a.Status, Labels: a.Labels, Annotations: a.Annotations, At: now})
	}
	w.mu.Lock()
	w.alerts = append(w.alerts, got...)
	cb := w.OnAlert
	w.mu.Unlock()
	if cb != nil {
		for _, a := range got {
			cb(a)
		}
	}
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// Alerts returns every alert received so far.
func (w *Webhook) Alerts() []WebhookAlert {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]WebhookAlert(nil), w.alerts...)
}

// Wait returns the first firing alert received that match accepts, waiting
// up to timeout.
func (w *Webhook) Wait(ctx context.Context, timeout time.Duration, match func(WebhookAlert) bool) (WebhookAlert, error) {
	deadline := time.After(timeout)
	for {
		for _, a := range w.Alerts() {
			if a.Status == "firing" && match(a) {
				return a, nil
			}
		}
		select {
		case <-ctx.Done():
			return WebhookAlert{}, ctx.Err()
		case <-deadline:
			return WebhookAlert{}, fmt.Errorf("no matching alert after %v; received: %s", timeout, w.summary())
		case <-w.notify:
		case <-time.After(time.Second):
		}
	}
}

func (w *Webhook) summary() string {
	var b strings.Builder
	for _, a := range w.Alerts() {
		fmt.Fprintf(&b, "\n  %s %s %v", a.Receiver, a.Status, a.Labels)
	}
	if b.Len() == 0 {
		return "nothing"
	}
	return b.String()
}

// AlertmanagerConfig rewrites a shipped alertmanager.yml for the sandbox:
// every receiver delivers to the webhook under its own name (so a test sees
// which route matched), template paths are made absolute, and the grouping
// delays are shortened to test speed. Routes, matchers and inhibit rules are
// left exactly as shipped.
func AlertmanagerConfig(shipped []byte, baseDir, webhookAddr string, groupWait, groupInterval time.Duration) ([]byte, error) {
	var cfg map[string]any
	if err := yaml.Unmarshal(shipped, &cfg); err != nil {
		return nil, err
	}
	recv, _ := cfg["receivers"].([]any)
	for i, r := range recv {
		m, _ := r.(map[string]any)
		name, _ := m["name"].(string)
		recv[i] = map[string]any{
			"name": name,
			"webhook_configs": []any{map[string]any{
				"url":           "http://" + webhookAddr + "/" + name,
				"send_resolved": true,
			}},
		}
	}
	if g, ok := cfg["global"].(map[string]any); ok {
		for k := range g {
			if k != "resolve_timeout" {
				delete(g, k)
			}
		}
	}
	if t, ok := cfg["templates"].([]any); ok {
		for i, p := range t {
			if s, ok := p.(string); ok && !filepath.IsAbs(s) {
				t[i] = filepath.Join(baseDir, s)
			}
		}
	}
	var walk func(r map[string]any)
	walk = func(r map[string]any) {
		if _, ok := r["group_wait"]; ok || r["receiver"] != nil && r["routes"] != nil {
			r["group_wait"] = promDuration(groupWait)
		}
		if _, ok := r["group_interval"]; ok {
			r["group_interval"] = promDuration(groupInterval)
		}
		if sub, ok := r["routes"].([]any); ok {
			for _, s := range sub {
				if m, ok := s.(map[string]any); ok {
					walk(m)
				}
			}
		}
	}
	if root, ok := cfg["route"].(map[string]any); ok {
		root["group_wait"] = promDuration(groupWait)
		root["group_interval"] = promDuration(groupInterval)
		walk(root)
	}
	return yaml.Marshal(cfg)
}

// StartAlertmanager starts Alertmanager in the control-plane namespace with
// the shipped configuration at shippedPath rewritten by AlertmanagerConfig.
func (e *Env) StartAlertmanager(ctx context.Context, shippedPath string) (*Alertmanager, error) {
	if e.Hook == nil {
		if _, err := e.StartWebhook(); err != nil {
			return nil, err
		}
	}
	shipped, err := os.ReadFile(shippedPath)
	if err != nil {
		return nil, err
	}
	out, err := AlertmanagerConfig(shipped, filepath.Dir(shippedPath), e.Hook.Addr, time.Second, 2*time.Second)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", shippedPath, err)
	}
	dir := filepath.Join(e.Dir, "alertmanager")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfg, out, 0o644); err != nil {
		return nil, err
	}
	am := &Alertmanager{Addr: cpV4 + ":" + amPort, Config: cfg}
	proc, err := e.start("alertmanager", e.CPNS, e.Bins.Alertmanager,
		"--config.file="+cfg,
		"--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+am.Addr,
		"--cluster.listen-address=",
		"--log.level=warn",
	)
	if err != nil {
		return nil, err
	}
	am.Proc = proc
	e.AM = am
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if proc.Exited() {
			return nil, fmt.Errorf("alertmanager exited: %s", proc.Tail(3000))
		}
		code, _, err := e.HTTPGet(ctx, e.CPNS, "http://"+am.Addr+"/-/ready")
		if err == nil && code == 200 {
			return am, nil
		}
		time.Sleep(300 * time.Millisecond)
	}
	return nil, fmt.Errorf("alertmanager not ready: %s", proc.Tail(3000))
}

// AMAlert is an alert as Alertmanager's API reports it.
type AMAlert struct {
	Labels map[string]string `json:"labels"`
	Status struct {
		State       string   `json:"state"`
		InhibitedBy []string `json:"inhibitedBy"`
		SilencedBy  []string `json:"silencedBy"`
	} `json:"status"`
}

// AMAlerts lists the alerts Alertmanager holds (active, inhibited and
// silenced alike).
func (e *Env) AMAlerts(ctx context.Context) ([]AMAlert, error) {
	code, body, err := e.HTTPGet(ctx, e.CPNS, "http://"+e.AM.Addr+"/api/v2/alerts")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("alertmanager /api/v2/alerts: %d %s", code, body)
	}
	var out []AMAlert
	return out, json.Unmarshal([]byte(body), &out)
}
