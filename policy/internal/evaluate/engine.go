// Package evaluate asks kube-network-policies (sigs.k8s.io/kube-network-policies,
// pinned in go.mod) whether a connection would pass a cluster's
// NetworkPolicies and AdminNetworkPolicies. The verdicts are that engine's:
// this package only feeds it informers and connection tuples.
package evaluate

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	_ "unsafe" // for go:linkname

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/kube-network-policies/pkg/networkpolicy"
	npaclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"
	npainformers "sigs.k8s.io/network-policy-api/pkg/client/informers/externalversions"
)

// packet mirrors the unexported packet type of
// sigs.k8s.io/kube-network-policies/pkg/networkpolicy at the pinned version
// (packet.go): the engine's verdict function takes it by value. The field
// order and types must stay identical; TestEngineVerdicts fails otherwise.
type packet struct {
	id      uint32 //nolint:unused // layout of the mirrored type
	family  v1.IPFamily
	srcIP   net.IP
	dstIP   net.IP
	proto   v1.Protocol
	srcPort int
	dstPort int
	payload []byte //nolint:unused // layout of the mirrored type
}

// evaluatePacket is the engine's own verdict for a connection's first packet
// (AdminNetworkPolicy, then NetworkPolicy, then BaselineAdminNetworkPolicy,
// egress of the source and ingress of the destination), which its daemon
// calls for every packet it receives from the nfqueue. The pinned release
// keeps it unexported, hence the link name.
//
//go:linkname evaluatePacket sigs.k8s.io/kube-network-policies/pkg/networkpolicy.(*Controller).evaluatePacket
func evaluatePacket(c *networkpolicy.Controller, ctx context.Context, p packet) bool

// Engine holds the engine's controller over synced informers of one cluster.
type Engine struct {
	ctrl *networkpolicy.Controller
}

// New builds the engine over informers of client and npa (the
// AdminNetworkPolicy client; nil leaves AdminNetworkPolicies out) and waits
// until they are synced. It never installs anything on the node: the
// controller's Run, which owns the nftables table and the queue, is not
// called.
func New(ctx context.Context, client kubernetes.Interface, npa npaclient.Interface) (*Engine, error) {
	factory := informers.NewSharedInformerFactory(client, 0)
	cfg := networkpolicy.Config{
		NodeName: "podflow-policy",
		// The NRI stub is only created, never run: the controller looks
		// addresses up in it when no pod has them, and a nil stub would
		// fault there.
		NRIdisabled:                false,
		AdminNetworkPolicy:         npa != nil,
		BaselineAdminNetworkPolicy: npa != nil,
	}
	var npaFactory npainformers.SharedInformerFactory
	if npa != nil {
		npaFactory = npainformers.NewSharedInformerFactory(npa, 0)
	}
	var ctrl *networkpolicy.Controller
	var err error
	if npa != nil {
		ctrl, err = networkpolicy.NewController(client,
			factory.Networking().V1().NetworkPolicies(), factory.Core().V1().Namespaces(),
			factory.Core().V1().Pods(), factory.Core().V1().Nodes(), npa,
			npaFactory.Policy().V1alpha1().AdminNetworkPolicies(),
			npaFactory.Policy().V1alpha1().BaselineAdminNetworkPolicies(), cfg)
	} else {
		ctrl, err = networkpolicy.NewController(client,
			factory.Networking().V1().NetworkPolicies(), factory.Core().V1().Namespaces(),
			factory.Core().V1().Pods(), factory.Core().V1().Nodes(), nil, nil, nil, cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("kube-network-policies controller: %w", err)
	}
	factory.Start(ctx.Done())
	for _, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return nil, fmt.Errorf("informers did not sync: %w", context.Cause(ctx))
		}
	}
	if npaFactory != nil {
		npaFactory.Start(ctx.Done())
		for _, ok := range npaFactory.WaitForCacheSync(ctx.Done()) {
			if !ok {
				return nil, fmt.Errorf("AdminNetworkPolicy informers did not sync: %w", context.Cause(ctx))
			}
		}
	}
	return &Engine{ctrl: ctrl}, nil
}

// Allowed returns the engine's verdict on a connection's first packet from
// src to dst on dstPort (after DNAT) with proto. ICMP has no ports.
func (e *Engine) Allowed(ctx context.Context, src, dst netip.Addr, dstPort int, proto v1.Protocol) bool {
	fam := v1.IPv4Protocol
	if dst.Unmap().Is6() {
		fam = v1.IPv6Protocol
	}
	src, dst = src.Unmap(), dst.Unmap()
	return evaluatePacket(e.ctrl, ctx, packet{
		family:  fam,
		srcIP:   net.IP(src.AsSlice()),
		dstIP:   net.IP(dst.AsSlice()),
		proto:   proto,
		srcPort: 40000, // an ephemeral port, as a real client's would be
		dstPort: dstPort,
	})
}
