package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"

	"github.com/podflow/podflow/e2e/harness"
)

// policyTool is the podflow-policy binary `make e2e` builds.
func policyTool(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("PODFLOW_POLICY_BIN")
	if bin == "" || !exists(bin) {
		t.Skip("PODFLOW_POLICY_BIN unset or missing: run through `make e2e`")
	}
	return bin
}

// adminPolicyCRDs is the experimental CRD folder of the network-policy-api
// module the policy module pins, from the module cache: the denylist
// guardrail's networks peer is in the experimental channel.
func adminPolicyCRDs(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("go", "list", "-m", "-json", "sigs.k8s.io/network-policy-api")
	cmd.Dir = filepath.Join(repoRoot, "policy")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list the network-policy-api module: %v", err)
	}
	var m struct{ Dir string }
	if err := json.Unmarshal(out, &m); err != nil || m.Dir == "" {
		t.Fatalf("network-policy-api module not in the module cache: %s", out)
	}
	return filepath.Join(m.Dir, "config", "crd", "experimental")
}

// nftQueue tells whether the kernel has nftables' queue statement, which
// the kube-network-policies daemon enforces with.
func nftQueue() (bool, string) {
	script := "add table inet pfq\nadd chain inet pfq c { type filter hook input priority 0; }\nadd rule inet pfq c queue num 100 bypass\n"
	cmd := exec.Command("unshare", "--net", "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return false, strings.TrimSpace(string(out))
	}
	return true, ""
}

type policyRun struct {
	t     *testing.T
	netns string
	bin   string
	args  []string
}

// run runs podflow-policy in the control plane's network namespace, where
// the API server and Prometheus listen, and returns its output and exit
// status.
func (p policyRun) run(ctx context.Context, args ...string) (string, int) {
	p.t.Helper()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", p.netns, p.bin}, append(args, p.args...)...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		p.t.Fatalf("podflow-policy %v: %v", args, err)
	}
	return out.String(), code
}

// applyTree applies every manifest under dir (server-side, for real) and
// returns the objects for cleanup.
func applyTree(ctx context.Context, t *testing.T, dyn dynamic.Interface, dir string) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Base(p) == "kustomization.yaml" {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var o unstructured.Unstructured
		if err := yaml.Unmarshal(data, &o.Object); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		objs = append(objs, &o)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		ri := resource(dyn, o)
		data, err := o.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ri.Patch(ctx, o.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: "podflow-e2e", Force: ptrTrue()}); err != nil {
			t.Errorf("apply %s %s/%s: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
	}
	return objs
}

func resource(dyn dynamic.Interface, o *unstructured.Unstructured) dynamic.ResourceInterface {
	switch o.GetKind() {
	case "NetworkPolicy":
		return dyn.Resource(schema.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: "networkpolicies"}).Namespace(o.GetNamespace())
	default:
		return dyn.Resource(schema.GroupVersionResource{Group: "policy.networking.k8s.io", Version: "v1alpha1", Resource: "adminnetworkpolicies"})
	}
}

// verdicts parses diff --verbose: verdict by "source -> destination proto/port".
func verdicts(out string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || (f[0] != "allow" && f[0] != "DENY" && f[0] != "skip") {
			continue
		}
		// VERDICT SRC (KIND) DST (KIND) PORT ...
		m[f[1]+" "+f[2]+" -> "+f[3]+" "+f[4]+" "+f[5]] = f[0]
	}
	return m
}

func pairKey(srcNS, src, srcKind, dstNS, dst, dstKind, proto, port string) string {
	e := func(ns, w, k string) string {
		if ns == "" {
			return w + " (" + k + ")"
		}
		return ns + "/" + w + " (" + k + ")"
	}
	return e(srcNS, src, srcKind) + " -> " + e(dstNS, dst, dstKind) + " " + proto + "/" + port
}

