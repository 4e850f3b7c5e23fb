package kube

import (
	"net/netip"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podflow/podflow/exporter/internal/attribute"
	"github.com/podflow/podflow/exporter/internal/flow"
)

// TestReporterRule runs the exactly-once rule of the attribute package on
// the endpoints this package builds from cluster objects: for every kind
// of connection, exactly one of the three nodes' instances reports it,
// and it is the expected one.
func TestReporterRule(t *testing.T) {
	c := newCluster(t, Config{
		PodCIDRs:     []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd00:10:244::/48")},
		ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")},
	},
		node("n1", nil, "192.168.0.1"),
		node("n2", nil, "192.168.0.2"),
		node("n3", nil, "192.168.0.3"),
		replicaSet("shop", "web-5f7", ref("Deployment", "web")),
		pod("shop", "web-5f7-a", "n1", []string{"10.244.1.10", "fd00:10:244:1::10"}, owned("ReplicaSet", "web-5f7")),
		pod("shop", "cart-0", "n1", []string{"10.244.1.11"}, owned("StatefulSet", "cart")),
		pod("data", "db-0", "n2", []string{"10.244.2.20", "fd00:10:244:2::20"}, owned("StatefulSet", "db")),
		pod("kube-system", "proxy-n2", "n2", []string{"192.168.0.2"}, hostNet(), owned("DaemonSet", "kube-proxy")),
		service("data", "db", "10.96.0.20", "fd00:10:96::20"),
	)
	// Wait until the last object is indexed.
	c.expect("10.96.0.20", flow.Endpoint{Namespace: "data", Workload: "db", Kind: flow.KindService}, true)
	c.expect("10.244.1.10", flow.Endpoint{Namespace: "shop", Workload: "web", Kind: flow.KindDeployment, Pod: "web-5f7-a", Node: "n1"}, true)

	addr := netip.MustParseAddr
	tests := []struct {
		name                          string
		initiator, responder, service string
		reporter                      string
		src, dst                      flow.Kind
	}{
		{"pod to pod, same node", "10.244.1.10", "10.244.1.11", "", "n1", flow.KindDeployment, flow.KindStatefulSet},
		{"pod to pod, across nodes", "10.244.1.10", "10.244.2.20", "", "n1", flow.KindDeployment, flow.KindStatefulSet},
		{"pod to pod, across nodes, IPv6", "fd00:10:244:2::20", "fd00:10:244:1::10", "", "n2", flow.KindStatefulSet, flow.KindDeployment},
		{"pod to Service, translated to a pod on another node", "10.244.1.10", "10.244.2.20", "10.96.0.20", "n1", flow.KindDeployment, flow.KindStatefulSet},
		{"pod to Service, not translated", "10.244.1.10", "10.96.0.20", "", "n1", flow.KindDeployment, flow.KindService},
		{"pod to Service, IPv6", "fd00:10:244:1::10", "fd00:10:244:2::20", "fd00:10:96::20", "n1", flow.KindDeployment, flow.KindStatefulSet},
		{"pod to node", "10.244.1.10", "192.168.0.3", "", "n1", flow.KindDeployment, flow.KindNode},
		{"node to pod", "192.168.0.3", "10.244.1.10", "", "n3", flow.KindNode, flow.KindDeployment},
		{"external to pod", "203.0.113.7", "10.244.2.20", "", "n2", flow.KindNetwork, flow.KindStatefulSet},
		{"pod to external", "10.244.2.20", "203.0.113.7", "", "n2", flow.KindStatefulSet, flow.KindNetwork},
		{"private network to node", "172.16.0.9", "192.168.0.1", "", "n1", flow.KindNetwork, flow.KindNode},
		{"hostNetwork pod to pod", "192.168.0.2", "10.244.1.11", "", "n2", flow.KindNode, flow.KindStatefulSet},
		{"pod to hostNetwork pod", "10.244.1.11", "192.168.0.2", "", "n1", flow.KindStatefulSet, flow.KindNode},
		{"unknown in-cluster address to pod", "10.244.3.99", "10.244.1.11", "", "n1", flow.KindUnknown, flow.KindStatefulSet},
		{"pod to unknown in-cluster address", "10.244.1.11", "10.244.3.99", "", "n1", flow.KindStatefulSet, flow.KindUnknown},
	}
	nodes := []string{"n1", "n2", "n3"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := flow.Flow{Initiator: addr(tt.initiator), Responder: addr(tt.responder), Port: 443, Proto: flow.ProtoTCP}
			if tt.service != "" {
				f.Service = addr(tt.service)
			}
			var reporters []string
			for _, n := range nodes {
				k, ok := attributeOn(t, c.src, n, &f, attribute.Labels{DestinationService: true})
				if !ok {
					continue
				}
				reporters = append(reporters, n)
				if k.SrcKind != tt.src || k.DstKind != tt.dst {
					t.Errorf("%s: kinds %v → %v, want %v → %v", n, k.SrcKind, k.DstKind, tt.src, tt.dst)
				}
				if tt.service != "" && k.DstService != "db" {
					t.Errorf("%s: destination_service = %q, want db", n, k.DstService)
				}
			}
			if len(reporters) != 1 || reporters[0] != tt.reporter {
				t.Fatalf("reported by %v, want exactly %s", reporters, tt.reporter)
			}
		})
	}

	// The reporter follows the cluster: a pod that moves (re-created on
	// another node under the same address) is reported there.
	if err := c.core.CoreV1().Pods("shop").Delete(ctx, "cart-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.core.CoreV1().Pods("shop").Create(ctx, pod("shop", "cart-0", "n3", []string{"10.244.1.11"}, owned("StatefulSet", "cart")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.expect("10.244.1.11", flow.Endpoint{Namespace: "shop", Workload: "cart", Kind: flow.KindStatefulSet, Pod: "cart-0", Node: "n3"}, true)
	f := flow.Flow{Initiator: addr("10.244.1.11"), Responder: addr("10.244.2.20"), Port: 5432, Proto: flow.ProtoTCP}
	for _, n := range nodes {
		var k flow.Key
		if got := attribute.New(c.src, attribute.Config{Node: n}).Attribute(&f, &k); got != (n == "n3") {
			t.Errorf("%s reports the moved pod's flow: %v", n, got)
		}
	}
}

