package harness

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// KubeProxyTable is the nftables table (family inet) in which the harness
// emulates kube-proxy on every node. podflow's own table is inet podflow.
const KubeProxyTable = "pfe2e-kubeproxy"

// Service is a ClusterIP Service whose traffic every node DNATs to one
// backend pod, as kube-proxy would.
type Service struct {
	Namespace, Name string
	ClusterIPs      []netip.Addr
	Port            int32
	TargetPort      int32
	Protocol        corev1.Protocol
	Backend         *Pod
}

// ClusterIP of the given family (4 or 6).
func (s *Service) ClusterIP(family int) netip.Addr {
	for _, a := range s.ClusterIPs {
		if (family == 4) == a.Is4() {
			return a
		}
	}
	return netip.Addr{}
}

// AddService creates a dual-stack ClusterIP Service selecting backend's pods
// and installs its DNAT on every node.
func (e *Env) AddService(ctx context.Context, name string, backend *Pod, proto corev1.Protocol, port, targetPort int32) (*Service, error) {
	w := backend.Workload
	obj, err := e.CP.Client.CoreV1().Services(w.Namespace).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{
			Selector:       w.Labels,
			IPFamilyPolicy: ptr.To(corev1.IPFamilyPolicyPreferDualStack),
			Ports:          []corev1.ServicePort{{Protocol: proto, Port: port, TargetPort: intstr.FromInt32(targetPort)}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("service %s/%s: %w", w.Namespace, name, err)
	}
	s := &Service{Namespace: w.Namespace, Name: name, Port: port, TargetPort: targetPort, Protocol: proto, Backend: backend}
	for _, ip := range obj.Spec.ClusterIPs {
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return nil, err
		}
		s.ClusterIPs = append(s.ClusterIPs, a)
	}
	e.services = append(e.services, s)
	for _, n := range e.Nodes {
		if err := n.NS.Nft(s.ruleset()); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// ruleset adds this Service's DNAT rules to the harness' kube-proxy table
// (creating the table and chains when missing; add never replaces).
func (s *Service) ruleset() string {
	var b strings.Builder
	b.WriteString("table inet " + KubeProxyTable + " {\n" +
		"  chain prerouting { type nat hook prerouting priority -100; policy accept; }\n" +
		"  chain output { type nat hook output priority -100; policy accept; }\n}\n")
	proto := strings.ToLower(string(s.Protocol))
	for _, vip := range s.ClusterIPs {
		fam, to := "ip", s.Backend.IPv4.String()+fmt.Sprintf(":%d", s.TargetPort)
		if vip.Is6() {
			fam, to = "ip6", fmt.Sprintf("[%s]:%d", s.Backend.IPv6, s.TargetPort)
		}
		for _, chain := range []string{"prerouting", "output"} {
			fmt.Fprintf(&b, "add rule inet %s %s %s daddr %s %s dport %d dnat %s to %s\n",
				KubeProxyTable, chain, fam, vip, proto, s.Port, fam, to)
		}
	}
	return b.String()
}

// deleteKubeProxy removes the harness' table from a node.
func deleteKubeProxy(n *Node) error {
	return n.NS.Nft("delete table inet " + KubeProxyTable + "\n")
}
