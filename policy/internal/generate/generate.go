// Package generate turns observed pairs into one NetworkPolicy per workload:
// ingress from every peer seen reaching the workload and egress to every
// peer it was seen reaching, on the pod ports seen, plus DNS. A pair that a
// NetworkPolicy cannot express, or should not (an Unknown peer), is never
// turned into a rule: it is returned as an Omission with its evidence.
//
// The result depends only on the inputs and is sorted, so that running it
// again over the next day's baseline gives a small diff.
package generate

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podflow/podflow/policy/internal/inventory"
	"github.com/podflow/podflow/policy/internal/networks"
	"github.com/podflow/podflow/policy/prom"
)

// NodeMode is how traffic from and to nodes (kubelet probes, hostNetwork
// pods) is handled.
type NodeMode string

const (
	// NodesIPBlock allows the node's addresses as /32 ipBlocks: right on
	// CNIs that show the node's address as the source (Calico, Antrea,
	// kube-network-policies, most iptables-based plugins).
	NodesIPBlock NodeMode = "ipblock"
	// NodesOmit leaves node traffic out (listed as omitted): for CNIs that
	// always allow a node to reach its own pods (Cilium) or match host
	// traffic by other means.
	NodesOmit NodeMode = "omit"
)

// Options tune generation.
type Options struct {
	// MinActiveHours is the evidence a pair and port need: the hours of the
	// window in which it was seen.
	MinActiveHours int
	Nodes          NodeMode
}

// ManagedBy is the value of app.kubernetes.io/managed-by on every object
// generated, so that a rollback can select them.
const ManagedBy = "podflow-policy"

// Omission is an observed pair and port that no rule allows, and why.
type Omission struct {
	// Namespace and Subject name the policy the rule would have been in;
	// empty when the pair has no subject in the cluster.
	Namespace string
	Subject   string
	Pair      prom.Pair
	Reason    string
}

// Result is the outcome of a generation.
type Result struct {
	Policies []*networkingv1.NetworkPolicy
	Omitted  []Omission
	// Rules counts the rules (ingress, egress) and Peers the distinct peers
	// of each policy, by namespace/name.
	Rules map[string][2]int
	Peers map[string]int
}

type direction int

const (
	ingress direction = iota
	egress
)

type rule struct {
	sortKey string
	peers   []networkingv1.NetworkPolicyPeer
	ports   map[string]networkingv1.NetworkPolicyPort
}

type subject struct {
	w     inventory.Workload
	rules [2]map[string]*rule
}

// Name is the policy name of a workload.
func Name(k inventory.Key) string {
	n := "podflow-" + strings.ToLower(k.Kind) + "-" + k.Name
	if len(n) > 253 {
		n = n[:253]
	}
	return n
}

var podKinds = map[string]bool{
	"Deployment": true, "StatefulSet": true, "DaemonSet": true, "ReplicaSet": true,
	"Job": true, "CronJob": true, "Pod": true,
}

// Generate builds the policies of every workload seen in pairs.
func Generate(pairs []prom.Pair, inv *inventory.Inventory, nets networks.Networks, o Options) Result {
	g := &generator{inv: inv, nets: nets, o: o, subjects: map[inventory.Key]*subject{}}
	for _, p := range pairs {
		g.add(p)
	}
	return g.result()
}

type generator struct {
	inv      *inventory.Inventory
	nets     networks.Networks
	o        Options
	subjects map[inventory.Key]*subject
	omitted  []Omission
}

func key(e prom.Endpoint) inventory.Key {
	return inventory.Key{Namespace: e.Namespace, Kind: e.Kind, Name: e.Workload}
}

func (g *generator) omit(subj *inventory.Key, p prom.Pair, format string, args ...any) {
	om := Omission{Pair: p, Reason: fmt.Sprintf(format, args...)}
	if subj != nil {
		om.Namespace, om.Subject = subj.Namespace, Name(*subj)
	}
	g.omitted = append(g.omitted, om)
}

func (g *generator) add(p prom.Pair) {
	if p.ActiveHours < g.o.MinActiveHours {
		g.omit(nil, p, "seen in %d hours, fewer than the %d required", p.ActiveHours, g.o.MinActiveHours)
		return
	}
	if p.Protocol == "ICMP" || p.Protocol == "ICMPv6" {
		g.omit(nil, p, "NetworkPolicy cannot express %s", p.Protocol)
		return
	}
	g.side(p, egress, p.Source, p.Destination)
	g.side(p, ingress, p.Destination, p.Source)
}