// TestReporterRuleThroughNAT gives each node the view it has of one
// connection through kube-proxy's translations (after DNAT, before SNAT,
// see docs/kubernetes.md): exactly one node reports it, with the real
// initiator as its source, and every other node that sees it leaves it.
func TestReporterRuleThroughNAT(t *testing.T) {
	c := newCluster(t, Config{
		PodCIDRs:     []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")},
		ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")},
	},
		node("n1", []string{"10.244.1.0/24"}, "192.168.0.1"),
		node("n2", []string{"10.244.2.0/24"}, "192.168.0.2"),
		node("n3", []string{"10.244.3.0/24"}, "192.168.0.3"),
		replicaSet("shop", "web-5f7", ref("Deployment", "web")),
		pod("shop", "web-5f7-a", "n1", []string{"10.244.1.10"}, owned("ReplicaSet", "web-5f7")),
		pod("data", "db-0", "n2", []string{"10.244.2.20"}, owned("StatefulSet", "db")),
	)
	c.expect("10.244.2.20", flow.Endpoint{Namespace: "data", Workload: "db", Kind: flow.KindStatefulSet, Pod: "db-0", Node: "n2"}, true)
	c.expect("10.244.1.10", flow.Endpoint{Namespace: "shop", Workload: "web", Kind: flow.KindDeployment, Pod: "web-5f7-a", Node: "n1"}, true)

	type view struct {
		initiator, responder string
		dnat                 bool
	}
	const outside = "203.0.113.7"
	tests := []struct {
		name     string
		views    map[string]view // what each node's chains see
		reporter string
		src, dst flow.Kind
	}{
		{"NodePort or LoadBalancer, externalTrafficPolicy Cluster, to another node, masqueraded to the node's address",
			map[string]view{"n2": {outside, "10.244.1.10", true}, "n1": {"192.168.0.2", "10.244.1.10", false}},
			"n2", flow.KindNetwork, flow.KindDeployment},
		{"the same over an overlay, masqueraded to the tunnel device's address in the node's pod CIDR",
			map[string]view{"n2": {outside, "10.244.1.10", true}, "n1": {"10.244.2.0", "10.244.1.10", false}},
			"n2", flow.KindNetwork, flow.KindDeployment},
		{"NodePort or LoadBalancer, externalTrafficPolicy Local",
			map[string]view{"n1": {outside, "10.244.1.10", true}},
			"n1", flow.KindNetwork, flow.KindDeployment},
		{"outside to a pod, routed without translation",
			map[string]view{"n2": {outside, "10.244.1.10", false}, "n1": {outside, "10.244.1.10", false}},
			"n1", flow.KindNetwork, flow.KindDeployment},
		{"hairpin: a pod to its own Service, landing on itself, masqueraded",
			map[string]view{"n1": {"10.244.1.10", "10.244.1.10", true}},
			"n1", flow.KindDeployment, flow.KindDeployment},
		{"node process to a ClusterIP, masqueraded",
			map[string]view{"n3": {"192.168.0.3", "10.244.2.20", true}, "n2": {"192.168.0.3", "10.244.2.20", false}},
			"n3", flow.KindNode, flow.KindStatefulSet},
		{"pod to another node's NodePort, masqueraded there",
			map[string]view{"n1": {"10.244.1.10", "192.168.0.2", false}, "n2": {"10.244.1.10", "10.244.2.20", true}},
			"n1", flow.KindDeployment, flow.KindNode},
		{"pod to a ClusterIP on another node",
			map[string]view{"n1": {"10.244.1.10", "10.244.2.20", true}, "n2": {"10.244.1.10", "10.244.2.20", false}},
			"n1", flow.KindDeployment, flow.KindStatefulSet},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var reporters []string
			for n, v := range tt.views {
				f := flow.Flow{Initiator: netip.MustParseAddr(v.initiator), Responder: netip.MustParseAddr(v.responder),
					Port: 8080, Proto: flow.ProtoUDP, DNAT: v.dnat}
				k, ok := attributeOn(t, c.src, n, &f, attribute.Labels{})
				if !ok {
					continue
				}
				reporters = append(reporters, n)
				if k.SrcKind != tt.src || k.DstKind != tt.dst {
					t.Errorf("%s: kinds %v → %v, want %v → %v", n, k.SrcKind, k.DstKind, tt.src, tt.dst)
				}
			}
			if len(reporters) != 1 || reporters[0] != tt.reporter {
				t.Fatalf("reported by %v, want exactly %s", reporters, tt.reporter)
			}
		})
	}
}

// attributeOn runs node n's attribution of f: the key and whether n
// reports f. A flow n leaves alone must be counted as left.
func attributeOn(t *testing.T, r attribute.Resolver, n string, f *flow.Flow, labels attribute.Labels) (flow.Key, bool) {
	t.Helper()
	a := attribute.New(r, attribute.Config{Node: n, Labels: labels})
	var k flow.Key
	one := *f
	one.Packets = 1
	if !a.Attribute(&one, &k) {
		if a.Stats().OtherNodeReports != 1 {
			t.Errorf("%s ignored the flow without counting it", n)
		}
		return k, false
	}
	return k, true
}
