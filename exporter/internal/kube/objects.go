package kube

import (
	"net/netip"
	"slices"
	"unique"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/podflow/podflow/exporter/internal/flow"
)

// The informers cache these small structs instead of API objects: a
// transform converts each object before it is stored. objMeta carries the
// identity the informer machinery needs (key, UID, resource version), and
// implements metav1.Object for it.
type objMeta struct {
	name, namespace string
	uid             types.UID
	rv              string
}

func metaOf(m *metav1.ObjectMeta) objMeta {
	return objMeta{name: m.Name, namespace: intern(m.Namespace), uid: m.UID, rv: m.ResourceVersion}
}

// intern shares the strings that repeat across many objects (namespaces,
// node names, owner names) instead of keeping one copy per object.
func intern(s string) string {
	if s == "" {
		return ""
	}
	return unique.Make(s).Value()
}

type podPhase uint8

const (
	phaseOther podPhase = iota
	phasePending
	phaseRunning
	phaseFinished // Succeeded or Failed
)

func phaseOf(p corev1.PodPhase) podPhase {
	switch p {
	case corev1.PodPending:
		return phasePending
	case corev1.PodRunning:
		return phaseRunning
	case corev1.PodSucceeded, corev1.PodFailed:
		return phaseFinished
	}
	return phaseOther
}

// ownerRef is an object's controlling owner: kind and name.
type ownerRef struct {
	kind, name string
}

func controllerOf(refs []metav1.OwnerReference) ownerRef {
	for i := range refs {
		if refs[i].Controller != nil && *refs[i].Controller {
			return ownerRef{kind: intern(refs[i].Kind), name: intern(refs[i].Name)}
		}
	}
	if len(refs) > 0 {
		return ownerRef{kind: intern(refs[0].Kind), name: intern(refs[0].Name)}
	}
	return ownerRef{}
}

// podInfo is what podflow keeps of a pod.
type podInfo struct {
	objMeta
	phase       podPhase
	deleting    bool
	hostNetwork bool
	node        string
	ips         []netip.Addr
	owner       ownerRef
}

// serviceInfo is what podflow keeps of a Service: its ClusterIPs, its
// load balancer ingress addresses and its ports (with their node ports),
// the addresses a client may dial before DNAT.
type serviceInfo struct {
	objMeta
	ips   []netip.Addr
	lbIPs []netip.Addr
	ports []servicePort
	ep    flow.Endpoint // set when indexed
	seq   uint64        // when it was last set
}

type servicePort struct {
	proto          flow.Protocol
	port, nodePort uint16
}

func (s *serviceInfo) hasPort(port uint16, proto flow.Protocol) bool {
	for _, p := range s.ports {
		if p.port == port && p.proto == proto {
			return true
		}
	}
	return false
}

// nodeInfo is what podflow keeps of a node: its addresses, pod CIDRs and
// router addresses.
type nodeInfo struct {
	objMeta
	ips      []netip.Addr
	podCIDRs []netip.Prefix
	// routerIPs are the node's addresses on the pod network, which its
	// own traffic to pods leaves from (see routerAddrs).
	routerIPs []netip.Addr
	seq       uint64 // when it was last set
}

// ownerInfo is what podflow keeps of a ReplicaSet or a Job: its
// controlling owner.
type ownerInfo struct {
	objMeta
	owner ownerRef
}

func parseAddrs(dst []netip.Addr, s string) []netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.IsValid() {
		return dst
	}
	a = a.Unmap()
	for _, have := range dst {
		if have == a {
			return dst
		}
	}
	return append(dst, a)
}

func transformPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // already transformed, or a tombstone
	}
	p := &podInfo{
		objMeta:     metaOf(&pod.ObjectMeta),
		phase:       phaseOf(pod.Status.Phase),
		deleting:    pod.DeletionTimestamp != nil,
		hostNetwork: pod.Spec.HostNetwork,
		node:        intern(pod.Spec.NodeName),
		owner:       controllerOf(pod.OwnerReferences),
	}
	var ips []netip.Addr
	for _, ip := range pod.Status.PodIPs {
		ips = parseAddrs(ips, ip.IP)
	}
	if pod.Status.PodIP != "" {
		ips = parseAddrs(ips, pod.Status.PodIP)
	}
	p.ips = ips
	return p, nil
}

func transformService(obj any) (any, error) {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return obj, nil
	}
	s := &serviceInfo{objMeta: metaOf(&svc.ObjectMeta)}
	for _, ip := range svc.Spec.ClusterIPs {
		s.ips = parseAddrs(s.ips, ip)
	}
	if svc.Spec.ClusterIP != "" {
		s.ips = parseAddrs(s.ips, svc.Spec.ClusterIP) // "None" does not parse
	}
	for _, in := range svc.Status.LoadBalancer.Ingress {
		s.lbIPs = parseAddrs(s.lbIPs, in.IP)
	}
	for _, p := range svc.Spec.Ports {
		proto, ok := serviceProtocols[p.Protocol]
		if !ok || p.Port <= 0 || p.Port > 65535 || p.NodePort < 0 || p.NodePort > 65535 {
			continue
		}
		s.ports = append(s.ports, servicePort{proto: proto, port: uint16(p.Port), nodePort: uint16(p.NodePort)})
	}
	return s, nil
}

var serviceProtocols = map[corev1.Protocol]flow.Protocol{
	"": flow.ProtoTCP, corev1.ProtocolTCP: flow.ProtoTCP, corev1.ProtocolUDP: flow.ProtoUDP, corev1.ProtocolSCTP: flow.ProtoSCTP,
}

