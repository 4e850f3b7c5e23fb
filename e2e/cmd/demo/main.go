// Command demo runs the podflow sandbox interactively (`make demo`): a
// kube-apiserver, two nodes with pods in network namespaces, podflow on each
// node, Prometheus with the shipped rules over a backfilled baseline, and
// Alertmanager with the shipped routes. It makes steady traffic between the
// demo workloads, prints where to look, and after a while opens a
// connection the baseline has never seen, then prints its alert when
// Alertmanager delivers it, and the NetworkPolicies learned from the
// baseline that would deny it. Ctrl-C removes everything it made.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/podflow/podflow/e2e/harness"
)

func main() { os.Exit(run()) }

func run() int {
	unexpectedAfter := flag.Duration("unexpected-after", 150*time.Second, "when to open the unexpected connection, after the sandbox is up")
	listen := flag.String("listen", "127.0.0.1", "host address the sandbox's web UIs are forwarded to")
	promPort := flag.Int("prometheus-port", 9090, "local port for Prometheus (0: any free port)")
	amPort := flag.Int("alertmanager-port", 9093, "local port for Alertmanager (0: any free port)")
	metricsPort := flag.Int("metrics-port", 9811, "first local port for the podflow instances' /metrics (one per node)")
	repo := flag.String("repo", "..", "the podflow checkout")
	topologyDir := flag.String("topology-dir", "", "where to write the topology picture (default: bin/topology in the checkout)")
	proxyMode := flag.String("proxy-mode", harness.ProxyNftables, "kube-proxy's mode on every node: nftables or iptables")
	fabric := flag.String("fabric", harness.FabricRouted, "how nodes reach each other's pods: routed or overlay (VXLAN)")
	captureMode := flag.String("capture-mode", "", "podflow's --capture.mode on every node: packet or connection (default: the daemon's)")
	flag.Parse()

	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "demo: run as root (network namespaces and nftables)")
		return 1
	}
	bins, missing := harness.BinsFromEnv()
	if len(missing) > 0 {
		fmt.Fprintf(os.Stderr, "demo: %v unset: start it with `make demo`\n", missing)
		return 1
	}
	root, _ := filepath.Abs(*repo)
	if *topologyDir == "" {
		*topologyDir = filepath.Join(root, "bin", "topology")
	}
	start := time.Now()
	logf := func(format string, args ...any) {
		fmt.Printf("[%5.0fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env, err := harness.New(ctx, harness.Options{Prefix: "pfdemo-", Bins: bins, Logf: logf, OwnSignals: true,
		ProxyMode: *proxyMode, FabricMode: *fabric, CaptureMode: *captureMode})
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	defer func() {
		logf("stopping every process and deleting every namespace of the sandbox")
		env.Close()
		os.RemoveAll(env.Dir)
		logf("nothing left behind")
	}()
	ports := ports{prometheus: *promPort, alertmanager: *amPort, metrics: *metricsPort}
	if err := demo(ctx, env, root, *topologyDir, logf, *listen, ports, *unexpectedAfter); err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		fmt.Fprintln(os.Stderr, "demo: logs in", env.Dir)
		return 1
	}
	return 0
}

// ports are the local ports the web UIs are forwarded to (0: any free one).
type ports struct{ prometheus, alertmanager, metrics int }

