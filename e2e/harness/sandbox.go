package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Sandbox is the standard cluster every scenario and the demo share:
//
//	node-1: shop/frontend (Deployment), shop/debug (bare Pod),
//	        batch/report (CronJob), monitoring/node-agent (DaemonSet)
//	node-2: shop/checkout (Deployment), shop/db (StatefulSet),
//	        monitoring/node-agent (DaemonSet)
//	Services: shop/checkout (TCP 80 -> 8080), shop/db (TCP 5432),
//	          shop/checkout-udp (UDP 53 -> 5353),
//	          shop/storefront (LoadBalancer TCP 80 -> frontend 8443,
//	          its address routed to node-2)
//
// kube-proxy runs on both nodes. Outside: corp (198.51.100.0/24) and
// denylist-tor (203.0.113.0/24) on the fabric, and the customers client
// (198.18.0.0/24, AddOutsideClient) in its own namespace.
type Sandbox struct {
	Env       *Env
	Nodes     []*Node
	Workloads map[string]*Workload // by "namespace/name"
	Pods      map[string]*Pod      // by "namespace/name" of the first pod
	Services  map[string]*Service  // by "namespace/name"
}

// SandboxOptions shape the standard cluster.
type SandboxOptions struct {
	ClusterRolePath string
	PodflowArgs     []string
}

// BuildSandbox creates the nodes, workloads, pods and Services, grants
// podflow its ClusterRole, and starts podflow on every node.
func BuildSandbox(ctx context.Context, e *Env, o SandboxOptions) (*Sandbox, error) {
	s := &Sandbox{Env: e, Workloads: map[string]*Workload{}, Pods: map[string]*Pod{}, Services: map[string]*Service{}}
	if err := e.registerControlPlaneNode(ctx); err != nil {
		return nil, err
	}
	if err := e.GrantPodflow(ctx, o.ClusterRolePath); err != nil {
		return nil, err
	}
	for i := 0; i < 2; i++ {
		n, err := e.AddNode(ctx)
		if err != nil {
			return nil, err
		}
		n.PodflowArgs = o.PodflowArgs
		s.Nodes = append(s.Nodes, n)
	}
	n1, n2 := s.Nodes[0], s.Nodes[1]
	type spec struct {
		ns, name, kind string
		on             []*Node
	}
	for _, sp := range []spec{
		{"shop", "frontend", "Deployment", []*Node{n1}},
		{"shop", "checkout", "Deployment", []*Node{n2}},
		{"shop", "db", "StatefulSet", []*Node{n2}},
		{"shop", "debug", "Pod", []*Node{n1}},
		{"batch", "report", "CronJob", []*Node{n1}},
		{"monitoring", "node-agent", "DaemonSet", []*Node{n1, n2}},
	} {
		var w *Workload
		var err error
		switch sp.kind {
		case "Deployment":
			w, err = e.Deployment(ctx, sp.ns, sp.name)
		case "StatefulSet":
			w, err = e.StatefulSet(ctx, sp.ns, sp.name)
		case "Pod":
			w, err = e.BarePod(ctx, sp.ns, sp.name)
		case "CronJob":
			w, err = e.CronJob(ctx, sp.ns, sp.name)
		case "DaemonSet":
			w, err = e.DaemonSet(ctx, sp.ns, sp.name)
		}
		if err != nil {
			return nil, err
		}
		key := sp.ns + "/" + sp.name
		s.Workloads[key] = w
		for i, n := range sp.on {
			p, err := e.AddPod(ctx, w, n)
			if err != nil {
				return nil, err
			}
			if i == 0 {
				s.Pods[key] = p
			} else {
				s.Pods[fmt.Sprintf("%s@%s", key, n.Name)] = p
			}
		}
	}
	for _, sv := range []struct {
		name, backend string
		proto         corev1.Protocol
		port, target  int32
		typ           corev1.ServiceType
		lbNode        *Node
	}{
		{"checkout", "shop/checkout", corev1.ProtocolTCP, 80, 8080, "", nil},
		{"db", "shop/db", corev1.ProtocolTCP, 5432, 5432, "", nil},
		{"checkout-udp", "shop/checkout", corev1.ProtocolUDP, 53, 5353, "", nil},
		// The shop's front door: a cloud load balancer that sends
		// customers to node-2, which forwards them to frontend on node-1.
		{"storefront", "shop/frontend", corev1.ProtocolTCP, 80, 8443, corev1.ServiceTypeLoadBalancer, n2},
	} {
		svc, err := e.NewService(ctx, ServiceSpec{Name: sv.name, Backend: s.Pods[sv.backend], Protocol: sv.proto,
			Port: sv.port, TargetPort: sv.target, Type: sv.typ, LBNode: sv.lbNode})
		if err != nil {
			return nil, err
		}
		s.Services["shop/"+sv.name] = svc
	}
	return s, nil
}

// StartPodflows starts podflow on every node and waits until each is ready.
func (s *Sandbox) StartPodflows(ctx context.Context) error {
	for _, n := range s.Nodes {
		if err := s.Env.StartPodflow(n); err != nil {
			return err
		}
	}
	for _, n := range s.Nodes {
		if err := s.Env.WaitPodflowReady(ctx, n, 90*time.Second); err != nil {
			return err
		}
	}
	return nil
}

// Pod returns a pod by "namespace/name" and panics when it does not exist:
// the sandbox layout is fixed.
func (s *Sandbox) Pod(key string) *Pod {
	p, ok := s.Pods[key]
	if !ok {
		panic("sandbox: no pod " + key)
	}
	return p
}

