package harness

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// Service is a Service of the sandbox. kube-proxy on every node translates
// it to the ready pods the EndpointSlice controller lists for it.
type Service struct {
	Namespace, Name string
	ClusterIPs      []netip.Addr
	Port            int32
	TargetPort      int32
	Protocol        corev1.Protocol
	// Backend is the pod the Service selects by its workload's labels;
	// nil for a Service that selects no pod.
	Backend *Pod
	Type    corev1.ServiceType
	// NodePort is allocated for NodePort and LoadBalancer Services.
	NodePort int32
	// LoadBalancerIPs are the addresses the harness put into
	// status.loadBalancer.ingress, which the fabric routes to LBNode.
	LoadBalancerIPs []netip.Addr
	LBNode          *Node
	Policy          corev1.ServiceExternalTrafficPolicy
}

// ServiceSpec shapes a Service for NewService.
type ServiceSpec struct {
	Name string
	// Backend's workload labels are the selector. With Selector set
	// instead, the Service selects whatever matches it (possibly nothing).
	Backend  *Pod
	Selector map[string]string
	// Namespace defaults to the backend's.
	Namespace        string
	Protocol         corev1.Protocol
	Port, TargetPort int32
	// Type defaults to ClusterIP.
	Type corev1.ServiceType
	// Policy is externalTrafficPolicy (NodePort and LoadBalancer): Cluster
	// when empty.
	Policy corev1.ServiceExternalTrafficPolicy
	// LBNode is the node a LoadBalancer's address is routed to, as a cloud
	// load balancer picks a healthy node.
	LBNode *Node
}

// ClusterIP of the given family (4 or 6).
func (s *Service) ClusterIP(family int) netip.Addr { return pick(s.ClusterIPs, family) }

// LoadBalancerIP of the given family (4 or 6).
func (s *Service) LoadBalancerIP(family int) netip.Addr { return pick(s.LoadBalancerIPs, family) }

func pick(addrs []netip.Addr, family int) netip.Addr {
	for _, a := range addrs {
		if (family == 4) == a.Is4() {
			return a
		}
	}
	return netip.Addr{}
}

// AddService creates a dual-stack ClusterIP Service selecting backend's pods
// and waits until kube-proxy on every node translates it.
func (e *Env) AddService(ctx context.Context, name string, backend *Pod, proto corev1.Protocol, port, targetPort int32) (*Service, error) {
	return e.NewService(ctx, ServiceSpec{Name: name, Backend: backend, Protocol: proto, Port: port, TargetPort: targetPort})
}

// NewService creates a dual-stack Service. For a LoadBalancer it plays the
// cloud: it picks an address of each family, routes them on the fabric to
// spec.LBNode and writes them into status.loadBalancer.ingress. It returns
// once kube-proxy on every node has rules for the Service's addresses and
// its backend.
func (e *Env) NewService(ctx context.Context, spec ServiceSpec) (*Service, error) {
	ns, sel := spec.Namespace, spec.Selector
	if spec.Backend != nil {
		if ns == "" {
			ns = spec.Backend.Namespace
		}
		if sel == nil {
			sel = spec.Backend.Workload.Labels
		}
	}
	if spec.Type == "" {
		spec.Type = corev1.ServiceTypeClusterIP
	}
	if spec.TargetPort == 0 {
		spec.TargetPort = spec.Port
	}
	if err := e.ensureNamespace(ctx, ns); err != nil {
		return nil, err
	}
	svcSpec := corev1.ServiceSpec{
		Type:           spec.Type,
		Selector:       sel,
		IPFamilyPolicy: ptr.To(corev1.IPFamilyPolicyPreferDualStack),
		Ports:          []corev1.ServicePort{{Protocol: spec.Protocol, Port: spec.Port, TargetPort: intstr.FromInt32(spec.TargetPort)}},
	}
	if spec.Type != corev1.ServiceTypeClusterIP {
		svcSpec.ExternalTrafficPolicy = spec.Policy
		if svcSpec.ExternalTrafficPolicy == "" {
			svcSpec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
		}
	}
	obj, err := e.CP.Client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: spec.Name},
		Spec:       svcSpec,
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("service %s/%s: %w", ns, spec.Name, err)
	}
	s := &Service{Namespace: ns, Name: spec.Name, Port: spec.Port, TargetPort: spec.TargetPort, Protocol: spec.Protocol,
		Backend: spec.Backend, Type: spec.Type, NodePort: obj.Spec.Ports[0].NodePort, Policy: svcSpec.ExternalTrafficPolicy}
	for _, ip := range obj.Spec.ClusterIPs {
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return nil, err
		}
		s.ClusterIPs = append(s.ClusterIPs, a)
	}
	if spec.Type == corev1.ServiceTypeLoadBalancer {
		if err := e.provisionLoadBalancer(ctx, obj, s, spec.LBNode); err != nil {
			return nil, err
		}
	}
	e.services = append(e.services, s)
	want := append([]netip.Addr{}, s.ClusterIPs...)
	want = append(want, s.LoadBalancerIPs...)
	if s.Backend != nil {
		want = append(want, s.Backend.IPv4, s.Backend.IPv6)
	}
	if err := e.WaitProxied(ctx, want, nil, 60*time.Second); err != nil {
		return nil, fmt.Errorf("service %s/%s: %w", ns, spec.Name, err)
	}
	return s, nil
}

// Load balancer addresses the harness hands out: ranges no node, pod or
// outside network uses, routed by the fabric to the chosen node.
var (
	lbPrefix4 = netip.MustParsePrefix("10.252.0.0/24")
	lbPrefix6 = netip.MustParsePrefix("fd00:252::/112")
)

func (e *Env) provisionLoadBalancer(ctx context.Context, obj *corev1.Service, s *Service, via *Node) error {
	if via == nil {
		return fmt.Errorf("service %s/%s: a LoadBalancer needs the node its address is routed to", s.Namespace, s.Name)
	}
	e.lbSeq++
	v4 := netip.AddrFrom4([4]byte{10, 252, 0, byte(e.lbSeq)})
	b6 := lbPrefix6.Addr().As16()
	b6[15] = byte(e.lbSeq)
	v6 := netip.AddrFrom16(b6)
	if !lbPrefix4.Contains(v4) || e.lbSeq > 250 {
		return fmt.Errorf("out of load balancer addresses")
	}
	if err := e.Fabric.IP("route", "add", v4.String()+"/32", "via", via.IPv4.String()); err != nil {
		return err
	}
	if err := e.Fabric.IP("-6", "route", "add", v6.String()+"/128", "via", via.IPv6.String()); err != nil {
		return err
	}
	s.LoadBalancerIPs, s.LBNode = []netip.Addr{v4, v6}, via
	obj.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: v4.String()}, {IP: v6.String()}}
	if _, err := e.CP.Client.CoreV1().Services(s.Namespace).UpdateStatus(ctx, obj, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("service %s/%s status: %w", s.Namespace, s.Name, err)
	}
	return nil
}

// EndpointTerminating reports whether the Service's EndpointSlices list p
// as a terminating endpoint.
func (e *Env) EndpointTerminating(ctx context.Context, s *Service, p *Pod) (bool, error) {
	list, err := e.CP.Client.DiscoveryV1().EndpointSlices(s.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=" + s.Name})
	if err != nil {
		return false, err
	}
	for _, sl := range list.Items {
		for _, ep := range sl.Endpoints {
			if ep.TargetRef != nil && ep.TargetRef.Name == p.Name && ep.Conditions.Terminating != nil && *ep.Conditions.Terminating {
				return true, nil
			}
		}
	}
	return false, nil
}
