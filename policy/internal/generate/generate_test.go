package generate_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/podflow/podflow/policy/internal/diff"
	"github.com/podflow/podflow/policy/internal/evaluate"
	"github.com/podflow/podflow/policy/internal/generate"
	"github.com/podflow/podflow/policy/internal/guardrail"
	"github.com/podflow/podflow/policy/internal/inventory"
	"github.com/podflow/podflow/policy/internal/networks"
	"github.com/podflow/podflow/policy/internal/output"
	"github.com/podflow/podflow/policy/prom"
)

// cluster is a small cluster: shop/web (Deployment) talks to shop/db
// (StatefulSet) and to the internet, ops/scraper (Deployment) scrapes both,
// the node n1 probes web.
type cluster struct {
	inv  *inventory.Inventory
	objs []runtime.Object
	nets networks.Networks
}

func newCluster(t *testing.T) cluster {
	c := cluster{inv: &inventory.Inventory{
		Workloads:  map[inventory.Key]inventory.Workload{},
		Namespaces: []string{"kube-system", "ops", "shop"},
		Nodes:      map[string][]netip.Addr{"n1": {netip.MustParseAddr("192.168.1.1")}},
		DNS: &inventory.DNS{Namespace: "kube-system", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "kube-dns"}},
			Ports: []corev1.ServicePort{{Protocol: corev1.ProtocolUDP, Port: 53}, {Protocol: corev1.ProtocolTCP, Port: 53}}},
	}}
	for _, ns := range c.inv.Namespaces {
		c.objs = append(c.objs, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"kubernetes.io/metadata.name": ns}}})
	}
	add := func(ns, kind, name, ip string, labels map[string]string) {
		k := inventory.Key{Namespace: ns, Kind: kind, Name: name}
		sel := inventory.Stable(&metav1.LabelSelector{MatchLabels: labels})
		c.inv.Workloads[k] = inventory.Workload{Key: k, Selector: sel}
		a := netip.MustParseAddr(ip)
		c.inv.Pods = append(c.inv.Pods, inventory.Pod{Namespace: ns, Labels: labels, IP: a, Owner: k})
		c.objs = append(c.objs, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-0", Labels: labels},
			Spec:       corev1.PodSpec{NodeName: "n1"},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
		})
	}
	add("shop", "Deployment", "web", "10.1.0.1", map[string]string{"app": "web", "pod-template-hash": "abc"})
	add("shop", "StatefulSet", "db", "10.1.0.2", map[string]string{"app": "db", "controller-revision-hash": "x1"})
	add("ops", "Deployment", "scraper", "10.1.0.3", map[string]string{"app": "scraper"})
	add("kube-system", "Deployment", "coredns", "10.1.0.53", map[string]string{"k8s-app": "kube-dns"})
	nets, err := networks.Parse([]byte("networks:\n  corp: [10.200.0.0/16]\n  denylist-bad: [203.0.113.0/24]\n"))
	if err != nil {
		t.Fatal(err)
	}
	c.nets = nets
	return c
}

func ep(ns, name, kind string) prom.Endpoint {
	return prom.Endpoint{Namespace: ns, Workload: name, Kind: kind}
}

var (
	web     = ep("shop", "web", "Deployment")
	db      = ep("shop", "db", "StatefulSet")
	scraper = ep("ops", "scraper", "Deployment")
	dns     = ep("kube-system", "coredns", "Deployment")
)

func baseline() []prom.Pair {
	ps := []prom.Pair{
		{Source: web, Destination: db, Port: 5432, Protocol: "TCP", ActiveHours: 800, Bytes: 1e9},
		{Source: web, Destination: ep("", "internet", "Network"), Port: 443, Protocol: "TCP", ActiveHours: 20},
		{Source: web, Destination: ep("", "corp", "Network"), Port: 8443, Protocol: "TCP", ActiveHours: 20},
		{Source: scraper, Destination: web, Port: 9090, Protocol: "TCP", ActiveHours: 840},
		{Source: scraper, Destination: db, Port: 9187, Protocol: "TCP", ActiveHours: 840},
		{Source: ep("", "n1", "Node"), Destination: web, Port: 8080, Protocol: "TCP", ActiveHours: 840},
		{Source: web, Destination: dns, Port: 53, Protocol: "UDP", ActiveHours: 840},
	}
	prom.SortPairs(ps)
	return ps
}

