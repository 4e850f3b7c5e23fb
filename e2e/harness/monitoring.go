package harness

import (
	"context"
	"os"
	"path/filepath"
	"time"
)

// MonitoringOptions say where the shipped rules and routes are.
type MonitoringOptions struct {
	// RepoRoot is the podflow checkout (rules/, kustomize/, dashboards/).
	RepoRoot string
	// RulesDir holds the rule files Prometheus evaluates live (the shipped
	// templates rendered at test speed); empty: the shipped files.
	RulesDir string
	// History is how much baseline to backfill (at least 8 days: the
	// shipped cluster learning period is 7).
	History time.Duration
	// ScrapeOnly starts Prometheus without baseline, rules or
	// Alertmanager: enough for scenarios that only read counters.
	ScrapeOnly bool
}

// Monitoring reports what StartMonitoring could start.
type Monitoring struct {
	RulesLoaded    bool
	AlertmanagerUp bool
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// StartMonitoring backfills the baseline of the sandbox's known pairs with
// the shipped recording rules, then starts Prometheus with the live rules,
// and Alertmanager with the shipped routes delivering to the webhook.
func StartMonitoring(ctx context.Context, s *Sandbox, o MonitoringOptions) (Monitoring, error) {
	e := s.Env
	var m Monitoring
	if o.History == 0 {
		o.History = 8*24*time.Hour + 2*time.Hour
	}
	promOpts := PrometheusOptions{}
	shipped := filepath.Join(o.RepoRoot, "rules", "podflow-recording.rules.yaml")
	if fileExists(shipped) && !o.ScrapeOnly {
		end := time.Now().Add(-3 * time.Minute)
		b := &Backfill{
			Start:     end.Add(-o.History),
			End:       end,
			Step:      2 * time.Minute,
			Pairs:     s.KnownPairs(),
			RuleFiles: []string{shipped},
		}
		if err := e.RunBackfill(ctx, b, PrometheusOptions{}); err != nil {
			return m, err
		}
		dir := o.RulesDir
		if dir == "" {
			dir = filepath.Join(o.RepoRoot, "rules")
		}
		promOpts.RuleFiles, _ = filepath.Glob(filepath.Join(dir, "*.rules.yaml"))
		m.RulesLoaded = len(promOpts.RuleFiles) > 0
	}
	e.logf("starting prometheus with %d rule files", len(promOpts.RuleFiles))
	if _, err := e.StartPrometheus(ctx, promOpts); err != nil {
		return m, err
	}
	if err := e.WaitTargetsUp(ctx, time.Minute); err != nil {
		return m, err
	}
	amConfig := filepath.Join(o.RepoRoot, "rules", "alertmanager", "alertmanager.yml")
	if fileExists(amConfig) && !o.ScrapeOnly {
		e.logf("starting alertmanager")
		if _, err := e.StartAlertmanager(ctx, amConfig); err != nil {
			return m, err
		}
		m.AlertmanagerUp = true
	}
	return m, nil
}
