package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Monitoring addresses, on the control-plane namespace.
const (
	promPort    = "9090"
	amPort      = "9093"
	webhookPort = "9095"
)

// Prometheus is the sandbox's Prometheus server.
type Prometheus struct {
	Proc    *Proc
	Addr    string
	DataDir string
	Config  string
	args    []string
}

// PrometheusOptions shape the Prometheus configuration.
type PrometheusOptions struct {
	ScrapeInterval time.Duration
	EvalInterval   time.Duration
	RuleFiles      []string
	// DataDir holds (backfilled) TSDB blocks; created when empty.
	DataDir string
}

// PrometheusConfig renders prometheus.yml for the sandbox's nodes.
func (e *Env) PrometheusConfig(o PrometheusOptions) string {
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  scrape_timeout: %s\n  evaluation_interval: %s\n  external_labels:\n    cluster: e2e\n",
		promDuration(o.ScrapeInterval), promDuration(o.ScrapeInterval), promDuration(o.EvalInterval))
	if len(o.RuleFiles) > 0 {
		b.WriteString("rule_files:\n")
		for _, f := range o.RuleFiles {
			fmt.Fprintf(&b, "  - %s\n", f)
		}
	}
	fmt.Fprintf(&b, "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['%s:%s']\n", cpV4, amPort)
	b.WriteString("scrape_configs:\n  - job_name: podflow\n    static_configs:\n")
	for _, n := range e.Nodes {
		fmt.Fprintf(&b, "      - targets: ['%s']\n        labels: {node: %s}\n", n.MetricsAddr(), n.Name)
	}
	return b.String()
}

func promDuration(d time.Duration) string {
	if d%time.Second != 0 || d == 0 {
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	return fmt.Sprintf("%ds", int(d.Seconds()))
}

// StartPrometheus starts Prometheus in the control-plane namespace.
func (e *Env) StartPrometheus(ctx context.Context, o PrometheusOptions) (*Prometheus, error) {
	if o.ScrapeInterval == 0 {
		o.ScrapeInterval = 2 * time.Second
	}
	if o.EvalInterval == 0 {
		o.EvalInterval = 2 * time.Second
	}
	if e.Prom != nil && e.Prom.Proc != nil {
		e.Prom.Proc.Stop(20 * time.Second)
	}
	dir := filepath.Join(e.Dir, "prometheus")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if o.DataDir == "" {
		o.DataDir = filepath.Join(dir, "data")
	}
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(e.PrometheusConfig(o)), 0o644); err != nil {
		return nil, err
	}
	p := &Prometheus{Addr: cpV4 + ":" + promPort, DataDir: o.DataDir, Config: cfg}
	p.args = []string{
		"--config.file=" + cfg,
		"--storage.tsdb.path=" + o.DataDir,
		"--storage.tsdb.retention.time=60d",
		"--web.listen-address=" + p.Addr,
		"--web.enable-lifecycle",
		// Flow counters that come back after an idle eviction start from
		// zero at their created timestamp (docs/operations.md).
		"--enable-feature=created-timestamp-zero-ingestion",
		"--log.level=error",
	}
	e.Prom = p
	return p, e.runPrometheus(ctx)
}

func (e *Env) runPrometheus(ctx context.Context) error {
	p := e.Prom
	proc, err := e.start("prometheus", e.CPNS, e.Bins.Prometheus, p.args...)
	if err != nil {
		return err
	}
	p.Proc = proc
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if proc.Exited() {
			return fmt.Errorf("prometheus exited: %s", proc.Tail(3000))
		}
		code, _, err := e.HTTPGet(ctx, e.CPNS, "http://"+p.Addr+"/-/ready")
		if err == nil && code == 200 {
			return nil
		}
		time.Sleep(300 * time.Millisecond)
	}
	return fmt.Errorf("prometheus not ready: %s", proc.Tail(3000))
}

// RestartPrometheus restarts Prometheus on the same data directory (to load
// blocks written behind its back).
func (e *Env) RestartPrometheus(ctx context.Context) error {
	e.Prom.Proc.Stop(20 * time.Second)
	return e.runPrometheus(ctx)
}

// WaitTargetsUp waits until every node's podflow is scraped successfully.
func (e *Env) WaitTargetsUp(ctx context.Context, timeout time.Duration) error {
	_, err := e.WaitValue(ctx, `sum(up{job="podflow"})`, float64(len(e.Nodes)), timeout)
	return err
}
