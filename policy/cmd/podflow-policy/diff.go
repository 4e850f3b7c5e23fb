package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/alecthomas/kingpin/v2"
	"k8s.io/client-go/kubernetes"
	npaclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/podflow/podflow/policy/internal/diff"
	"github.com/podflow/podflow/policy/internal/evaluate"
	"github.com/podflow/podflow/policy/prom"
)

type diffCmd struct {
	common
	admin    bool
	verbose  bool
	observed string
}

func (d *diffCmd) register(cmd *kingpin.CmdClause) {
	cmd.Flag("admin-policies", "Evaluate AdminNetworkPolicies and BaselineAdminNetworkPolicies too (their CRDs must be installed).").
		Default("true").BoolVar(&d.admin)
	cmd.Flag("observed", "Which traffic to check: baseline (the hourly series the baseline keeps, over --baseline.window) or recent (podflow's counters, over a --baseline.window within the raw retention, e.g. 1h).").
		Default("baseline").EnumVar(&d.observed, "baseline", "recent")
	cmd.Flag("verbose", "List every observed pair with its verdict, not only the denied ones.").BoolVar(&d.verbose)
}

func (d *diffCmd) run(ctx context.Context, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	if d.observed == "recent" {
		d.tier = prom.Raw
	}
	e, pairs, inv, err := d.observe(ctx, "", nil)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(e.kube)
	if err != nil {
		return err
	}
	var npa npaclient.Interface
	if d.admin {
		if npa, err = e.npa(); err != nil {
			return err
		}
	}
	engine, err := evaluate.New(ctx, client, npa)
	if err != nil {
		return err
	}
	verdicts := diff.Check(ctx, engine, diff.Resolver{Inv: inv, Nets: e.nets}, pairs)
	return report(stdout, verdicts, d.verbose)
}

func report(w io.Writer, vs []diff.Verdict, verbose bool) error {
	denied, skipped := 0, 0
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERDICT\tSOURCE\tDESTINATION\tPORT\tHOURS\tBYTES\tNOTE")
	for _, v := range vs {
		verdict := "allow"
		switch {
		case !v.Evaluated:
			verdict = "skip"
			skipped++
		case !v.Allowed:
			verdict = "DENY"
			denied++
		}
		if verdict == "allow" && !verbose || verdict == "skip" && !verbose {
			continue
		}
		note := v.Reason
		if v.Evaluated {
			note = fmt.Sprintf("%s -> %s", v.Src, v.Dst)
		}
		p := v.Pair
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s/%d\t%d\t%.0f\t%s\n", verdict, p.Source, p.Destination, p.Protocol, p.Port, p.ActiveHours, p.Bytes, note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n%d observed pairs and ports: %d allowed, %d denied, %d not evaluated (--verbose lists them)\n",
		len(vs), len(vs)-denied-skipped, denied, skipped)
	if denied > 0 {
		return fmt.Errorf("%w: %d pairs and ports", errDenied, denied)
	}
	return nil
}
