// End-to-end scenarios: run through `make e2e` (as root), which builds the
// binaries and exports their paths.
package e2e_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podflow/podflow/e2e/harness"
)

var (
	sb         *harness.Sandbox
	setupErr   error
	skipReason string
	// podflowSkip is set when podflow cannot run against the API server;
	// only the scenarios that need no podflow (manifests) run then.
	podflowSkip string
	theEnv      *harness.Env
	repoRoot    string

	rulesLoaded    bool
	alertmanagerUp bool
)

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func TestMain(m *testing.M) {
	flag.Parse()
	repoRoot, _ = filepath.Abs("..")
	bins, missing := harness.BinsFromEnv()
	switch {
	case len(missing) > 0:
		skipReason = fmt.Sprintf("%v unset: run the end-to-end tests through `make e2e`", missing)
	case os.Geteuid() != 0:
		setupErr = fmt.Errorf("the end-to-end tests need root (network namespaces, nftables)")
	}
	if skipReason != "" || setupErr != nil {
		os.Exit(m.Run())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	start := time.Now()
	env, err := harness.New(ctx, harness.Options{
		Prefix:     "pfe2e-",
		Bins:       bins,
		ProxyMode:  os.Getenv("E2E_PROXY_MODE"),
		FabricMode: os.Getenv("E2E_FABRIC"),
		// Empty: the daemon's default mode.
		CaptureMode: os.Getenv("E2E_CAPTURE_MODE"),
		Logf: func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, "e2e %6.1fs: %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
		},
	})
	if err != nil {
		setupErr = err
	} else {
		setupErr = setup(ctx, env)
	}
	cancel()
	code := m.Run()
	if env != nil {
		if code != 0 {
			fmt.Fprintf(os.Stderr, "e2e: logs kept in %s\n", env.Dir)
		}
		env.Close()
		if code == 0 {
			os.RemoveAll(env.Dir)
		}
	}
	os.Exit(code)
}

func setup(ctx context.Context, env *harness.Env) error {
	theEnv = env
	env.Logf("building the sandbox cluster (kube-proxy in %s mode, %s fabric, podflow's capture mode %s)", orDefault(env.ProxyMode, harness.ProxyNftables),
		orDefault(env.FabricMode, harness.FabricRouted), orDefault(env.CaptureMode, "the default"))
	s, err := harness.BuildSandbox(ctx, env, harness.SandboxOptions{
		ClusterRolePath: filepath.Join(repoRoot, "kustomize/base/clusterrole.yaml"),
		PodflowArgs:     []string{"--metrics.deletion-grace=5s", "--metrics.labels=destination_service"},
	})
	if err != nil {
		return err
	}
	sb = s
	if os.Getenv("E2E_IDENTITY") == "static" {
		// Debugging aid: podflow names addresses from a static file.
		if err := s.UseStaticIdentity(); err != nil {
			return err
		}
	}
	env.Logf("starting podflow on %d nodes", len(s.Nodes))
	if err := s.StartPodflows(ctx); err != nil {
		if strings.Contains(err.Error(), "Kubernetes identity is not built in yet") {
			podflowSkip = "podflow has no Kubernetes identity yet (exporter/cmd/podflow/kube.go): the scenario needs it"
			return nil
		}
		return err
	}
	m, err := harness.StartMonitoring(ctx, s, harness.MonitoringOptions{RepoRoot: repoRoot, RulesDir: os.Getenv("E2E_RULES_DIR"),
		ScrapeOnly: os.Getenv("E2E_SCRAPE_ONLY") != ""})
	rulesLoaded, alertmanagerUp = m.RulesLoaded, m.AlertmanagerUp
	if err != nil {
		return err
	}
	env.Logf("sandbox ready")
	return nil
}

// sandbox returns the shared sandbox or ends the test.
func sandbox(t *testing.T) *harness.Sandbox {
	t.Helper()
	env := controlPlane(t)
	_ = env
	if podflowSkip != "" {
		t.Skip(podflowSkip)
	}
	return sb
}

// controlPlane returns the environment once the control plane runs.
func controlPlane(t *testing.T) *harness.Env {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	if setupErr != nil {
		t.Fatalf("sandbox setup: %v", setupErr)
	}
	return theEnv
}

func amtoolBin() string { return os.Getenv("AMTOOL") }

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
