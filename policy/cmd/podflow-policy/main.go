// Command podflow-policy turns the traffic podflow recorded in Prometheus
// into NetworkPolicies and AdminNetworkPolicies (generate), and tells which
// observed traffic a cluster's existing policies would deny (diff).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	npaclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/podflow/podflow/policy/internal/inventory"
	"github.com/podflow/podflow/policy/internal/networks"
	"github.com/podflow/podflow/policy/prom"
	"github.com/podflow/podflow/rules/rulegen"
)

// errDenied ends diff with exit status 1: observed traffic would be denied.
var errDenied = errors.New("observed traffic would be denied")

// common holds the options of both commands.
type common struct {
	prom        prom.Config
	kubeconfig  string
	rulesConfig string
	window      string
	matchers    string
	networks    string
	dnsService  string
	timeout     time.Duration
	tier        prom.Tier
}

func (c *common) register(cmd *kingpin.CmdClause) {
	cmd.Flag("kubeconfig", "Kubeconfig file; in-cluster configuration when empty.").Envar("KUBECONFIG").StringVar(&c.kubeconfig)
	cmd.Flag("rules.config", "Values file the podflow rules are rendered from (rules/config.yaml); the shipped defaults when empty.").StringVar(&c.rulesConfig)
	cmd.Flag("baseline.window", "How far back observed traffic counts; the rules' baseline.window when empty.").StringVar(&c.window)
	cmd.Flag("prometheus.matchers", `Extra label matchers for every series read, without braces (cluster="prod").`).StringVar(&c.matchers)
	cmd.Flag("networks.file", "podflow's networks file (docs/networks.md): the prefixes of each Network peer.").StringVar(&c.networks)
	cmd.Flag("dns.service", "namespace/name of the cluster DNS Service, whose pods every workload may reach; empty allows port 53 to anywhere.").
		Default("kube-system/kube-dns").StringVar(&c.dnsService)
	cmd.Flag("timeout", "Time limit of the whole run.").Default("5m").DurationVar(&c.timeout)
}

type env struct {
	rules  rulegen.Config
	window time.Duration
	api    prom.Query
	kube   *rest.Config
	nets   networks.Networks
}

func (c *common) load() (*env, error) {
	cfg := rulegen.Default()
	if c.rulesConfig != "" {
		var err error
		if cfg, err = rulegen.Load(c.rulesConfig); err != nil {
			return nil, fmt.Errorf("--rules.config: %w", err)
		}
	}
	window := time.Duration(cfg.Baseline.Window.D) * time.Millisecond
	if c.window != "" {
		d, err := model.ParseDuration(c.window)
		if err != nil {
			return nil, fmt.Errorf("--baseline.window: %w", err)
		}
		window = time.Duration(d)
	}
	nets, err := networks.Load(c.networks)
	if err != nil {
		return nil, fmt.Errorf("--networks.file: %w", err)
	}
	kube, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: c.kubeconfig}, nil).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return &env{
		rules:  cfg,
		window: window,
		api:    prom.Query{Window: window, Tier: c.tier, Matchers: c.matchers, JobSelector: cfg.JobSelector},
		kube:   kube,
		nets:   nets,
	}, nil
}

// observe loads the options, runs check (if any) against Prometheus, and
// reads the observed pairs and the cluster's inventory.
func (c *common) observe(ctx context.Context, dns string, check func(context.Context, *env, v1.API) error) (*env, []prom.Pair, *inventory.Inventory, error) {
	e, err := c.load()
	if err != nil {
		return nil, nil, nil, err
	}
	api, err := prom.NewAPI(c.prom)
	if err != nil {
		return nil, nil, nil, err
	}
	if check != nil {
		if err := check(ctx, e, api); err != nil {
			return nil, nil, nil, err
		}
	}
	pairs, err := prom.ObservedPairs(ctx, api, e.api)
	if err != nil {
		return nil, nil, nil, err
	}
	client, err := kubernetes.NewForConfig(e.kube)
	if err != nil {
		return nil, nil, nil, err
	}
	inv, err := inventory.Load(ctx, client, inventory.Options{DNSService: dns})
	if err != nil {
		return nil, nil, nil, err
	}
	return e, pairs, inv, nil
}

func (e *env) npa() (npaclient.Interface, error) { return npaclient.NewForConfig(e.kube) }

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	app := kingpin.New("podflow-policy", "NetworkPolicies from the traffic podflow observed, and which observed traffic existing policies would deny.")
	app.HelpFlag.Short('h')
	app.UsageWriter(stderr)
	app.ErrorWriter(stderr)

	var promCfg prom.Config
	promCfg.RegisterFlags(app)

	var gen generateCmd
	genCmd := app.Command("generate", "Write one NetworkPolicy per workload and the cluster guardrails (AdminNetworkPolicies) as a kustomization tree, and print the review summary.")
	gen.common.register(genCmd)
	gen.register(genCmd)

	var dif diffCmd
	difCmd := app.Command("diff", "List the observed pairs and ports that the cluster's NetworkPolicies and AdminNetworkPolicies would deny (exit status 1 if any).")
	dif.common.register(difCmd)
	dif.register(difCmd)

	cmd, err := app.Parse(args)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch cmd {
	case genCmd.FullCommand():
		gen.prom = promCfg
		err = gen.run(ctx, stdout)
	case difCmd.FullCommand():
		dif.prom = promCfg
		err = dif.run(ctx, stdout)
	}
	switch {
	case errors.Is(err, errDenied):
		fmt.Fprintln(stderr, err)
		return 1
	case err != nil:
		fmt.Fprintln(stderr, "podflow-policy:", err)
		return 2
	}
	return 0
}