// side adds the rule of one end of the pair: egress of the source, or
// ingress of the destination.
func (g *generator) side(p prom.Pair, dir direction, self, peer prom.Endpoint) {
	if !podKinds[self.Kind] {
		return // nodes, networks, Services and Unknown have no policy of their own
	}
	k := key(self)
	w, ok := g.inv.Workloads[k]
	switch {
	case !ok:
		g.omit(&k, p, "%s is not in the cluster", self)
		return
	case w.Selector == nil:
		g.omit(&k, p, "%s has no stable labels to select its pods by", self)
		return
	}
	peers, reason := g.peers(self, peer)
	if reason != "" {
		g.omit(&k, p, "%s", reason)
		return
	}
	s := g.subjects[k]
	if s == nil {
		s = &subject{w: w, rules: [2]map[string]*rule{{}, {}}}
		g.subjects[k] = s
	}
	rk := peer.Kind + "/" + peer.Namespace + "/" + peer.Workload
	r := s.rules[dir][rk]
	if r == nil {
		r = &rule{sortKey: rk, peers: peers, ports: map[string]networkingv1.NetworkPolicyPort{}}
		s.rules[dir][rk] = r
	}
	proto := corev1.Protocol(p.Protocol)
	port := intstr.FromInt32(int32(p.Port)) //nolint:gosec // prom.ObservedPairs checks the port range
	r.ports[fmt.Sprintf("%s/%05d", proto, p.Port)] = networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &port}
}

// peers returns how a NetworkPolicy names peer, seen from self, or why it
// cannot.
func (g *generator) peers(self, peer prom.Endpoint) ([]networkingv1.NetworkPolicyPeer, string) {
	switch {
	case peer.Kind == "Unknown":
		return nil, "an Unknown peer (an address in the cluster no informer knew) never becomes a rule"
	case peer.Kind == "Service":
		return nil, fmt.Sprintf("%s: a ClusterIP seen untranslated; NetworkPolicy matches pod addresses after DNAT", peer)
	case peer.Kind == "Node":
		if g.o.Nodes == NodesOmit {
			return nil, fmt.Sprintf("node traffic (%s) left out: --nodes=omit", peer.Workload)
		}
		addrs := g.inv.Nodes[peer.Workload]
		if len(addrs) == 0 {
			return nil, fmt.Sprintf("node %s is not in the cluster", peer.Workload)
		}
		var out []networkingv1.NetworkPolicyPeer
		for _, a := range addrs {
			out = append(out, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: netip.PrefixFrom(a, a.BitLen()).String()}})
		}
		return out, ""
	case peer.Kind == "Network":
		blocks, ok := g.nets.Blocks(peer.Workload)
		if !ok {
			return nil, fmt.Sprintf("network %q is not in --networks.file", peer.Workload)
		}
		var out []networkingv1.NetworkPolicyPeer
		for _, b := range blocks {
			ib := &networkingv1.IPBlock{CIDR: b.CIDR.String()}
			for _, e := range b.Except {
				ib.Except = append(ib.Except, e.String())
			}
			out = append(out, networkingv1.NetworkPolicyPeer{IPBlock: ib})
		}
		if len(out) == 0 {
			return nil, fmt.Sprintf("network %q has no prefixes", peer.Workload)
		}
		return out, ""
	case podKinds[peer.Kind]:
		w, ok := g.inv.Workloads[key(peer)]
		if !ok {
			return nil, fmt.Sprintf("peer %s is not in the cluster", peer)
		}
		if w.Selector == nil {
			return nil, fmt.Sprintf("peer %s has no stable labels to select its pods by", peer)
		}
		np := networkingv1.NetworkPolicyPeer{PodSelector: w.Selector.DeepCopy()}
		if peer.Namespace != self.Namespace {
			np.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": peer.Namespace}}
		}
		return []networkingv1.NetworkPolicyPeer{np}, ""
	}
	return nil, fmt.Sprintf("peer kind %q is not one podflow reports", peer.Kind)
}