func transformNode(obj any) (any, error) {
	node, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	n := &nodeInfo{objMeta: metaOf(&node.ObjectMeta)}
	n.name = intern(n.name)
	for _, a := range node.Status.Addresses {
		if a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP {
			n.ips = parseAddrs(n.ips, a.Address)
		}
	}
	cidrs := node.Spec.PodCIDRs
	if len(cidrs) == 0 && node.Spec.PodCIDR != "" {
		cidrs = []string{node.Spec.PodCIDR}
	}
	for _, c := range cidrs {
		if p, err := netip.ParsePrefix(c); err == nil {
			n.podCIDRs = append(n.podCIDRs, p.Masked())
		}
	}
	n.routerIPs = routerAddrs(node.Annotations, n.podCIDRs, n.ips)
	return n, nil
}

// routerAnnotations are the node annotations in which CNIs publish the
// address of the node's own device on the pod network: Calico's tunnel
// and WireGuard addresses, Cilium's cilium_host address (under both of
// its prefixes).
var routerAnnotations = []string{
	"projectcalico.org/IPv4VXLANTunnelAddr",
	"projectcalico.org/IPv6VXLANTunnelAddr",
	"projectcalico.org/IPv4IPIPTunnelAddr",
	"projectcalico.org/IPv4WireguardInterfaceAddr",
	"projectcalico.org/IPv6WireguardInterfaceAddr",
	"network.cilium.io/ipv4-cilium-host",
	"network.cilium.io/ipv6-cilium-host",
	"io.cilium.network.ipv4-cilium-host",
	"io.cilium.network.ipv6-cilium-host",
}

// routerAddrs returns the addresses a node's own traffic to pods may
// leave from, besides its own addresses (ips, left out): the addresses
// CNIs publish in routerAnnotations, and for each pod CIDR its network
// address (the VXLAN device's under flannel: its own traffic to pods on
// other nodes, and its masquerade towards them) and the address after it
// (the bridge's gateway under the bridge plugin with host-local IPAM: its
// traffic to its own pods). They are claimed below every pod (rank
// rankNodeRouter), so an IPAM that hands one of them to a pod loses
// nothing: the pod's claim wins while it lives.
func routerAddrs(annotations map[string]string, podCIDRs []netip.Prefix, ips []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, k := range routerAnnotations {
		v, ok := annotations[k]
		if !ok {
			continue
		}
		if p, err := netip.ParsePrefix(v); err == nil {
			v = p.Addr().String() // an address with its prefix length
		}
		out = parseAddrs(out, v)
	}
	for _, p := range podCIDRs {
		out = parseAddrs(out, p.Addr().String())
		if p.Bits() < p.Addr().BitLen()-1 {
			out = parseAddrs(out, p.Addr().Next().String())
		}
	}
	return slices.DeleteFunc(out, func(a netip.Addr) bool { return slices.Contains(ips, a) })
}

func transformOwner(obj any) (any, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	o := &ownerInfo{objMeta: metaOf(&m.ObjectMeta), owner: controllerOf(m.OwnerReferences)}
	o.name = intern(o.name)
	return o, nil
}

// unwrapDeleted returns the last known state of a deleted object and its
// cache key; tombstones carry the object the cache held.
func unwrapDeleted(obj any) (any, string) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return t.Obj, t.Key
	}
	if t, ok := obj.(*cache.DeletedFinalStateUnknown); ok && t != nil {
		return t.Obj, t.Key
	}
	key, _ := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	return obj, key
}

// metav1.Object, as far as the informer machinery reads it. Setters do
// nothing: cached objects are never written.
var _ metav1.Object = (*objMeta)(nil)

func (m *objMeta) GetNamespace() string                          { return m.namespace }
func (m *objMeta) SetNamespace(string)                           {}
func (m *objMeta) GetName() string                               { return m.name }
func (m *objMeta) SetName(string)                                {}
func (m *objMeta) GetGenerateName() string                       { return "" }
func (m *objMeta) SetGenerateName(string)                        {}
func (m *objMeta) GetUID() types.UID                             { return m.uid }
func (m *objMeta) SetUID(types.UID)                              {}
func (m *objMeta) GetResourceVersion() string                    { return m.rv }
func (m *objMeta) SetResourceVersion(string)                     {}
func (m *objMeta) GetGeneration() int64                          { return 0 }
func (m *objMeta) SetGeneration(int64)                           {}
func (m *objMeta) GetSelfLink() string                           { return "" }
func (m *objMeta) SetSelfLink(string)                            {}
func (m *objMeta) GetCreationTimestamp() metav1.Time             { return metav1.Time{} }
func (m *objMeta) SetCreationTimestamp(metav1.Time)              {}
func (m *objMeta) GetDeletionTimestamp() *metav1.Time            { return nil }
func (m *objMeta) SetDeletionTimestamp(*metav1.Time)             {}
func (m *objMeta) GetDeletionGracePeriodSeconds() *int64         { return nil }
func (m *objMeta) SetDeletionGracePeriodSeconds(*int64)          {}
func (m *objMeta) GetLabels() map[string]string                  { return nil }
func (m *objMeta) SetLabels(map[string]string)                   {}
func (m *objMeta) GetAnnotations() map[string]string             { return nil }
func (m *objMeta) SetAnnotations(map[string]string)              {}
func (m *objMeta) GetFinalizers() []string                       { return nil }
func (m *objMeta) SetFinalizers([]string)                        {}
func (m *objMeta) GetOwnerReferences() []metav1.OwnerReference   { return nil }
func (m *objMeta) SetOwnerReferences([]metav1.OwnerReference)    {}
func (m *objMeta) GetManagedFields() []metav1.ManagedFieldsEntry { return nil }
func (m *objMeta) SetManagedFields([]metav1.ManagedFieldsEntry)  {}