func demo(ctx context.Context, env *harness.Env, root, topologyDir string, logf func(string, ...any), listen string, p ports, unexpectedAfter time.Duration) error {
	logf("building the sandbox: 2 nodes, workloads in namespaces shop, batch, monitoring")
	s, err := harness.BuildSandbox(ctx, env, harness.SandboxOptions{ClusterRolePath: filepath.Join(root, "kustomize/base/clusterrole.yaml")})
	if err != nil {
		return err
	}
	logf("starting podflow on every node")
	if err := s.StartPodflows(ctx); err != nil {
		return err
	}
	logf("backfilling 8 days of baseline and starting Prometheus and Alertmanager")
	m, err := harness.StartMonitoring(ctx, s, harness.MonitoringOptions{RepoRoot: root, RulesDir: os.Getenv("E2E_RULES_DIR")})
	if err != nil {
		return err
	}
	if !m.AlertmanagerUp {
		logf("no rules/alertmanager/alertmanager.yml in this checkout: alerts stay in Prometheus")
	}
	env.Hook.OnAlert = func(a harness.WebhookAlert) {
		var keys []string
		for k, v := range a.Labels {
			if k != "alertname" {
				keys = append(keys, k+"="+v)
			}
		}
		sort.Strings(keys)
		fmt.Printf("\n>>> ALERT %s %s (receiver %q)\n    %s\n    %s\n\n", strings.ToUpper(a.Status), a.Labels["alertname"], a.Receiver,
			strings.Join(keys, " "), a.Annotations["description"])
	}

	type fwd struct {
		name, target string
		port         int
		paths        []string
	}
	fwds := []fwd{
		{"Prometheus", env.Prom.Addr, p.prometheus, []string{harness.PrometheusAlertsPath, harness.PairTrafficQueryPath}},
	}
	if env.AM != nil {
		fwds = append(fwds, fwd{"Alertmanager", env.AM.Addr, p.alertmanager, []string{harness.AlertmanagerAlertsPath}})
	}
	for i, n := range s.Nodes {
		port := p.metrics + i
		if p.metrics == 0 {
			port = 0
		}
		fwds = append(fwds, fwd{"podflow on " + n.Name, n.MetricsAddr(), port, []string{"/"}})
	}
	var lines []string
	var promURL string
	for _, f := range fwds {
		addr, err := env.Forward(net.JoinHostPort(listen, fmt.Sprint(f.port)), env.CPNS, f.target)
		if err != nil {
			addr, err = env.Forward(net.JoinHostPort(listen, "0"), env.CPNS, f.target)
			if err != nil {
				return err
			}
		}
		if f.target == env.Prom.Addr {
			promURL = "http://" + addr.String()
		}
		for _, path := range f.paths {
			lines = append(lines, fmt.Sprintf("  %-20s http://%s%s", f.name, addr, path))
			f.name = ""
		}
	}
	fmt.Println()
	fmt.Println("podflow sandbox is up:")
	for _, l := range lines {
		fmt.Println(l)
	}
	fmt.Println()
	lb := s.Services["shop/storefront"]
	fmt.Printf("kube-proxy (%s mode) runs on every node; customers (%s, outside) reach shop/frontend\n", orDefault(env.ProxyMode, harness.ProxyNftables), harness.OutsideNetwork)
	fmt.Printf("through the LoadBalancer shop/storefront at %v and %v, routed to %s.\n", lb.LoadBalancerIP(4), lb.LoadBalancerIP(6), lb.LBNode.Name)
	fmt.Println("The second Prometheus link graphs the traffic of every workload pair.")
	fmt.Printf("Steady traffic between the known workloads now; in %v shop/debug opens a connection\n", unexpectedAfter)
	fmt.Println("to shop/db that the baseline has never seen. Ctrl-C stops and removes everything.")
	fmt.Println()

	if err := steadyTraffic(ctx, env, s); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return nil
	case <-time.After(unexpectedAfter):
	}
	debug, db := s.Pod("shop/debug"), s.Pod("shop/db")
	logf("unexpected: shop/debug (%s) -> shop/db (%s) TCP 5432; waiting for PodflowNewCommunication", debug.IPv4, db.IPv4)
	if err := harness.TCPExchange(ctx, debug.NS, netip.AddrPortFrom(db.IPv4, 5432), 1000, true); err != nil {
		return err
	}
	go func() {
		a, err := env.Hook.Wait(ctx, 10*time.Minute, func(a harness.WebhookAlert) bool {
			return a.Labels["alertname"] == "PodflowNewCommunication" && a.Labels["source_workload"] == "debug"
		})
		if err != nil {
			return
		}
		logf("the alert arrived at receiver %q", a.Receiver)
		if err := drawTopology(ctx, promURL, topologyDir, logf); err != nil {
			logf("topology picture: %v", err)
		}
		if err := showPolicy(ctx, env, "shop"); err != nil {
			logf("policy from the baseline: %v", err)
		}
		logf("keep exploring, Ctrl-C to stop")
	}()
	<-ctx.Done()
	return nil
}