func sortedRules(m map[string]*rule) []*rule {
	out := make([]*rule, 0, len(m))
	for _, r := range m {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *rule) int { return cmp.Compare(a.sortKey, b.sortKey) })
	return out
}

func sortedPorts(m map[string]networkingv1.NetworkPolicyPort) []networkingv1.NetworkPolicyPort {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]networkingv1.NetworkPolicyPort, 0, len(keys))
	for _, k := range keys {
		out = append(out, m[k])
	}
	return out
}

// dnsRule allows the cluster DNS: its pods on the Service's target ports, or
// port 53 to anywhere when the DNS Service is not known.
func (g *generator) dnsRule() networkingv1.NetworkPolicyEgressRule {
	dns := g.inv.DNS
	if dns == nil {
		udp, tcp := corev1.ProtocolUDP, corev1.ProtocolTCP
		p53 := intstr.FromInt32(53)
		return networkingv1.NetworkPolicyEgressRule{Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p53}, {Protocol: &udp, Port: &p53}}}
	}
	r := networkingv1.NetworkPolicyEgressRule{To: []networkingv1.NetworkPolicyPeer{{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": dns.Namespace}},
		PodSelector:       dns.Selector.DeepCopy(),
	}}}
	ports := map[string]networkingv1.NetworkPolicyPort{}
	for _, sp := range dns.Ports {
		proto := sp.Protocol
		if proto == "" {
			proto = corev1.ProtocolUDP
		}
		target := sp.TargetPort
		if target.Type == intstr.Int && target.IntVal == 0 || target.Type == intstr.String && target.StrVal == "" {
			target = intstr.FromInt32(sp.Port)
		}
		ports[string(proto)+"/"+target.String()] = networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &target}
	}
	r.Ports = sortedPorts(ports)
	return r
}

// servesDNS tells whether the workload's pods are the cluster DNS Service's.
func (g *generator) servesDNS(w inventory.Workload) bool {
	dns := g.inv.DNS
	if dns == nil || w.Namespace != dns.Namespace || len(w.Selector.MatchLabels) == 0 {
		return false
	}
	sel, err := metav1.LabelSelectorAsSelector(dns.Selector)
	return err == nil && sel.Matches(labels.Set(w.Selector.MatchLabels))
}

func (g *generator) result() Result {
	res := Result{Omitted: g.omitted, Rules: map[string][2]int{}, Peers: map[string]int{}}
	keys := make([]inventory.Key, 0, len(g.subjects))
	for k := range g.subjects {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b inventory.Key) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(Name(a), Name(b)))
	})
	for _, k := range keys {
		s := g.subjects[k]
		np := &networkingv1.NetworkPolicy{
			TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
			ObjectMeta: metav1.ObjectMeta{
				Name: Name(k), Namespace: k.Namespace,
				Labels: map[string]string{"app.kubernetes.io/managed-by": ManagedBy},
				Annotations: map[string]string{
					"podflow.io/workload": k.Kind + "/" + k.Name,
				},
			},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: *s.w.Selector.DeepCopy(),
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
				// Non-nil even when empty: an empty list is "allow nothing".
				Ingress: []networkingv1.NetworkPolicyIngressRule{},
			},
		}
		peers := map[string]bool{}
		if g.servesDNS(s.w) {
			// Every pod resolves names through these pods, whether or not
			// the baseline saw it.
			dns := g.dnsRule()
			np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{
				From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}}}, Ports: dns.Ports,
			})
		}
		for _, r := range sortedRules(s.rules[ingress]) {
			np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: r.peers, Ports: sortedPorts(r.ports)})
			peers[r.sortKey] = true
		}
		np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{g.dnsRule()}
		for _, r := range sortedRules(s.rules[egress]) {
			np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: r.peers, Ports: sortedPorts(r.ports)})
			peers[r.sortKey] = true
		}
		res.Policies = append(res.Policies, np)
		id := k.Namespace + "/" + np.Name
		res.Rules[id] = [2]int{len(np.Spec.Ingress), len(np.Spec.Egress)}
		res.Peers[id] = len(peers)
	}
	slices.SortStableFunc(res.Omitted, func(a, b Omission) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Subject, b.Subject), cmp.Compare(a.Reason, b.Reason))
	})
	return res
}