// KnownPairs is the traffic the sandbox's baseline history holds: the
// pairs the demo's steady traffic and the scenarios' "known" checks use.
func (s *Sandbox) KnownPairs() []BackfillPair {
	n1, n2 := s.Nodes[0], s.Nodes[1]
	w := func(k string) *Workload { return s.Workloads[k] }
	pair := func(n *Node, src, dst *Workload, port int, proto string) BackfillPair {
		return BackfillPair{Node: n, Labels: PairLabels(src.Namespace, src.Name, src.Kind, dst.Namespace, dst.Name, dst.Kind, port, proto),
			BytesPerSecond: 2000, PacketsPerSecond: 20, ConnsPerSecond: 0.5}
	}
	network := func(n *Node, src *Workload, name string, port int) BackfillPair {
		return BackfillPair{Node: n, Labels: PairLabels(src.Namespace, src.Name, src.Kind, "", name, "Network", port, "TCP"),
			BytesPerSecond: 500, PacketsPerSecond: 5, ConnsPerSecond: 0.1}
	}
	toAPI := func(n *Node, src *Workload) BackfillPair {
		ns, name, kind := "", n.Name, "Node"
		if src != nil {
			ns, name, kind = src.Namespace, src.Name, src.Kind
		}
		return BackfillPair{Node: n, Labels: PairLabels(ns, name, kind, "", "control-plane", "Node", 6443, "TCP"),
			BytesPerSecond: 300, PacketsPerSecond: 3, ConnsPerSecond: 0.01}
	}
	// IPv6 neighbour discovery between every pod or node and its
	// neighbours is part of any cluster's normal traffic (ICMPv6 between
	// link-local and solicited-node addresses, which podflow classifies as
	// the network "private"), so it is in the baseline too.
	var ndp []BackfillPair
	for _, k := range []string{"shop/frontend", "shop/debug", "batch/report", "monitoring/node-agent@node-1", "shop/checkout", "shop/db", "monitoring/node-agent@node-2"} {
		key, at := k, n1
		if i := strings.Index(k, "@"); i >= 0 {
			key = k[:i]
			if k[i+1:] == n2.Name {
				at = n2
			}
		} else {
			at = s.Pods[k].Node
		}
		wl := w(key)
		ndp = append(ndp,
			BackfillPair{Node: at, Labels: PairLabels(wl.Namespace, wl.Name, wl.Kind, "", "private", "Network", 0, "ICMPv6"), BytesPerSecond: 1, PacketsPerSecond: 0.01},
			BackfillPair{Node: at, Labels: PairLabels("", "private", "Network", wl.Namespace, wl.Name, wl.Kind, 0, "ICMPv6"), BytesPerSecond: 1, PacketsPerSecond: 0.01})
	}
	for _, n := range s.Nodes {
		ndp = append(ndp,
			BackfillPair{Node: n, Labels: PairLabels("", n.Name, "Node", "", "private", "Network", 0, "ICMPv6"), BytesPerSecond: 1, PacketsPerSecond: 0.01},
			BackfillPair{Node: n, Labels: PairLabels("", "private", "Network", "", "private", "Network", 0, "ICMPv6"), BytesPerSecond: 1, PacketsPerSecond: 0.01})
	}
	return append(ndp,
		pair(n1, w("shop/frontend"), w("shop/checkout"), 8080, "TCP"),
		pair(n1, w("shop/debug"), w("shop/checkout"), 8080, "TCP"),
		pair(n2, w("shop/checkout"), w("shop/db"), 5432, "TCP"),
		pair(n1, w("batch/report"), w("shop/db"), 5432, "TCP"),
		network(n1, w("shop/frontend"), "corp", 443),
		BackfillPair{Node: n1, Labels: PairLabels("", OutsideNetwork, "Network", "shop", "frontend", "Deployment", 8443, "TCP"),
			BytesPerSecond: 4000, PacketsPerSecond: 40, ConnsPerSecond: 1},
		toAPI(n1, w("monitoring/node-agent")),
		toAPI(n2, w("monitoring/node-agent")),
		toAPI(n1, nil),
		toAPI(n2, nil),
	)
}

// UseStaticIdentity makes every podflow of the sandbox read its identities
// from a static file (--identity.file) written from the sandbox's pods and
// nodes instead of the API server: podflow's mode for plain hosts, and a
// way to tell a harness problem from a Kubernetes identity problem.
func (s *Sandbox) UseStaticIdentity() error {
	var b strings.Builder
	b.WriteString("endpoints:\n")
	for _, p := range s.Pods {
		fmt.Fprintf(&b, "  - addresses: [%s, %s]\n    namespace: %s\n    workload: %s\n    kind: %s\n    pod: %s\n    node: %s\n",
			p.IPv4, p.IPv6, p.Namespace, p.Workload.Name, p.Workload.Kind, p.Name, p.Node.Name)
	}
	for _, n := range s.Nodes {
		fmt.Fprintf(&b, "  - addresses: [%s, %s]\n    workload: %s\n    kind: Node\n    node: %s\n", n.IPv4, n.IPv6, n.Name, n.Name)
	}
	fmt.Fprintf(&b, "  - addresses: [%s, %s]\n    workload: control-plane\n    kind: Node\n    node: control-plane\n", cpV4, cpV6)
	path := filepath.Join(s.Env.Dir, "identity.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return err
	}
	for _, n := range s.Nodes {
		n.PodflowArgs = append(n.PodflowArgs, "--identity.file="+path)
	}
	return nil
}
