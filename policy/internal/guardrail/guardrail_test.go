package guardrail_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/podflow/podflow/policy/internal/evaluate"
	"github.com/podflow/podflow/policy/internal/evaluate/evaluatetest"
	"github.com/podflow/podflow/policy/internal/guardrail"
	"github.com/podflow/podflow/policy/internal/networks"
	"github.com/podflow/podflow/rules/rulegen"
)

func values(t *testing.T, raw string) rulegen.Config {
	t.Helper()
	cfg, err := rulegen.Parse([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestGuardrailsDenyWhatTheRulesForbid has kube-network-policies judge the
// AdminNetworkPolicies built from the rules' values.
func TestGuardrailsDenyWhatTheRulesForbid(t *testing.T) {
	cfg := values(t, `
forbidden_namespace_pairs:
  - source_namespace: 'team-.*'
    destination_namespace: payments
  - source_namespace: nowhere
    destination_namespace: payments
`)
	nets, err := networks.Parse([]byte("networks:\n  denylist-tor: [203.0.113.0/24]\n  corp: [198.51.100.0/24]\n"))
	if err != nil {
		t.Fatal(err)
	}
	namespaces := []string{"payments", "team-a", "team-b", "web"}
	res, err := guardrail.Build(cfg, nets, namespaces, 20)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Policies) != 2 || len(res.Notes) != 1 || !strings.Contains(res.Notes[0], "nowhere") {
		t.Fatalf("want the denylist and one forbidden-pair policy, and a note on the pair that matches nothing; got %d policies, notes %q", len(res.Policies), res.Notes)
	}

	var core, admin []runtime.Object
	ips := map[string]string{}
	for i, ns := range namespaces {
		ip := fmt.Sprintf("10.0.0.%d", i+1)
		ips[ns] = ip
		core = append(core,
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"kubernetes.io/metadata.name": ns}}},
			&corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "p", Labels: map[string]string{"app": "p"}},
				Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
			})
	}
	for _, p := range res.Policies {
		admin = append(admin, p)
	}
	e, err := evaluate.New(t.Context(), fake.NewClientset(core...), evaluatetest.AdminPolicyClient(t, admin))
	if err != nil {
		t.Fatal(err)
	}
	a := func(s string) netip.Addr {
		if ip, ok := ips[s]; ok {
			s = ip
		}
		return netip.MustParseAddr(s)
	}
	for _, tc := range []struct {
		src, dst string
		want     bool
	}{
		{"team-a", "payments", false},
		{"team-b", "payments", false},
		{"payments", "team-a", true},
		{"web", "payments", true},
		{"team-a", "web", true},
		{"web", "203.0.113.9", false},
		{"payments", "203.0.113.9", false},
		{"web", "198.51.100.9", true},
	} {
		if got := e.Allowed(context.Background(), a(tc.src), a(tc.dst), 443, corev1.ProtocolTCP); got != tc.want {
			t.Errorf("%s -> %s: allowed %v, want %v", tc.src, tc.dst, got, tc.want)
		}
	}
}

func TestDenylistSplitsIntoRulesOf25(t *testing.T) {
	var b strings.Builder
	b.WriteString("networks:\n  denylist-big:\n")
	for i := range 30 {
		fmt.Fprintf(&b, "    - 192.0.2.%d\n", i)
	}
	nets, err := networks.Parse([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	res, err := guardrail.Build(rulegen.Default(), nets, nil, 20)
	if err != nil {
		t.Fatal(err)
	}
	eg := res.Policies[0].Spec.Egress
	if len(eg) != 2 || len(eg[0].To[0].Networks) != 25 || len(eg[1].To[0].Networks) != 5 {
		t.Fatalf("30 denylisted prefixes: want rules of 25 and 5, got %+v", eg)
	}
}

func TestBadForbiddenExpression(t *testing.T) {
	cfg := rulegen.Default()
	cfg.ForbiddenNamespacePairs = []rulegen.NamespacePair{{SourceNamespace: "(", DestinationNamespace: "x"}}
	if _, err := guardrail.Build(cfg, networks.Networks{}, []string{"x"}, 20); err == nil {
		t.Fatal("an invalid regular expression was accepted")
	}
}