// TestPolicyFromBaseline learns policies from the backfilled baseline,
// applies them to the API server, and has kube-network-policies judge every
// observed pair: the baseline passes, an unexpected pair and a forbidden
// namespace pair do not, and diff names exactly what is denied.
func TestPolicyFromBaseline(t *testing.T) {
	s := needAlerting(t)
	bin := policyTool(t)
	ctx := context.Background()
	e := s.Env
	if ok, why := nftQueue(); !ok {
		t.Logf("kernel without nftables queue (CONFIG_NFT_QUEUE; nft said %q): the kube-network-policies daemon cannot enforce here, so its part is skipped; the evaluator check runs", why)
	} else {
		t.Logf("kernel has nftables queue, but this scenario does not run the kube-network-policies daemon yet: only the evaluator check runs")
	}

	dyn, err := dynamic.NewForConfig(e.CP.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	// The module's CRD folder also holds its kustomization files.
	crds := t.TempDir()
	for _, name := range []string{"policy.networking.k8s.io_adminnetworkpolicies.yaml", "policy.networking.k8s.io_baselineadminnetworkpolicies.yaml"} {
		data, err := os.ReadFile(filepath.Join(adminPolicyCRDs(t), name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(crds, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	installCRDs(ctx, t, dyn, crds)

	// Two pods in namespaces of their own, with no baseline and so no
	// NetworkPolicy: only the AdminNetworkPolicy can stop them.
	var probes []*harness.Pod
	for _, ns := range []string{"policy-a", "policy-b"} {
		w, err := e.BarePod(ctx, ns, "probe")
		if err != nil {
			t.Fatal(err)
		}
		p, err := e.AddPod(ctx, w, s.Nodes[0])
		if err != nil {
			t.Fatal(err)
		}
		probes = append(probes, p)
	}

	dir := t.TempDir()
	values := filepath.Join(dir, "rules-values.yaml")
	nets := filepath.Join(dir, "networks.yaml")
	if err := os.WriteFile(values, []byte("forbidden_namespace_pairs:\n  - source_namespace: policy-a\n    destination_namespace: policy-b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(nets, []byte(harness.NetworksFile), 0o600); err != nil {
		t.Fatal(err)
	}
	kc, err := e.CP.Kubeconfig("admin")
	if err != nil {
		t.Fatal(err)
	}
	tool := policyRun{t: t, netns: e.CPNS.Name, bin: bin, args: []string{
		"--prometheus.url=http://" + e.Prom.Addr, "--kubeconfig=" + kc,
		"--rules.config=" + values, "--networks.file=" + nets, "--dns.service=",
	}}

	out := filepath.Join(dir, "policies")
	report, code := tool.run(ctx, "generate", "--output.dir="+out)
	t.Logf("podflow-policy generate:\n%s", report)
	if code != 0 {
		t.Fatalf("generate exited %d", code)
	}
	applied := applyTree(ctx, t, dyn, out)
	t.Cleanup(func() {
		for _, o := range applied {
			_ = resource(dyn, o).Delete(context.Background(), o.GetName(), metav1.DeleteOptions{})
		}
	})
	var nps, anps int
	// The workloads a generated NetworkPolicy selects, as diff names them:
	// traffic between two workloads that none selects stays allowed
	// (NetworkPolicy isolates only the pods it selects).
	isolated := map[string]bool{}
	for _, o := range applied {
		if o.GetKind() == "NetworkPolicy" {
			nps++
			if kind, name, ok := strings.Cut(o.GetAnnotations()["podflow.io/workload"], "/"); ok {
				isolated[o.GetNamespace()+"/"+name+" ("+kind+")"] = true
			}
		} else {
			anps++
		}
	}
	if nps == 0 || anps != 2 {
		t.Fatalf("applied %d NetworkPolicies and %d AdminNetworkPolicies; want some, and the denylist's and the forbidden pair's", nps, anps)
	}
	t.Logf("the API server accepted %d NetworkPolicies and %d AdminNetworkPolicies", nps, anps)

	// Every pair and port of the baseline passes.
	base, code := tool.run(ctx, "diff", "--verbose")
	t.Logf("podflow-policy diff (baseline):\n%s", base)
	if code != 0 {
		t.Fatalf("diff of the baseline exited %d: the generated policies deny observed traffic", code)
	}
	baseline := verdicts(base)
	for _, k := range []string{
		pairKey("shop", "frontend", "Deployment", "shop", "checkout", "Deployment", "TCP", "8080"),
		pairKey("shop", "checkout", "Deployment", "shop", "db", "StatefulSet", "TCP", "5432"),
	} {
		if baseline[k] != "allow" {
			t.Errorf("baseline pair %s: %q, want allow", k, baseline[k])
		}
	}
	// What the engine was not asked about is only what NetworkPolicy cannot
	// express (ICMP) or a peer without an address to ask with (a node with
	// no Node object, such as the control plane).
	for k, v := range baseline {
		if v == "skip" && !strings.Contains(k, "ICMP") && !strings.Contains(k, "(Node)") {
			t.Errorf("baseline pair %s was not evaluated", k)
		}
	}

	// New traffic: a pair the baseline never saw, and the forbidden one.
	db, debug := s.Pod("shop/db"), s.Pod("shop/debug")
	// The alert scenario may have left its sink on shop/db:5432 running
	// (sinks live as long as the sandbox): reuse it.
	if _, err := e.TCPSink(db.NS, 5432, true); err != nil && !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatal(err)
	}
	if _, err := e.TCPSink(probes[1].NS, 7070, true); err != nil {
		t.Fatal(err)
	}
	if err := harness.TCPExchange(ctx, debug.NS, netip.AddrPortFrom(db.IPv4, 5432), 300, true); err != nil {
		t.Fatal(err)
	}
	if err := harness.TCPExchange(ctx, probes[0].NS, netip.AddrPortFrom(probes[1].IPv4, 7070), 300, true); err != nil {
		t.Fatal(err)
	}
	unexpected := pairKey("shop", "debug", "Pod", "shop", "db", "StatefulSet", "TCP", "5432")
	forbidden := pairKey("policy-a", "probe", "Pod", "policy-b", "probe", "Pod", "TCP", "7070")
	deadline := time.Now().Add(2 * time.Minute)
	for {
		// diff reads increase() over the window, which needs two samples.
		n, err := e.Query(ctx, `increase(podflow_bytes_total{source_namespace="policy-a",destination_namespace="policy-b"}[15m]) or increase(podflow_bytes_total{source_workload="debug",destination_workload="db",destination_port="5432"}[15m])`)
		if err != nil {
			t.Fatal(err)
		}
		if len(n) >= 4 { // both pairs, both directions
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new pairs did not reach Prometheus: %v", n)
		}
		time.Sleep(2 * time.Second)
	}

	recentArgs := []string{"diff", "--observed=recent", "--baseline.window=15m", "--verbose"}
	recent, code := tool.run(ctx, recentArgs...)
	t.Logf("podflow-policy diff (recent):\n%s", recent)
	if code != 1 {
		t.Fatalf("diff of recent traffic exited %d, want 1 (something denied)", code)
	}
	got := verdicts(recent)
	if got[unexpected] != "DENY" || got[forbidden] != "DENY" {
		t.Errorf("unexpected pair %q: %q, forbidden pair %q: %q; want both DENY", unexpected, got[unexpected], forbidden, got[forbidden])
	}
	// Exactly the recent pairs outside the baseline are denied: every
	// recent pair the baseline holds is allowed, every other one with an
	// end that a generated policy isolates is denied (or not evaluable,
	// such as ICMP). Pairs between workloads that no policy selects (other
	// scenarios' namespaces, started after the baseline) stay allowed.
	var wrong []string
	checked := 0
	for k, v := range got {
		bv, known := baseline[k]
		src, dst, _ := strings.Cut(k, " -> ")
		dst, _, _ = strings.Cut(dst, ") ")
		covered := isolated[src] || isolated[dst+")"]
		switch {
		case v == "skip":
		case known && bv == "allow" && v != "allow":
			wrong = append(wrong, k+": in the baseline but "+v)
		case !known && covered && v != "DENY" && !strings.HasSuffix(k, "/53"): // port 53 is always allowed
			wrong = append(wrong, k+": outside the baseline but "+v)
		case !known && covered:
			checked++
		}
	}
	if checked == 0 {
		t.Errorf("no recent pair outside the baseline touches a workload the generated policies isolate: %v", isolated)
	}
	sort.Strings(wrong)
	if len(wrong) > 0 {
		t.Errorf("diff of recent traffic disagrees with the baseline:\n%s", strings.Join(wrong, "\n"))
	}

	// The forbidden pair is the AdminNetworkPolicy's doing: without admin
	// policies nothing stops it (neither probe has a NetworkPolicy).
	noAdmin, _ := tool.run(ctx, append(recentArgs, "--no-admin-policies")...)
	if v := verdicts(noAdmin)[forbidden]; v != "allow" {
		t.Errorf("without AdminNetworkPolicies the forbidden pair is %q, want allow:\n%s", v, noAdmin)
	}
}