func TestGenerateAllowsTheBaselineAndNothingElse(t *testing.T) {
	c := newCluster(t)
	pairs := append(baseline(),
		prom.Pair{Source: web, Destination: ep("", "", "Unknown"), Port: 80, Protocol: "TCP", ActiveHours: 5, Bytes: 1234},
		prom.Pair{Source: scraper, Destination: db, Port: 0, Protocol: "ICMP", ActiveHours: 5},
		prom.Pair{Source: scraper, Destination: web, Port: 22, Protocol: "TCP", ActiveHours: 0},
	)
	res := generate.Generate(pairs, c.inv, c.nets, generate.Options{MinActiveHours: 1, Nodes: generate.NodesIPBlock})
	if len(res.Policies) != 4 {
		t.Fatalf("want a policy each for web, db, scraper and coredns, got %d", len(res.Policies))
	}
	for _, np := range res.Policies {
		for k := range np.Spec.PodSelector.MatchLabels {
			if k == "pod-template-hash" || k == "controller-revision-hash" {
				t.Errorf("%s selects by the per-revision label %s", np.Name, k)
			}
		}
	}
	reasons := map[string]bool{}
	for _, o := range res.Omitted {
		reasons[o.Pair.Destination.Kind+"/"+o.Pair.Protocol+"/"+strings.Fields(o.Reason)[0]] = true
	}
	for _, want := range []string{"Unknown/TCP/an", "StatefulSet/ICMP/NetworkPolicy", "Deployment/TCP/seen"} {
		if !reasons[want] {
			t.Errorf("omission %s missing from %v", want, reasons)
		}
	}

	objs := append([]runtime.Object{}, c.objs...)
	for _, np := range res.Policies {
		objs = append(objs, np)
	}
	engine, err := evaluate.New(t.Context(), fake.NewClientset(objs...), nil)
	if err != nil {
		t.Fatal(err)
	}
	r := diff.Resolver{Inv: c.inv, Nets: c.nets}
	for _, v := range diff.Check(context.Background(), engine, r, baseline()) {
		if !v.Evaluated || !v.Allowed {
			t.Errorf("baseline pair %s -> %s %s/%d: evaluated %v allowed %v (%s)", v.Pair.Source, v.Pair.Destination, v.Pair.Protocol, v.Pair.Port, v.Evaluated, v.Allowed, v.Reason)
		}
	}
	unexpected := []prom.Pair{
		{Source: scraper, Destination: db, Port: 5432, Protocol: "TCP"},                      // a peer on another's port
		{Source: web, Destination: db, Port: 5433, Protocol: "TCP"},                          // a new port
		{Source: db, Destination: web, Port: 9090, Protocol: "TCP"},                          // the reverse direction
		{Source: web, Destination: ep("", "private", "Network"), Port: 443, Protocol: "TCP"}, // a network never seen
		{Source: web, Destination: scraper, Port: 53, Protocol: "UDP"},                       // DNS port, not the DNS pods
	}
	for _, v := range diff.Check(context.Background(), engine, r, unexpected) {
		if !v.Evaluated || v.Allowed {
			t.Errorf("unexpected pair %s -> %s %s/%d: evaluated %v allowed %v (%s)", v.Pair.Source, v.Pair.Destination, v.Pair.Protocol, v.Pair.Port, v.Evaluated, v.Allowed, v.Reason)
		}
	}
	// DNS is always allowed, seen or not: db never asked, over TCP.
	dnsQuery := diff.Check(context.Background(), engine, r, []prom.Pair{{Source: db, Destination: dns, Port: 53, Protocol: "TCP"}})
	if !dnsQuery[0].Evaluated || !dnsQuery[0].Allowed {
		t.Errorf("DNS over TCP to the cluster DNS: %+v", dnsQuery[0])
	}
}

// TestGenerateOutputIsStable compares the written tree with a golden copy:
// the same baseline gives the same bytes, in an order that diffs well.
func TestGenerateOutputIsStable(t *testing.T) {
	c := newCluster(t)
	res := generate.Generate(baseline(), c.inv, c.nets, generate.Options{MinActiveHours: 1, Nodes: generate.NodesIPBlock})
	guard, err := guardrail.Build(guardrailValues(t), c.nets, c.inv.Namespaces, 20)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "keep.yaml"), []byte("kind: Mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "gone"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "gone", "old.yaml"), []byte(output.Header+"kind: Old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := output.Write(dir, res, guard); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "gone", "old.yaml")); !os.IsNotExist(err) {
		t.Error("a file an earlier run wrote survived")
	}
	if _, err := os.Stat(filepath.Join(dir, "keep.yaml")); err != nil {
		t.Error("a file podflow-policy did not write was removed")
	}
	var got strings.Builder
	if err := output.Print(&got, res, guard); err != nil {
		t.Fatal(err)
	}
	if err := output.Summary(&got, res, guard); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "generated.golden")
	if os.Getenv("UPDATE_GOLDEN") != "" {
		if err := os.WriteFile(golden, []byte(got.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != string(want) {
		t.Errorf("output differs from %s (UPDATE_GOLDEN=1 rewrites it):\n%s", golden, got.String())
	}
}
