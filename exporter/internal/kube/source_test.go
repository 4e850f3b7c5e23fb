package kube

import (
	"fmt"
	"net/netip"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metafake "k8s.io/client-go/metadata/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/podflow/podflow/exporter/internal/flow"
	"github.com/podflow/podflow/exporter/internal/networks"
)

func TestOwnerChains(t *testing.T) {
	c := newCluster(t, Config{},
		replicaSet("shop", "web-5f7", ref("Deployment", "web")),
		job("batch", "report-2900", ref("CronJob", "report")),
		job("batch", "migrate"),
		pod("shop", "web-5f7-abc", "n1", []string{"10.244.1.10"}, owned("ReplicaSet", "web-5f7")),
		pod("batch", "report-2900-x", "n1", []string{"10.244.1.11"}, owned("Job", "report-2900")),
		pod("batch", "migrate-y", "n2", []string{"10.244.2.12"}, owned("Job", "migrate")),
		pod("data", "db-0", "n2", []string{"10.244.2.13"}, owned("StatefulSet", "db")),
		pod("kube-system", "agent-q", "n2", []string{"10.244.2.14"}, owned("DaemonSet", "agent")),
		pod("shop", "debug", "n1", []string{"10.244.1.15"}),
	)
	c.expect("10.244.1.10", flow.Endpoint{Namespace: "shop", Workload: "web", Kind: flow.KindDeployment, Pod: "web-5f7-abc", Node: "n1"}, true)
	c.expect("10.244.1.11", flow.Endpoint{Namespace: "batch", Workload: "report", Kind: flow.KindCronJob, Pod: "report-2900-x", Node: "n1"}, true)
	c.expect("10.244.2.12", flow.Endpoint{Namespace: "batch", Workload: "migrate", Kind: flow.KindJob, Pod: "migrate-y", Node: "n2"}, true)
	c.expect("10.244.2.13", flow.Endpoint{Namespace: "data", Workload: "db", Kind: flow.KindStatefulSet, Pod: "db-0", Node: "n2"}, true)
	c.expect("10.244.2.14", flow.Endpoint{Namespace: "kube-system", Workload: "agent", Kind: flow.KindDaemonSet, Pod: "agent-q", Node: "n2"}, true)
	c.expect("10.244.1.15", flow.Endpoint{Namespace: "shop", Workload: "debug", Kind: flow.KindPod, Pod: "debug", Node: "n1"}, true)
}

