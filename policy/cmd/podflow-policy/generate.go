package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/podflow/podflow/policy/internal/generate"
	"github.com/podflow/podflow/policy/internal/guardrail"
	"github.com/podflow/podflow/policy/internal/output"
	"github.com/podflow/podflow/policy/prom"

	"github.com/alecthomas/kingpin/v2"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

type generateCmd struct {
	common
	dir            string
	minHours       int
	learning       string
	nodes          string
	namespaces     []string
	anpPriority    int32
	skipGuardrails bool
	print          bool
}

func (g *generateCmd) register(cmd *kingpin.CmdClause) {
	cmd.Flag("output.dir", "Folder of the kustomization tree (one folder per namespace, cluster-guardrails/). Files an earlier run wrote are replaced; others are kept.").
		Required().StringVar(&g.dir)
	cmd.Flag("baseline.min-active-hours", "Evidence a pair and port need: hours of the window in which podflow saw them. 1 allows what the new-communication alerts treat as known.").
		Default("1").IntVar(&g.minHours)
	cmd.Flag("baseline.learning", "Exporter uptime the baseline must cover before policies are generated; the rules' learning.cluster when empty, 0 to skip the check.").
		StringVar(&g.learning)
	cmd.Flag("nodes", "Node traffic (kubelet probes, hostNetwork pods): ipblock allows node addresses as /32 ipBlocks; omit leaves it out (CNIs that always allow it). See docs/policy.md.").
		Default(string(generate.NodesIPBlock)).EnumVar(&g.nodes, string(generate.NodesIPBlock), string(generate.NodesOmit))
	cmd.Flag("namespace", "Write policies only for workloads of this namespace (repeatable); all when absent.").StringsVar(&g.namespaces)
	cmd.Flag("guardrails.priority", "Priority of the first AdminNetworkPolicy (the denylist); each forbidden pair takes the next.").Default("20").Int32Var(&g.anpPriority)
	cmd.Flag("guardrails.skip", "Do not write the cluster guardrails.").BoolVar(&g.skipGuardrails)
	cmd.Flag("print", "Also print the generated manifests to standard output.").BoolVar(&g.print)
}

func (g *generateCmd) run(ctx context.Context, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	e, pairs, inv, err := g.observe(ctx, g.dnsService, g.checkLearning)
	if err != nil {
		return err
	}
	res := generate.Generate(pairs, inv, e.nets, generate.Options{MinActiveHours: g.minHours, Nodes: generate.NodeMode(g.nodes)})
	if len(g.namespaces) > 0 {
		res = onlyNamespaces(res, g.namespaces)
	}
	var guard guardrail.Result
	if !g.skipGuardrails {
		if guard, err = guardrail.Build(e.rules, e.nets, inv.Namespaces, g.anpPriority); err != nil {
			return err
		}
	}
	if err := output.Write(g.dir, res, guard); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d observed pairs and ports over %s: %d NetworkPolicies, %d AdminNetworkPolicies in %s\n\n",
		len(pairs), model.Duration(e.window), len(res.Policies), len(guard.Policies), g.dir)
	if g.print {
		if err := output.Print(stdout, res, guard); err != nil {
			return err
		}
	}
	return output.Summary(stdout, res, guard)
}

func (g *generateCmd) checkLearning(ctx context.Context, e *env, api v1.API) error {
	need := e.rules.Learning.Cluster.D / 3_600_000
	if g.learning != "" {
		d, err := model.ParseDuration(g.learning)
		if err != nil {
			return fmt.Errorf("--baseline.learning: %w", err)
		}
		need = int64(time.Duration(d).Hours())
	}
	if need == 0 {
		return nil
	}
	have, err := prom.LearnedHours(ctx, api, e.api)
	if err != nil {
		return err
	}
	if int64(have) < need {
		return fmt.Errorf("the baseline covers %d hours of exporter uptime, %d are needed (--baseline.learning): policies from it would cut off traffic that has not been seen yet", have, need)
	}
	return nil
}

func onlyNamespaces(res generate.Result, nss []string) generate.Result {
	keep := func(ns string) bool { return slices.Contains(nss, ns) }
	out := res
	out.Policies = nil
	for _, p := range res.Policies {
		if keep(p.Namespace) {
			out.Policies = append(out.Policies, p)
		}
	}
	out.Omitted = nil
	for _, o := range res.Omitted {
		if keep(o.Namespace) || keep(o.Pair.Source.Namespace) && o.Namespace == "" || keep(o.Pair.Destination.Namespace) && o.Namespace == "" {
			out.Omitted = append(out.Omitted, o)
		}
	}
	return out
}
