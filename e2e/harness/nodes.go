package harness

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Node is a simulated Kubernetes node: a namespace on the fabric that routes
// for the pod namespaces behind it and runs podflow.
type Node struct {
	Name     string
	Index    int
	NS       *NetNS
	IPv4     netip.Addr
	IPv6     netip.Addr
	PodCIDR4 netip.Prefix
	PodCIDR6 netip.Prefix
	Podflow  *Proc
	// KubeProxy runs in the node's namespace, as its DaemonSet would.
	KubeProxy *Proc
	// PodflowArgs are extra flags for this node's podflow.
	PodflowArgs []string
	nextPod     int
}

// MetricsAddr is podflow's metrics endpoint on the fabric.
func (n *Node) MetricsAddr() string { return n.IPv4.String() + ":9810" }

// AddNode creates node-<i>: its namespace, its routes (or its overlay
// device), the Node object, and kube-proxy on it.
func (e *Env) AddNode(ctx context.Context) (*Node, error) {
	i := len(e.Nodes) + 1
	n := &Node{
		Name:     fmt.Sprintf("node-%d", i),
		Index:    i,
		IPv4:     netip.MustParseAddr(fmt.Sprintf("10.250.0.%d", 10+i)),
		IPv6:     netip.MustParseAddr(fmt.Sprintf("fd00:250::%x", 0x10+i)),
		PodCIDR4: netip.MustParsePrefix(fmt.Sprintf("10.251.%d.0/24", i)),
		PodCIDR6: netip.MustParsePrefix(fmt.Sprintf("fd00:251:%x::/64", i)),
	}
	ns, err := e.newNetNS("n" + strconv.Itoa(i))
	if err != nil {
		return nil, err
	}
	n.NS = ns
	for _, kv := range [][2]string{
		{"net.ipv4.ip_forward", "1"},
		{"net.ipv6.conf.all.forwarding", "1"},
		{"net.ipv4.conf.all.send_redirects", "0"},
		{"net.ipv4.conf.default.send_redirects", "0"},
	} {
		if err := ns.Sysctl(kv[0], kv[1]); err != nil {
			return nil, err
		}
	}
	// Track connections from the start, as a real node does from boot
	// (the kubelet's and the CNI's rules load conntrack): otherwise its
	// first user would be kube-proxy's table, loaded after kube-proxy
	// opened its API server watches, and conntrack would pick those
	// connections up mid-stream, their original direction being
	// whichever side sent next. Removed with the namespace.
	if err := ns.Nft("table inet pfe2e-node {\n  chain prerouting { type filter hook prerouting priority -300; policy accept; ct state invalid counter; }\n  chain output { type filter hook output priority -300; policy accept; ct state invalid counter; }\n}\n"); err != nil {
		return nil, fmt.Errorf("node %s: conntrack: %w", n.Name, err)
	}
	if err := e.attach(ns, "vn"+strconv.Itoa(i), n.IPv4.String(), n.IPv6.String()); err != nil {
		return nil, err
	}
	if err := e.connectNode(n); err != nil {
		return nil, err
	}
	obj := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: map[string]string{"kubernetes.io/hostname": n.Name}},
		Spec: corev1.NodeSpec{
			PodCIDR:  n.PodCIDR4.String(),
			PodCIDRs: []string{n.PodCIDR4.String(), n.PodCIDR6.String()},
		},
	}
	if _, err := e.CP.Client.CoreV1().Nodes().Create(ctx, obj, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("create node %s: %w", n.Name, err)
	}
	if err := e.setNodeStatus(ctx, n.Name, []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: n.IPv4.String()},
		{Type: corev1.NodeInternalIP, Address: n.IPv6.String()},
		{Type: corev1.NodeHostName, Address: n.Name},
	}); err != nil {
		return nil, err
	}
	e.Nodes = append(e.Nodes, n)
	if err := e.startKubeProxy(ctx, n); err != nil {
		return nil, err
	}
	return n, nil
}

func (e *Env) setNodeStatus(ctx context.Context, name string, addrs []corev1.NodeAddress) error {
	obj, err := e.CP.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	obj.Status.Addresses = addrs
	obj.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
	if _, err := e.CP.Client.CoreV1().Nodes().UpdateStatus(ctx, obj, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("node %s status: %w", name, err)
	}
	return nil
}

// registerControlPlaneNode makes the control-plane namespace a Node, as the
// control-plane node of a real cluster is, so that traffic to the API server
// and Prometheus' scrapes are node-to-node traffic.
func (e *Env) registerControlPlaneNode(ctx context.Context) error {
	obj := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "control-plane", Labels: map[string]string{"node-role.kubernetes.io/control-plane": ""}},
		Spec:       corev1.NodeSpec{Taints: []corev1.Taint{{Key: "node-role.kubernetes.io/control-plane", Effect: corev1.TaintEffectNoSchedule}}},
	}
	if _, err := e.CP.Client.CoreV1().Nodes().Create(ctx, obj, metav1.CreateOptions{}); err != nil {
		return err
	}
	return e.setNodeStatus(ctx, "control-plane", []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: cpV4},
		{Type: corev1.NodeInternalIP, Address: cpV6},
	})
}

// StartPodflow runs podflow in the node's namespace as the DaemonSet would.
func (e *Env) StartPodflow(n *Node) error {
	dir := filepath.Join(e.Dir, "podflow")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	netfile := filepath.Join(dir, "networks.yaml")
	if err := os.WriteFile(netfile, []byte(NetworksFile), 0o644); err != nil {
		return err
	}
	kc := filepath.Join(e.CP.dir, "podflow.kubeconfig")
	args := []string{
		"--web.listen-address=:9810",
		"--kube.node-name=" + n.Name,
		"--kube.kubeconfig=" + kc,
		"--networks.file=" + netfile,
		"--log.level=info",
	}
	args = append(args, e.captureArgs()...)
	args = append(args, n.PodflowArgs...)
	p, err := e.start("podflow-"+n.Name, n.NS, e.Bins.Podflow, args...)
	if err != nil {
		return err
	}
	n.Podflow = p
	return nil
}

// WaitPodflowReady waits for /readyz of the node's podflow.
func (e *Env) WaitPodflowReady(ctx context.Context, n *Node, timeout time.Duration) error {
	return e.waitOK(ctx, e.CPNS, "http://"+n.MetricsAddr()+"/readyz", n.Podflow, "podflow on "+n.Name, timeout)
}

// waitOK polls url from ns until it answers 200, while p runs.
func (e *Env) waitOK(ctx context.Context, ns *NetNS, url string, p *Proc, what string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		if p.Exited() {
			return fmt.Errorf("%s exited: %s", what, p.Tail(3000))
		}
		code, body, err := e.HTTPGet(ctx, ns, url)
		if err == nil && code == 200 {
			return nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("%d %s", code, body)
		}
		time.Sleep(300 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after %v (%s): %s", what, timeout, last, p.Tail(3000))
}
