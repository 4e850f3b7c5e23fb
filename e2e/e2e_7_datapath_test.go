package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/podflow/podflow/e2e/harness"
)

// dataPath is the cluster the Service scenarios share: two backends, one on
// each node, and the outside client.
type dataPath struct {
	s        *harness.Sandbox
	out      *harness.Outside
	web, api *harness.Pod // edge/web on node-1, edge/api on node-2
	port     int32        // next free Service port
	// sentToNobody is what reached podflow's hooks for the Service
	// without endpoints so far (both families share its series).
	sentToNobody int
	meters       map[string]*harness.IgnoredMeter
}

var dp *dataPath

func dataPathCluster(t *testing.T) *dataPath {
	t.Helper()
	s := sandbox(t)
	if dp != nil {
		return dp
	}
	ctx := context.Background()
	e := s.Env
	d := &dataPath{s: s, port: 7700, meters: map[string]*harness.IgnoredMeter{}}
	var err error
	if d.out, err = e.AddOutsideClient(); err != nil {
		t.Fatal(err)
	}
	for _, b := range []struct {
		name string
		on   *harness.Node
		pod  **harness.Pod
	}{{"web", s.Nodes[0], &d.web}, {"api", s.Nodes[1], &d.api}} {
		w, err := e.Deployment(ctx, "edge", b.name)
		if err != nil {
			t.Fatal(err)
		}
		if *b.pod, err = e.AddPod(ctx, w, b.on); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range s.Nodes {
		if d.meters[n.Name], err = e.NewIgnoredMeter(n); err != nil {
			t.Fatal(err)
		}
	}
	dp = d
	return d
}

// service creates a Service of the given kind in front of backend, on a
// port of its own (so that every scenario has series of its own), with an
// echoing UDP sink on the target port.
func (d *dataPath) service(t *testing.T, backend *harness.Pod, typ corev1.ServiceType, policy corev1.ServiceExternalTrafficPolicy, lbNode *harness.Node) *harness.Service {
	t.Helper()
	d.port++
	port := d.port
	name := fmt.Sprintf("%s-%d", backend.Workload.Name, port)
	svc, err := d.s.Env.NewService(context.Background(), harness.ServiceSpec{
		Name: name, Backend: backend, Protocol: corev1.ProtocolUDP, Port: port, TargetPort: port + 1000,
		Type: typ, Policy: policy, LBNode: lbNode,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.s.Env.UDPSink(backend.NS, int(svc.TargetPort), true); err != nil {
		t.Fatal(err)
	}
	return svc
}

// flow is one scenario's traffic and what podflow must make of it.
type flow struct {
	from     *harness.NetNS
	to       netip.AddrPort
	src, dst *harness.Workload
	svc      *harness.Service
	// port is the destination_port podflow reports: the Service's
	// target port unless set.
	port int
	// nodes the packets cross: when two, the one that does not report
	// must count them all as other_node_reports.
	crosses int
}

// run sends count echoed datagrams and asserts, summed over every node's
// podflow: exact packets and bytes both ways on the pair with the real
// initiator as source, one connection, one reporting node, the Service
// named in destination_service, and the other node ignoring exactly the
// packets the reporting node counted.
func (d *dataPath) run(t *testing.T, f flow) {
	t.Helper()
	ctx := context.Background()
	e := d.s.Env
	bases := make([]int, len(d.s.Nodes))
	if f.crosses == 2 {
		// Both at once: each takes a few seconds to settle.
		errs := make([]error, len(d.s.Nodes))
		var wg sync.WaitGroup
		for i, n := range d.s.Nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				bases[i], errs[i] = d.meters[n.Name].Mark(ctx)
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
	}
	const count, payload = 10, 100
	if err := harness.SendUDP(ctx, f.from, f.to, count, payload, true); err != nil {
		t.Fatal(err)
	}
	size := harness.UDPBytes(f.to.Addr(), payload)
	port := f.port
	if port == 0 {
		port = int(f.svc.TargetPort)
	}
	if !expectPairWithin(t, e, 30*time.Second, 3*time.Second, f.src, f.dst, port, "UDP", count, count*size, count, count*size, 1) {
		return
	}

	t.Run("destination_service", func(t *testing.T) {
		q := fmt.Sprintf(`sum(%sdestination_service=%q})`, trimBrace(pairSel("podflow_packets_total", f.src, f.dst, port, "UDP", "original")), f.svc.Name)
		if _, err := e.WaitValue(ctx, q, count, 5*time.Second); err != nil {
			t.Error(err)
		}
	})
	if f.crosses != 2 {
		return
	}
	samples, err := e.Query(ctx, "sum by (node) ("+pairSel("podflow_packets_total", f.src, f.dst, port, "UDP", "")+")")
	if err != nil || len(samples) != 1 {
		t.Fatalf("reporting node: %v %v", samples, err)
	}
	reporter := samples[0].Metric["node"]
	for i, n := range d.s.Nodes {
		if n.Name == reporter {
			continue
		}
		if err := d.meters[n.Name].WaitDelta(ctx, bases[i], 2*count, 30*time.Second); err != nil {
			t.Errorf("%v (%s reported the %d packets)", err, reporter, 2*count)
		}
	}
}

// trimBrace turns `m{a="b"}` into `m{a="b",` so that a matcher can follow.
func trimBrace(sel string) string { return sel[:len(sel)-1] + "," }

func nodeWorkload(n *harness.Node) *harness.Workload {
	return &harness.Workload{Name: n.Name, Kind: "Node"}
}

// TestDataPathClusterIP: pods, a hostNetwork pod and a node process reach
// ClusterIPs (IPv4 and IPv6) translated by kube-proxy to a pod on the
// other node.
func TestDataPathClusterIP(t *testing.T) {
	d := dataPathCluster(t)
	ctx := context.Background()
	s, e := d.s, d.s.Env
	n1, n2 := s.Nodes[0], s.Nodes[1]
	frontend := s.Pod("shop/frontend")
	for _, fam := range []int{4, 6} {
		t.Run(fmt.Sprintf("pod-v%d", fam), func(t *testing.T) {
			toAPI := d.service(t, d.api, corev1.ServiceTypeClusterIP, "", nil)
			d.run(t, flow{from: frontend.NS, to: netip.AddrPortFrom(toAPI.ClusterIP(fam), uint16(toAPI.Port)),
				src: frontend.Workload, dst: d.api.Workload, svc: toAPI, crosses: 2})
		})
	}
	t.Run("hostnetwork-pod", func(t *testing.T) {
		w, err := e.DaemonSet(ctx, "edge", "probe")
		if err != nil {
			t.Fatal(err)
		}
		p, err := e.AddHostNetworkPod(ctx, w, n1)
		if err != nil {
			t.Fatal(err)
		}
		svc := d.service(t, d.api, corev1.ServiceTypeClusterIP, "", nil)
		d.run(t, flow{from: p.NS, to: netip.AddrPortFrom(svc.ClusterIP(4), uint16(svc.Port)),
			src: nodeWorkload(n1), dst: d.api.Workload, svc: svc, crosses: 2})
	})
	t.Run("pod-same-node", func(t *testing.T) {
		svc := d.service(t, d.web, corev1.ServiceTypeClusterIP, "", nil)
		d.run(t, flow{from: frontend.NS, to: netip.AddrPortFrom(svc.ClusterIP(4), uint16(svc.Port)),
			src: frontend.Workload, dst: d.web.Workload, svc: svc, crosses: 1})
	})
	t.Run("node-process", func(t *testing.T) {
		svc := d.service(t, d.web, corev1.ServiceTypeClusterIP, "", nil)
		d.run(t, flow{from: n2.NS, to: netip.AddrPortFrom(svc.ClusterIP(4), uint16(svc.Port)),
			src: nodeWorkload(n2), dst: d.web.Workload, svc: svc, crosses: 2})
	})
}

// TestDataPathHairpin: a pod reaches its own Service and lands on itself
// (kube-proxy masquerades the hairpin).
func TestDataPathHairpin(t *testing.T) {
	d := dataPathCluster(t)
	for _, fam := range []int{4, 6} {
		t.Run(fmt.Sprintf("v%d", fam), func(t *testing.T) {
			svc := d.service(t, d.web, corev1.ServiceTypeClusterIP, "", nil)
			d.run(t, flow{from: d.web.NS, to: netip.AddrPortFrom(svc.ClusterIP(fam), uint16(svc.Port)),
				src: d.web.Workload, dst: d.web.Workload, svc: svc, crosses: 1})
		})
	}
}

// TestDataPathNodePort: the outside client reaches a NodePort. With
// externalTrafficPolicy Cluster it enters on node-2 and is translated and
// masqueraded to the backend on node-1; with Local it enters on the
// backend's node, which keeps the client's address.
func TestDataPathNodePort(t *testing.T) { dataPathFromOutside(t, corev1.ServiceTypeNodePort) }

// TestDataPathLoadBalancer: the outside client reaches a LoadBalancer's
// address, which the fabric routes to one node as a cloud load balancer
// would: with Cluster to a node without the backend, with Local to the
// backend's node.
func TestDataPathLoadBalancer(t *testing.T) { dataPathFromOutside(t, corev1.ServiceTypeLoadBalancer) }

func dataPathFromOutside(t *testing.T, typ corev1.ServiceType) {
	d := dataPathCluster(t)
	n1, n2 := d.s.Nodes[0], d.s.Nodes[1]
	customers := &harness.Workload{Name: harness.OutsideNetwork, Kind: "Network"}
	for _, c := range []struct {
		policy  corev1.ServiceExternalTrafficPolicy
		via     *harness.Node
		crosses int
	}{
		{corev1.ServiceExternalTrafficPolicyCluster, n2, 2},
		{corev1.ServiceExternalTrafficPolicyCluster, n1, 1},
		{corev1.ServiceExternalTrafficPolicyLocal, n1, 1},
	} {
		for _, fam := range []int{4, 6} {
			t.Run(fmt.Sprintf("%s-via-%s-v%d", c.policy, c.via.Name, fam), func(t *testing.T) {
				var to netip.AddrPort
				if typ == corev1.ServiceTypeLoadBalancer {
					svc := d.service(t, d.web, typ, c.policy, c.via)
					to = netip.AddrPortFrom(svc.LoadBalancerIP(fam), uint16(svc.Port))
					d.run(t, flow{from: d.out.NS, to: to, src: customers, dst: d.web.Workload, svc: svc, crosses: c.crosses})
					return
				}
				svc := d.service(t, d.web, typ, c.policy, nil)
				nodeIP := c.via.IPv4
				if fam == 6 {
					nodeIP = c.via.IPv6
				}
				to = netip.AddrPortFrom(nodeIP, uint16(svc.NodePort))
				d.run(t, flow{from: d.out.NS, to: to, src: customers, dst: d.web.Workload, svc: svc, crosses: c.crosses})
			})
		}
	}
	// A pod as the client: kube-proxy on its own node translates a load
	// balancer address like a ClusterIP; another node's NodePort is that
	// node's, translated and masqueraded there.
	frontend := d.s.Pod("shop/frontend")
	if typ == corev1.ServiceTypeLoadBalancer {
		t.Run("pod", func(t *testing.T) {
			svc := d.service(t, d.api, typ, corev1.ServiceExternalTrafficPolicyCluster, n1)
			d.run(t, flow{from: frontend.NS, to: netip.AddrPortFrom(svc.LoadBalancerIP(4), uint16(svc.Port)),
				src: frontend.Workload, dst: d.api.Workload, svc: svc, crosses: 2})
		})
		return
	}
	t.Run("pod-to-other-node", func(t *testing.T) {
		svc := d.service(t, d.web, typ, corev1.ServiceExternalTrafficPolicyCluster, nil)
		d.run(t, flow{from: frontend.NS, to: netip.AddrPortFrom(n2.IPv4, uint16(svc.NodePort)),
			src: frontend.Workload, dst: nodeWorkload(n2), svc: svc, port: int(svc.NodePort), crosses: 2})
	})
}

// TestDataPathNoEndpoint: a Service whose selector matches no ready pod.
// kube-proxy on the client's node rejects its traffic (the client's
// socket is refused). podflow counts exactly what reached its hooks, as
// the kernel counts it there: a destination of kind Service if anything,
// never a backend or an Unknown.
func TestDataPathNoEndpoint(t *testing.T) {
	d := dataPathCluster(t)
	ctx := context.Background()
	s, e := d.s, d.s.Env
	d.port++
	svc, err := e.NewService(ctx, harness.ServiceSpec{Name: "nobody", Namespace: "edge", Selector: map[string]string{"app": "nobody"},
		Protocol: corev1.ProtocolUDP, Port: d.port})
	if err != nil {
		t.Fatal(err)
	}
	frontend := s.Pod("shop/frontend")
	dst := &harness.Workload{Namespace: "edge", Name: "nobody", Kind: "Service"}
	const count, payload = 3, 60
	for _, fam := range []int{4, 6} {
		t.Run(fmt.Sprintf("v%d", fam), func(t *testing.T) {
			src, vip := frontend.IPv4, svc.ClusterIP(fam)
			if fam == 6 {
				src = frontend.IPv6
			}
			fc, err := e.CountFlowOnNode(frontend.Node, src, vip, "udp")
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < count; i++ {
				// One socket per datagram: the rejection refuses the next
				// write on a connected socket.
				err := harness.SendUDP(ctx, frontend.NS, netip.AddrPortFrom(vip, uint16(svc.Port)), 1, payload, true)
				if err == nil || !strings.Contains(err.Error(), "refused") {
					t.Fatalf("datagram to a Service without endpoints: %v, want connection refused", err)
				}
			}
			k, err := fc.Read()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("kernel counted at podflow's hooks: %+v", k)
			time.Sleep(5*time.Second + e.CountsSettle()) // two scrapes, after podflow counted
			if k.OrigPackets > 0 {
				expectPairWithin(t, e, 30*time.Second, 3*time.Second, frontend.Workload, dst, int(svc.Port), "UDP", k.OrigPackets, k.OrigBytes, 0, 0, 0)
			}
			q := fmt.Sprintf(`count(podflow_packets_total{source_workload="frontend",destination_port="%d",destination_kind!="Service"})`, svc.Port)
			if v, ok, err := e.QueryValue(ctx, q); err != nil || ok {
				t.Errorf("%s = %v %v %v: the rejected traffic was named otherwise than its Service", q, v, ok, err)
			}
			q = fmt.Sprintf(`sum(podflow_packets_total{source_workload="frontend",destination_port="%d",destination_kind="Service"}) or vector(0)`, svc.Port)
			if _, err := e.WaitValue(ctx, q, float64(d.sentToNobody+k.OrigPackets), 3*time.Second); err != nil {
				t.Error(err)
			}
			d.sentToNobody += k.OrigPackets
		})
	}
}
