package harness

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Proxy modes of kube-proxy the sandbox runs in.
const (
	ProxyNftables = "nftables"
	ProxyIptables = "iptables"
)

// Kube-proxy's ports inside every node's namespace. Health is served on the
// node's address (where a cloud load balancer would probe it), metrics on
// loopback; neither collides with podflow's :9810.
const (
	kubeProxyHealthzPort = "10256"
	kubeProxyMetricsAddr = "127.0.0.1:10249"
)

// The cluster's pod CIDRs cover every node's (AddNode: 10.251.<i>.0/24
// and fd00:251:<i>::/64): kube-proxy tells pod traffic from other sources
// with them, and masquerades the others; the overlay masquerades what
// leaves them.
const (
	clusterCIDR4 = "10.251.0.0/16"
	clusterCIDR6 = "fd00:251::/32"
	clusterCIDRs = clusterCIDR4 + "," + clusterCIDR6
)

func (e *Env) proxyMode() string {
	if e.ProxyMode == "" {
		return ProxyNftables
	}
	return e.ProxyMode
}

// startKubeProxy runs kube-proxy in the node's namespace, as its DaemonSet
// would (hostNetwork), and waits until its health check passes: its first
// sync is done.
func (e *Env) startKubeProxy(ctx context.Context, n *Node) error {
	kc, err := e.CP.Kubeconfig("kube-proxy")
	if err != nil {
		return err
	}
	p, err := e.start("kube-proxy-"+n.Name, n.NS, e.Bins.KubeProxy,
		"--kubeconfig="+kc,
		"--proxy-mode="+e.proxyMode(),
		"--hostname-override="+n.Name,
		"--cluster-cidr="+clusterCIDRs,
		"--nodeport-addresses=primary",
		"--healthz-bind-address="+n.IPv4.String()+":"+kubeProxyHealthzPort,
		"--metrics-bind-address="+kubeProxyMetricsAddr,
		// The conntrack table size is not the namespace's to set; the
		// timeouts stay the kernel's.
		"--conntrack-max-per-core=0",
		"--conntrack-min=0",
		"--conntrack-tcp-timeout-established=0",
		"--conntrack-tcp-timeout-close-wait=0",
		"--iptables-min-sync-period=0",
		"--oom-score-adj=0",
		"--v=1",
	)
	if err != nil {
		return err
	}
	n.KubeProxy = p
	url := "http://" + n.IPv4.String() + ":" + kubeProxyHealthzPort + "/healthz"
	return e.waitOK(ctx, n.NS, url, p, "kube-proxy on "+n.Name, 90*time.Second)
}

// ProxyRules returns the Service rules kube-proxy installed on the node:
// its nftables tables, or the iptables rules of both families.
func (e *Env) ProxyRules(n *Node) (string, error) {
	var cmds [][]string
	if e.proxyMode() == ProxyNftables {
		cmds = [][]string{{"nft", "list", "table", "ip", "kube-proxy"}, {"nft", "list", "table", "ip6", "kube-proxy"}}
	} else {
		cmds = [][]string{{"iptables-save"}, {"ip6tables-save"}}
	}
	var b strings.Builder
	for _, c := range cmds {
		out, err := n.NS.Exec(c[0], c[1:]...)
		if err != nil {
			return "", err
		}
		b.WriteString(out)
	}
	return b.String(), nil
}

// WaitProxied waits until kube-proxy on every node has rules for each of
// addrs (a Service address or an endpoint) and none for each of gone.
func (e *Env) WaitProxied(ctx context.Context, addrs, gone []netip.Addr, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, n := range e.Nodes {
		for {
			rules, err := e.ProxyRules(n)
			if err != nil {
				return err
			}
			missing := ""
			for _, a := range addrs {
				if !strings.Contains(rules, a.String()) {
					missing = "no rule for " + a.String()
				}
			}
			for _, a := range gone {
				if strings.Contains(rules, a.String()) {
					missing = "still a rule for " + a.String()
				}
			}
			if missing == "" {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("kube-proxy (%s) on %s: %s after %v: %s", e.proxyMode(), n.Name, missing, timeout, n.KubeProxy.Tail(2000))
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}