func TestReplicaSetWithoutDeployment(t *testing.T) {
	c := newCluster(t, Config{},
		replicaSet("shop", "web-5f7", ref("Deployment", "web")),
		pod("shop", "web-5f7-abc", "n1", []string{"10.244.1.10"}, owned("ReplicaSet", "web-5f7")),
		// Its ReplicaSet is not (yet) known: the pod is named after the
		// ReplicaSet, never after a trimmed name.
		pod("shop", "api-6c8-def", "n1", []string{"10.244.1.20"}, owned("ReplicaSet", "api-6c8")),
	)
	web := flow.Endpoint{Namespace: "shop", Workload: "web", Kind: flow.KindDeployment, Pod: "web-5f7-abc", Node: "n1"}
	c.expect("10.244.1.10", web, true)
	c.expect("10.244.1.20", flow.Endpoint{Namespace: "shop", Workload: "api-6c8", Kind: flow.KindReplicaSet, Pod: "api-6c8-def", Node: "n1"}, true)

	// The Deployment is deleted with orphaning: the garbage collector
	// removes the ReplicaSet's owner reference.
	rsClient := c.meta.Resource(gvrReplicaSets).Namespace("shop").(metafake.MetadataClient)
	if _, err := rsClient.UpdateFake(replicaSet("shop", "web-5f7"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	web.Workload, web.Kind = "web-5f7", flow.KindReplicaSet
	c.expect("10.244.1.10", web, true)

	// A ReplicaSet that shows up later re-resolves its pods.
	if _, err := c.meta.Resource(gvrReplicaSets).Namespace("shop").(metafake.MetadataClient).CreateFake(replicaSet("shop", "api-6c8", ref("Deployment", "api")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.expect("10.244.1.20", flow.Endpoint{Namespace: "shop", Workload: "api", Kind: flow.KindDeployment, Pod: "api-6c8-def", Node: "n1"}, true)

	// The ReplicaSet itself is deleted while a pod remains.
	if err := c.meta.Resource(gvrReplicaSets).Namespace("shop").Delete(ctx, "api-6c8", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	c.expect("10.244.1.20", flow.Endpoint{Namespace: "shop", Workload: "api-6c8", Kind: flow.KindReplicaSet, Pod: "api-6c8-def", Node: "n1"}, true)
}

func TestIndexRules(t *testing.T) {
	c := newCluster(t, Config{PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}},
		node("n1", nil, "192.168.0.1"),
		// A finished pod keeps its address in its status; the running
		// one that got the address owns it.
		pod("jobs", "done", "n1", []string{"10.244.1.30"}, phase(corev1.PodSucceeded)),
		pod("jobs", "failed", "n1", []string{"10.244.1.31"}, phase(corev1.PodFailed)),
		pod("shop", "new", "n1", []string{"10.244.1.30"}),
		// A terminating pod keeps its address while nothing else claims it.
		pod("shop", "leaving", "n1", []string{"10.244.1.32"}, terminating()),
		// Collision: a Running pod wins over a Pending one, in any order.
		pod("shop", "running", "n1", []string{"10.244.1.33"}),
		pod("shop", "pending", "n1", []string{"10.244.1.33"}, phase(corev1.PodPending)),
		// hostNetwork pods are their node.
		pod("kube-system", "proxy", "n1", []string{"192.168.0.1"}, hostNet(), owned("DaemonSet", "kube-proxy")),
	)
	c.expect("10.244.1.30", flow.Endpoint{Namespace: "shop", Workload: "new", Kind: flow.KindPod, Pod: "new", Node: "n1"}, true)
	c.expect("10.244.1.31", flow.Endpoint{}, false)
	c.expect("10.244.1.32", flow.Endpoint{Namespace: "shop", Workload: "leaving", Kind: flow.KindPod, Pod: "leaving", Node: "n1"}, true)
	running := flow.Endpoint{Namespace: "shop", Workload: "running", Kind: flow.KindPod, Pod: "running", Node: "n1"}
	c.expect("10.244.1.33", running, true)
	c.expect("192.168.0.1", flow.Endpoint{Workload: "n1", Kind: flow.KindNode, Node: "n1"}, true)

	// The pending pod starts running: both run, the newest wins; when it
	// goes, the other one owns the address again.
	pods := c.core.CoreV1().Pods("shop")
	if _, err := pods.Update(ctx, pod("shop", "pending", "n1", []string{"10.244.1.33"}), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.expect("10.244.1.33", flow.Endpoint{Namespace: "shop", Workload: "pending", Kind: flow.KindPod, Pod: "pending", Node: "n1"}, true)
	if err := pods.Delete(ctx, "pending", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	c.expect("10.244.1.33", running, true)

	// A pod that starts terminating keeps its address, so that traffic
	// in flight during a rollout keeps its name, until another pod claims
	// the address (the claimant wins) or the pod is deleted.
	if _, err := pods.Update(ctx, pod("shop", "running", "n1", []string{"10.244.1.33"}, terminating()), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.expect("10.244.1.33", running, true)
	if _, err := pods.Create(ctx, pod("shop", "claimant", "n1", []string{"10.244.1.33"}, phase(corev1.PodPending)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.expect("10.244.1.33", flow.Endpoint{Namespace: "shop", Workload: "claimant", Kind: flow.KindPod, Pod: "claimant", Node: "n1"}, true)
	if err := pods.Delete(ctx, "claimant", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	c.expect("10.244.1.33", running, true)
	if err := pods.Delete(ctx, "running", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	c.expect("10.244.1.33", flow.Endpoint{}, false)

	// A hostNetwork pod without a known node address still names its node.
	if _, err := c.core.CoreV1().Pods("kube-system").Create(ctx, pod("kube-system", "agent", "n2", []string{"192.168.0.2"}, hostNet()), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.expect("192.168.0.2", flow.Endpoint{Workload: "n2", Kind: flow.KindNode, Node: "n2"}, true)
}

func TestIPReuseUIDMismatch(t *testing.T) {
	c := newCluster(t, Config{PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}})
	pods := c.core.CoreV1().Pods("shop")
	if _, err := pods.Create(ctx, pod("shop", "db-0", "n1", []string{"10.244.1.40"}, uid("old")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.expect("10.244.1.40", flow.Endpoint{Namespace: "shop", Workload: "db-0", Kind: flow.KindPod, Pod: "db-0", Node: "n1"}, true)

	// The pod is re-created under the same name with a new UID and a new
	// address; a late deletion of the old UID (a tombstone after a
	// relist) must not remove the new pod.
	if _, err := pods.Update(ctx, pod("shop", "db-0", "n2", []string{"10.244.2.41"}, uid("new")), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	newEP := flow.Endpoint{Namespace: "shop", Workload: "db-0", Kind: flow.KindPod, Pod: "db-0", Node: "n2"}
	c.expect("10.244.2.41", newEP, true)
	c.expect("10.244.1.40", flow.Endpoint{}, false)
	old, _ := transformPod(pod("shop", "db-0", "n1", []string{"10.244.1.40"}, uid("old")))
	c.src.onPodDelete(cache.DeletedFinalStateUnknown{Key: "shop/db-0", Obj: old})
	c.expect("10.244.2.41", newEP, true)

	// Another pod takes the old address over.
	if _, err := pods.Create(ctx, pod("shop", "web-1", "n1", []string{"10.244.1.40"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.expect("10.244.1.40", flow.Endpoint{Namespace: "shop", Workload: "web-1", Kind: flow.KindPod, Pod: "web-1", Node: "n1"}, true)

	// A tombstone of the right UID removes the pod.
	cur, _ := transformPod(pod("shop", "db-0", "n2", []string{"10.244.2.41"}, uid("new")))
	c.src.onPodDelete(cache.DeletedFinalStateUnknown{Key: "shop/db-0", Obj: cur})
	c.expect("10.244.2.41", flow.Endpoint{}, false)
}

func TestDualStack(t *testing.T) {
	c := newCluster(t, Config{},
		pod("shop", "web-0", "n1", []string{"10.244.1.10", "fd00:10:244:1::a"}, owned("StatefulSet", "web")),
		service("shop", "web", "10.96.0.10", "fd00:10:96::a"),
		service("shop", "headless", "None"),
		node("n1", nil, "192.168.0.1", "fd00:192:168::1"),
	)
	web := flow.Endpoint{Namespace: "shop", Workload: "web", Kind: flow.KindStatefulSet, Pod: "web-0", Node: "n1"}
	c.expect("10.244.1.10", web, true)
	c.expect("fd00:10:244:1::a", web, true)
	c.expect("::ffff:10.244.1.10", web, true)
	svc := flow.Endpoint{Namespace: "shop", Workload: "web", Kind: flow.KindService}
	c.expect("10.96.0.10", svc, true)
	c.expect("fd00:10:96::a", svc, true)
	n1 := flow.Endpoint{Workload: "n1", Kind: flow.KindNode, Node: "n1"}
	c.expect("192.168.0.1", n1, true)
	c.expect("fd00:192:168::1", n1, true)

	if err := c.core.CoreV1().Services("shop").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	c.expect("fd00:10:96::a", flow.Endpoint{Kind: flow.KindNetwork, Workload: "private"}, true)
}

func TestClusterCIDRs(t *testing.T) {
	nets, err := networks.New(map[string][]netip.Prefix{"corp": {netip.MustParsePrefix("172.16.0.0/12")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("discovered from nodes", func(t *testing.T) {
		c := newCluster(t, Config{ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")}, Networks: nets},
			node("n1", []string{"10.244.1.0/24", "fd00:10:244:1::/64"}, "192.168.0.1"),
		)
		c.expect("10.244.1.99", flow.Endpoint{Node: "n1"}, false)
		c.expect("fd00:10:244:1::99", flow.Endpoint{Node: "n1"}, false)
		c.expect("10.96.0.99", flow.Endpoint{}, false)
		c.expect("10.244.2.99", flow.Endpoint{Kind: flow.KindNetwork, Workload: "private"}, true)
		c.expect("172.20.0.1", flow.Endpoint{Kind: flow.KindNetwork, Workload: "corp"}, true)
		c.expect("203.0.113.7", flow.Endpoint{Kind: flow.KindNetwork, Workload: "internet"}, true)

		if _, err := c.core.CoreV1().Nodes().Create(ctx, node("n2", []string{"10.244.2.0/24"}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		c.expect("10.244.2.99", flow.Endpoint{Node: "n2"}, false)
		if err := c.core.CoreV1().Nodes().Delete(ctx, "n1", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		c.expect("10.244.1.99", flow.Endpoint{Kind: flow.KindNetwork, Workload: "private"}, true)
	})
	t.Run("given", func(t *testing.T) {
		c := newCluster(t, Config{PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00:10::/48")}},
			node("n1", []string{"192.168.100.0/24"}, "192.168.0.1"),
		)
		c.expect("10.1.2.3", flow.Endpoint{}, false)
		c.expect("192.168.100.8", flow.Endpoint{Kind: flow.KindNetwork, Workload: "private"}, true)
		c.expect("fd00:10::1", flow.Endpoint{}, false)
		// Given CIDRs replace the discovered ones; without a networks
		// file, outside addresses are private or internet.
		c.expect("192.168.100.7", flow.Endpoint{Kind: flow.KindNetwork, Workload: "private"}, true)
		c.expect("fd12::1", flow.Endpoint{Kind: flow.KindNetwork, Workload: "private"}, true)
		c.expect("2001:db8::1", flow.Endpoint{Kind: flow.KindNetwork, Workload: "internet"}, true)
		// The same private space as with a networks file: link-local
		// (the cloud metadata address) included.
		c.expect("169.254.169.254", flow.Endpoint{Kind: flow.KindNetwork, Workload: "private"}, true)
	})
}

// TestServiceFrontends names the Service behind every address and port a
// client may dial before DNAT: a ClusterIP, a load balancer ingress
// address (shared by two Services on different ports), a node port on a
// node's address.
func TestServiceFrontends(t *testing.T) {
	lb := func(name string, port, nodePort int32, ingress string) *corev1.Service {
		s := service("shop", name, "10.96.0."+strconv.Itoa(int(port%200)))
		s.Spec.Type = corev1.ServiceTypeLoadBalancer
		s.Spec.Ports = []corev1.ServicePort{{Protocol: corev1.ProtocolTCP, Port: port, NodePort: nodePort}}
		s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ingress}}
		return s
	}
	c := newCluster(t, Config{},
		node("n1", nil, "192.168.0.1"),
		lb("web", 443, 30443, "203.0.113.10"),
		lb("mail", 25, 30025, "203.0.113.10"),
	)
	c.expect("10.96.0.25", flow.Endpoint{Namespace: "shop", Workload: "mail", Kind: flow.KindService}, true)
	addr := netip.MustParseAddr
	for _, tc := range []struct {
		addr  string
		port  uint16
		proto flow.Protocol
		want  string
	}{
		{"10.96.0.43", 443, flow.ProtoTCP, "web"},    // ClusterIP
		{"203.0.113.10", 443, flow.ProtoTCP, "web"},  // load balancer, by port
		{"203.0.113.10", 25, flow.ProtoTCP, "mail"},  // the same address, another Service
		{"192.168.0.1", 30443, flow.ProtoTCP, "web"}, // node port
		{"192.168.0.1", 30443, flow.ProtoUDP, ""},    // not for UDP
		{"192.168.0.1", 10250, flow.ProtoTCP, ""},    // a node's own port
		{"198.51.100.1", 30443, flow.ProtoTCP, ""},   // not a node
	} {
		ep, ok := c.src.Service(addr(tc.addr), tc.port, tc.proto)
		if ok != (tc.want != "") || ep.Workload != tc.want || (ok && (ep.Kind != flow.KindService || ep.Namespace != "shop")) {
			t.Errorf("Service(%s:%d %v) = %+v, %v; want %q", tc.addr, tc.port, tc.proto, ep, ok, tc.want)
		}
	}
}

// TestNodeRouterAddresses: a node's addresses on the pod network (its
// pod CIDRs' network address and the one after it, and the tunnel and
// host device addresses CNIs publish in annotations) name the node, below
// every pod: a pod that holds one of them wins while it lives.
func TestNodeRouterAddresses(t *testing.T) {
	n1 := node("n1", []string{"10.244.1.0/24", "fd00:10:244:1::/64"}, "192.168.0.1")
	n1.Annotations = map[string]string{
		"projectcalico.org/IPv4VXLANTunnelAddr": "10.244.7.128",
		"network.cilium.io/ipv4-cilium-host":    "10.244.1.77",
		"io.cilium.network.ipv6-cilium-host":    "fd00:10:244:1::77",
		"projectcalico.org/IPv4Address":         "192.168.0.1/24", // the node's own address, not a router's
		"projectcalico.org/IPv4IPIPTunnelAddr":  "not an address",
	}
	c := newCluster(t, Config{PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd00:10:244::/48")}},
		n1,
		// An IPAM that does not reserve the gateway's address gave it to
		// a pod.
		pod("shop", "web", "n1", []string{"10.244.1.1"}),
	)
	nodeEP := flow.Endpoint{Workload: "n1", Kind: flow.KindNode, Node: "n1"}
	web := flow.Endpoint{Namespace: "shop", Workload: "web", Kind: flow.KindPod, Pod: "web", Node: "n1"}
	c.expect("10.244.1.1", web, true)
	for _, a := range []string{"10.244.1.0", "fd00:10:244:1::", "fd00:10:244:1::1", "10.244.7.128", "10.244.1.77", "fd00:10:244:1::77", "192.168.0.1"} {
		c.expect(a, nodeEP, true)
	}
	c.expect("10.244.1.2", flow.Endpoint{Kind: flow.KindUnknown, Node: "n1"}, false)

	// The pod goes: the gateway's address is the node's again.
	if err := c.core.CoreV1().Pods("shop").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	c.expect("10.244.1.1", nodeEP, true)

	// The CNI withdraws its annotations: only the pod CIDRs' addresses stay.
	n1.Annotations = nil
	if _, err := c.core.CoreV1().Nodes().Update(ctx, n1, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.expect("10.244.7.128", flow.Endpoint{Kind: flow.KindUnknown}, false)
	c.expect("10.244.1.77", flow.Endpoint{Kind: flow.KindUnknown, Node: "n1"}, false)
	c.expect("10.244.1.0", nodeEP, true)
}

func TestRouterAddrs(t *testing.T) {
	p := netip.MustParsePrefix
	for _, tt := range []struct {
		name  string
		ann   map[string]string
		cidrs []netip.Prefix
		ips   []string
		want  string
	}{
		{"pod CIDRs of both families", nil, []netip.Prefix{p("10.244.1.0/24"), p("fd00:1::/64")}, nil, "[10.244.1.0 10.244.1.1 fd00:1:: fd00:1::1]"},
		{"a pod CIDR of one or two addresses has no gateway", nil, []netip.Prefix{p("10.244.1.5/32"), p("10.244.2.0/31")}, nil, "[10.244.1.5 10.244.2.0]"},
		{"annotations, with or without a prefix length, the node's own addresses left out",
			map[string]string{"projectcalico.org/IPv4IPIPTunnelAddr": "10.244.9.192", "projectcalico.org/IPv4WireguardInterfaceAddr": "10.244.9.193/32",
				"network.cilium.io/ipv6-cilium-host": "fd00::5", "io.cilium.network.ipv4-cilium-host": "192.168.0.1", "unrelated": "10.1.1.1"},
			nil, []string{"192.168.0.1"}, "[10.244.9.192 10.244.9.193 fd00::5]"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var ips []netip.Addr
			for _, a := range tt.ips {
				ips = append(ips, netip.MustParseAddr(a))
			}
			if got := fmt.Sprint(routerAddrs(tt.ann, tt.cidrs, ips)); got != tt.want {
				t.Errorf("routerAddrs = %s, want %s", got, tt.want)
			}
		})
	}
}
