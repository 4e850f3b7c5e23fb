package evaluate

import (
	"context"
	"net/netip"
	"testing"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/podflow/podflow/policy/internal/evaluate/evaluatetest"
	npav1alpha1 "sigs.k8s.io/network-policy-api/apis/v1alpha1"
)

func ns(name string) *v1.Namespace {
	return &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/metadata.name": name}}}
}

func pod(namespace, name, ip string, labels map[string]string) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: labels},
		Spec:       v1.PodSpec{NodeName: "n1"},
		Status:     v1.PodStatus{Phase: v1.PodRunning, PodIP: ip, PodIPs: []v1.PodIP{{IP: ip}}},
	}
}

// testObjects: in namespace a, x may reach y on TCP 80 only; namespace b
// has no policy. The AdminNetworkPolicy denies a to b.
func testObjects() ([]runtime.Object, []runtime.Object) {
	tcp := v1.ProtocolTCP
	port := intstr.FromInt32(80)
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "y"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "y"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}},
			}},
		},
	}
	anp := &npav1alpha1.AdminNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "deny-a-to-b"},
		Spec: npav1alpha1.AdminNetworkPolicySpec{
			Priority: 10,
			Subject:  npav1alpha1.AdminNetworkPolicySubject{Namespaces: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "a"}}},
			Egress: []npav1alpha1.AdminNetworkPolicyEgressRule{{
				Name:   "b",
				Action: npav1alpha1.AdminNetworkPolicyRuleActionDeny,
				To:     []npav1alpha1.AdminNetworkPolicyEgressPeer{{Namespaces: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "b"}}}},
			}},
		},
	}
	core := []runtime.Object{
		ns("a"), ns("b"),
		pod("a", "x", "10.0.0.1", map[string]string{"app": "x"}),
		pod("a", "y", "10.0.0.2", map[string]string{"app": "y"}),
		pod("a", "z", "10.0.0.3", map[string]string{"app": "z"}),
		pod("b", "w", "10.0.1.1", map[string]string{"app": "w"}),
		np,
	}
	return core, []runtime.Object{anp}
}

type conn struct {
	src, dst netip.Addr
	port     int
	proto    v1.Protocol
}

func TestEngineVerdicts(t *testing.T) {
	ctx := t.Context()
	core, admin := testObjects()
	e, err := New(ctx, fake.NewClientset(core...), evaluatetest.AdminPolicyClient(t, admin))
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr
	for _, tc := range []struct {
		name string
		c    conn
		want bool
	}{
		{"allowed port", conn{a("10.0.0.1"), a("10.0.0.2"), 80, v1.ProtocolTCP}, true},
		{"other port", conn{a("10.0.0.1"), a("10.0.0.2"), 81, v1.ProtocolTCP}, false},
		{"other protocol", conn{a("10.0.0.1"), a("10.0.0.2"), 80, v1.ProtocolUDP}, false},
		{"other source", conn{a("10.0.0.3"), a("10.0.0.2"), 80, v1.ProtocolTCP}, false},
		{"no policy on destination", conn{a("10.0.0.2"), a("10.0.0.3"), 9, v1.ProtocolTCP}, true},
		{"admin deny", conn{a("10.0.0.1"), a("10.0.1.1"), 80, v1.ProtocolTCP}, false},
		{"admin deny does not cover b to a", conn{a("10.0.1.1"), a("10.0.0.3"), 80, v1.ProtocolTCP}, true},
		{"outside address", conn{a("10.0.0.3"), a("192.0.2.1"), 443, v1.ProtocolTCP}, true},
	} {
		if got := e.Allowed(context.Background(), tc.c.src, tc.c.dst, tc.c.port, tc.c.proto); got != tc.want {
			t.Errorf("%s: allowed = %v, want %v", tc.name, got, tc.want)
		}
	}
}