// steadyTraffic keeps the known pairs busy until ctx ends.
func steadyTraffic(ctx context.Context, env *harness.Env, s *harness.Sandbox) error {
	checkout, db := s.Pod("shop/checkout"), s.Pod("shop/db")
	for _, l := range []struct {
		ns   *harness.NetNS
		port int
	}{{checkout.NS, 8080}, {db.NS, 5432}, {env.Fabric, 443}, {s.Pod("shop/frontend").NS, 8443}} {
		if _, err := env.TCPSink(l.ns, l.port, true); err != nil {
			return err
		}
	}
	svc := s.Services["shop/checkout"]
	lb := s.Services["shop/storefront"]
	out, err := env.AddOutsideClient()
	if err != nil {
		return err
	}
	flows := []struct {
		from *harness.NetNS
		to   netip.AddrPort
		size int
	}{
		{s.Pod("shop/frontend").NS, netip.AddrPortFrom(svc.ClusterIP(4), uint16(svc.Port)), 4000},
		{s.Pod("shop/debug").NS, netip.AddrPortFrom(svc.ClusterIP(6), uint16(svc.Port)), 500},
		{checkout.NS, netip.AddrPortFrom(db.IPv4, 5432), 2000},
		{s.Pod("batch/report").NS, netip.AddrPortFrom(db.IPv6, 5432), 1500},
		{s.Pod("shop/frontend").NS, netip.AddrPortFrom(harness.OutsideCorpV4, 443), 800},
		// Customers on the internet, through the cloud load balancer.
		{out.NS, netip.AddrPortFrom(lb.LoadBalancerIP(4), uint16(lb.Port)), 3000},
		{out.NS, netip.AddrPortFrom(lb.LoadBalancerIP(6), uint16(lb.Port)), 1000},
	}
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			for _, f := range flows {
				_ = harness.TCPExchange(ctx, f.from, f.to, f.size, true)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return nil
}

// drawTopology runs podflow-topology (PODFLOW_TOPOLOGY, which make demo
// builds) against the sandbox's Prometheus and says where the picture is.
func drawTopology(ctx context.Context, promURL, dir string, logf func(string, ...any)) error {
	bin := os.Getenv("PODFLOW_TOPOLOGY")
	if bin == "" {
		return fmt.Errorf("PODFLOW_TOPOLOGY unset: start the demo with `make demo`")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	base := filepath.Join(dir, "podflow-topology")
	out, err := exec.CommandContext(ctx, bin, "--prometheus.url="+promURL, "--range=15m",
		"--output.dot="+base+".dot", "--output.svg="+base+".svg", "--output.html="+base+".html").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", bin, err, out)
	}
	logf("topology picture, the new edge in orange: file://%s.html (SVG and DOT beside it; redraw: %s --prometheus.url=%s --output.html=...)",
		base, bin, promURL)
	return nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// showPolicy generates the NetworkPolicies of namespace ns from the baseline
// with podflow-policy (built by `make demo`) and prints them with the command
// that applies them: the unexpected connection is exactly what they deny.
func showPolicy(ctx context.Context, env *harness.Env, ns string) error {
	bin := os.Getenv("PODFLOW_POLICY_BIN")
	if bin == "" {
		return fmt.Errorf("PODFLOW_POLICY_BIN unset: start the demo with `make demo`")
	}
	kc, err := env.CP.Kubeconfig("admin")
	if err != nil {
		return err
	}
	nets := filepath.Join(env.Dir, "policy-networks.yaml")
	if err := os.WriteFile(nets, []byte(harness.NetworksFile), 0o600); err != nil {
		return err
	}
	out := filepath.Join(env.Dir, "policies")
	// The API server and Prometheus listen in the control plane's network
	// namespace: run there.
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", env.CPNS.Name, bin, "generate", "--prometheus.url=http://"+env.Prom.Addr, "--kubeconfig="+kc,
		"--networks.file="+nets, "--dns.service=", "--guardrails.skip", "--namespace="+ns, "--print", "--output.dir="+out)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	fmt.Printf("\n>>> The NetworkPolicies of namespace %s, learned from the baseline (shop/debug -> shop/db is not in them):\n\n", ns)
	if err := cmd.Run(); err != nil {
		return err
	}
	fmt.Printf("\n>>> Apply them:  ip netns exec %s kubectl --kubeconfig=%s apply -k %s\n\n", env.CPNS.Name, kc, filepath.Join(out, ns))
	return nil
}
