package attribute

import (
	"net/netip"
	"testing"

	"github.com/podflow/podflow/exporter/internal/flow"
)

type fakeResolver map[netip.Addr]flow.Endpoint

// Lookup reports an entry of kind Unknown as a miss that still names the
// node, as the Kubernetes source does for an address in a node's pod CIDR
// that its informers have not seen yet.
func (r fakeResolver) Lookup(a netip.Addr) (flow.Endpoint, bool) {
	ep, ok := r[a]
	if ok && ep.Kind == flow.KindUnknown {
		return ep, false
	}
	return ep, ok
}

var (
	ipFrontendA = netip.MustParseAddr("10.244.1.10") // pod on node-a
	ipCartA     = netip.MustParseAddr("10.244.1.11") // pod on node-a
	ipDBB       = netip.MustParseAddr("fd00:10:244:2::20")
	ipNodeA     = netip.MustParseAddr("192.168.0.1")
	ipNodeB     = netip.MustParseAddr("192.168.0.2")
	ipHostNetB  = ipNodeB // a hostNetwork pod on node-b shares its node's address
	ipSvcCart   = netip.MustParseAddr("10.96.0.10")
	ipExternal  = netip.MustParseAddr("203.0.113.7")
	ipCorp      = netip.MustParseAddr("172.16.5.5")
	ipStranger  = netip.MustParseAddr("10.244.9.9")  // in the pod CIDR, unknown
	ipNewbornA  = netip.MustParseAddr("10.244.1.50") // a pod on node-a the informers have not seen yet

	resolver = fakeResolver{
		ipFrontendA: {Namespace: "shop", Workload: "frontend", Kind: flow.KindDeployment, Pod: "frontend-7d9-abc", Node: "node-a"},
		ipCartA:     {Namespace: "shop", Workload: "cart", Kind: flow.KindStatefulSet, Pod: "cart-0", Node: "node-a"},
		ipDBB:       {Namespace: "data", Workload: "db", Kind: flow.KindStatefulSet, Pod: "db-0", Node: "node-b"},
		ipNodeA:     {Namespace: "ignored", Workload: "node-a", Kind: flow.KindNode, Node: "node-a"},
		ipNodeB:     {Workload: "node-b", Kind: flow.KindNode, Node: "node-b"},
		ipSvcCart:   {Namespace: "shop", Workload: "cart", Kind: flow.KindService},
		ipExternal:  {Workload: "internet", Kind: flow.KindNetwork},
		ipCorp:      {Namespace: "ignored", Workload: "corp", Kind: flow.KindNetwork},
		ipNewbornA:  {Kind: flow.KindUnknown, Node: "node-a"},
	}
)

func TestReporterRule(t *testing.T) {
	tests := []struct {
		name                 string
		initiator, responder netip.Addr
		service              netip.Addr
		// reporters lists the nodes that report the flow, out of node-a,
		// node-b and node-c (which hosts neither end).
		reporters []string
	}{
		{"pod to pod, same node", ipFrontendA, ipCartA, netip.Addr{}, []string{"node-a"}},
		{"pod to pod, across nodes", ipFrontendA, ipDBB, netip.Addr{}, []string{"node-a"}},
		{"pod to pod, across nodes, reverse", ipDBB, ipFrontendA, netip.Addr{}, []string{"node-b"}},
		{"pod to Service, translated", ipDBB, ipCartA, ipSvcCart, []string{"node-b"}},
		{"pod to Service, not translated", ipFrontendA, ipSvcCart, netip.Addr{}, []string{"node-a"}},
		{"pod to node", ipFrontendA, ipNodeB, netip.Addr{}, []string{"node-a"}},
		{"node to pod", ipNodeB, ipFrontendA, netip.Addr{}, []string{"node-b"}},
		{"external to pod", ipExternal, ipDBB, netip.Addr{}, []string{"node-b"}},
		{"pod to external", ipFrontendA, ipExternal, netip.Addr{}, []string{"node-a"}},
		{"hostNetwork pod to pod", ipHostNetB, ipCartA, netip.Addr{}, []string{"node-b"}},
		{"unknown in-cluster address to pod", ipStranger, ipCartA, netip.Addr{}, []string{"node-a"}},
		// While the informers lag, the pod CIDR still names the initiator's
		// node: the responder's node must not report it too.
		{"pod not yet known to pod across nodes", ipNewbornA, ipDBB, netip.Addr{}, []string{"node-a"}},
		{"external to external (no node named): every node", ipExternal, ipCorp, netip.Addr{}, []string{"node-a", "node-b", "node-c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := flow.Flow{Packets: 1, Initiator: tt.initiator, Responder: tt.responder, Service: tt.service, Port: 443, Proto: flow.ProtoTCP}
			var got []string
			ignored := uint64(0)
			for _, node := range []string{"node-a", "node-b", "node-c"} {
				a := New(resolver, Config{Node: node})
				var k flow.Key
				if a.Attribute(&f, &k) {
					got = append(got, node)
				}
				ignored += a.Stats().OtherNodeReports
			}
			if len(got) != len(tt.reporters) {
				t.Fatalf("reported by %v, want %v", got, tt.reporters)
			}
			for i := range got {
				if got[i] != tt.reporters[i] {
					t.Fatalf("reported by %v, want %v", got, tt.reporters)
				}
			}
			if want := uint64(3 - len(tt.reporters)); ignored != want {
				t.Errorf("other_node_reports = %d, want %d", ignored, want)
			}
		})
	}
}

func TestLoneInstanceReportsEverything(t *testing.T) {
	a := New(resolver, Config{})
	var k flow.Key
	for _, f := range []flow.Flow{
		{Initiator: ipFrontendA, Responder: ipDBB},
		{Initiator: ipExternal, Responder: ipDBB},
		{Initiator: ipNodeB, Responder: ipCartA},
	} {
		if !a.Attribute(&f, &k) {
			t.Errorf("flow %v → %v not reported", f.Initiator, f.Responder)
		}
	}
}

func TestProjection(t *testing.T) {
	all := Labels{SourcePod: true, DestinationPod: true, DestinationService: true}
	tests := []struct {
		name   string
		labels Labels
		f      flow.Flow
		want   flow.Key
	}{
		{
			name: "workload granularity drops pods and services",
			f:    flow.Flow{Packets: 1, Initiator: ipFrontendA, Responder: ipCartA, Service: ipSvcCart, Port: 8080, Proto: flow.ProtoTCP},
			want: flow.Key{SrcNamespace: "shop", SrcWorkload: "frontend", SrcKind: flow.KindDeployment,
				DstNamespace: "shop", DstWorkload: "cart", DstKind: flow.KindStatefulSet, DstPort: 8080, Proto: flow.ProtoTCP},
		},
		{
			name:   "opt-in labels",
			labels: all,
			f:      flow.Flow{Packets: 1, Initiator: ipFrontendA, Responder: ipCartA, Service: ipSvcCart, Port: 8080, Proto: flow.ProtoTCP},
			want: flow.Key{SrcNamespace: "shop", SrcWorkload: "frontend", SrcKind: flow.KindDeployment,
				DstNamespace: "shop", DstWorkload: "cart", DstKind: flow.KindStatefulSet, DstPort: 8080, Proto: flow.ProtoTCP,
				SrcPod: "frontend-7d9-abc", DstPod: "cart-0", DstService: "cart"},
		},
		{
			name:   "service label only from a Service",
			labels: Labels{DestinationService: true},
			f:      flow.Flow{Packets: 1, Initiator: ipFrontendA, Responder: ipCartA, Service: ipDBB, Port: 8080, Proto: flow.ProtoUDP},
			want: flow.Key{SrcNamespace: "shop", SrcWorkload: "frontend", SrcKind: flow.KindDeployment,
				DstNamespace: "shop", DstWorkload: "cart", DstKind: flow.KindStatefulSet, DstPort: 8080, Proto: flow.ProtoUDP},
		},
		{
			name:   "node and network have no namespace",
			labels: all,
			f:      flow.Flow{Packets: 1, Initiator: ipNodeA, Responder: ipCorp, Proto: flow.ProtoICMP},
			want:   flow.Key{SrcWorkload: "node-a", SrcKind: flow.KindNode, DstWorkload: "corp", DstKind: flow.KindNetwork, Proto: flow.ProtoICMP},
		},
		{
			name: "misses are Unknown",
			f:    flow.Flow{Packets: 1, Initiator: ipStranger, Responder: netip.MustParseAddr("10.1.1.1"), Port: 53, Proto: flow.ProtoUDP},
			want: flow.Key{SrcKind: flow.KindUnknown, DstKind: flow.KindUnknown, DstPort: 53, Proto: flow.ProtoUDP},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := New(resolver, Config{Labels: tt.labels})
			k := flow.Key{SrcPod: "stale"} // Attribute overwrites every field
			if !a.Attribute(&tt.f, &k) {
				t.Fatal("not reported")
			}
			if k != tt.want {
				t.Fatalf("key =\n %+v\nwant\n %+v", k, tt.want)
			}
		})
	}
}

func TestMissesBySide(t *testing.T) {
	a := New(resolver, Config{})
	var k flow.Key
	a.Attribute(&flow.Flow{Packets: 1, Initiator: ipStranger, Responder: ipCartA}, &k)
	a.Attribute(&flow.Flow{Packets: 1, Initiator: ipStranger, Responder: ipStranger}, &k)
	a.Attribute(&flow.Flow{Packets: 1, Initiator: ipCartA, Responder: ipCartA}, &k)
	if st := a.Stats(); st.SourceMisses != 2 || st.DestinationMisses != 1 {
		t.Fatalf("stats = %+v, want 2 source and 1 destination misses", st)
	}
}

func TestParseLabels(t *testing.T) {
	l, err := ParseLabels([]string{"destination_service", "source_pod"})
	if err != nil || l != (Labels{SourcePod: true, DestinationService: true}) {
		t.Fatalf("ParseLabels = %+v, %v", l, err)
	}
	if got := l.Names(); len(got) != 2 || got[0] != "source_pod" || got[1] != "destination_service" {
		t.Errorf("Names = %v", got)
	}
	if _, err := ParseLabels([]string{"source_ip"}); err == nil {
		t.Error("ParseLabels accepted source_ip")
	}
}

func TestAttributeAllocatesNothing(t *testing.T) {
	a := New(resolver, Config{Node: "node-a", Labels: Labels{SourcePod: true, DestinationPod: true, DestinationService: true}})
	f := flow.Flow{Packets: 1, Initiator: ipFrontendA, Responder: ipCartA, Service: ipSvcCart, Port: 8080, Proto: flow.ProtoTCP}
	var k flow.Key
	if n := testing.AllocsPerRun(1000, func() { a.Attribute(&f, &k) }); n != 0 {
		t.Fatalf("Attribute allocates %v times per packet", n)
	}
}

func BenchmarkAttribute(b *testing.B) {
	a := New(resolver, Config{Node: "node-a"})
	f := flow.Flow{Packets: 1, Initiator: ipFrontendA, Responder: ipDBB, Port: 5432, Proto: flow.ProtoTCP}
	var k flow.Key
	b.ReportAllocs()
	for b.Loop() {
		a.Attribute(&f, &k)
	}
}

func TestLinkScopedTrafficIsNotAPair(t *testing.T) {
	tests := []struct {
		name                 string
		initiator, responder string
		linkLocal, multicast uint64
	}{
		{"IPv6 neighbour solicitation", "fe80::1", "ff02::1:ff00:20", 0, 1},
		{"IPv6 link-local unicast", "fe80::1", "fe80::2", 1, 0},
		{"pod to IPv6 link-local router", "fd00:10:244:2::20", "fe80::1", 1, 0},
		{"IPv4 multicast", "10.244.1.10", "224.0.0.251", 0, 1},
		{"IPv4 limited broadcast", "10.244.1.10", "255.255.255.255", 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := New(resolver, Config{Node: "node-a"})
			f := flow.Flow{Packets: 1, Initiator: netip.MustParseAddr(tt.initiator), Responder: netip.MustParseAddr(tt.responder), Proto: flow.ProtoICMPv6}
			var k flow.Key
			if a.Attribute(&f, &k) {
				t.Fatalf("counted as a pair: %+v", k)
			}
			s := a.Stats()
			if s.LinkLocal != tt.linkLocal || s.Multicast != tt.multicast || s.SourceMisses+s.DestinationMisses != 0 {
				t.Errorf("stats %+v, want link_local %d multicast %d and no miss", s, tt.linkLocal, tt.multicast)
			}
		})
	}
	// IPv4 link-local is counted: the cloud metadata service lives there.
	a := New(fakeResolver{netip.MustParseAddr("169.254.169.254"): {Workload: "cloud-metadata", Kind: flow.KindNetwork}, ipFrontendA: resolver[ipFrontendA]}, Config{Node: "node-a"})
	f := flow.Flow{Packets: 1, Initiator: ipFrontendA, Responder: netip.MustParseAddr("169.254.169.254"), Port: 80, Proto: flow.ProtoTCP}
	var k flow.Key
	if !a.Attribute(&f, &k) || k.DstWorkload != "cloud-metadata" {
		t.Errorf("pod to 169.254.169.254: counted %v as %+v, want counted as cloud-metadata", a.Stats(), k)
	}
}

// frontends is a resolver that also knows the Services behind addresses
// and ports dialled before DNAT.
type frontends struct {
	fakeResolver
	svc map[netip.AddrPort]string
}

func (f frontends) Service(a netip.Addr, port uint16, _ flow.Protocol) (flow.Endpoint, bool) {
	name, ok := f.svc[netip.AddrPortFrom(a, port)]
	return flow.Endpoint{Namespace: "shop", Workload: name, Kind: flow.KindService}, ok
}

// TestServiceByFrontend names destination_service by the address and
// port the client dialled (a load balancer address, a node port), and,
// for a flow to another node's node port that nothing on this side
// translated, by that node port.
func TestServiceByFrontend(t *testing.T) {
	lb := netip.MustParseAddr("198.51.100.80")
	r := frontends{resolver, map[netip.AddrPort]string{
		netip.AddrPortFrom(lb, 443):         "web-lb",
		netip.AddrPortFrom(ipNodeB, 30080):  "web-nodeport",
		netip.AddrPortFrom(ipSvcCart, 8080): "cart",
	}}
	a := New(r, Config{Labels: Labels{DestinationService: true}})
	for _, tc := range []struct {
		name string
		f    flow.Flow
		want string
	}{
		{"load balancer address", flow.Flow{Packets: 1, Initiator: ipExternal, Responder: ipCartA, Service: lb, ServicePort: 443, Port: 8443, Proto: flow.ProtoTCP, DNAT: true}, "web-lb"},
		{"ClusterIP", flow.Flow{Packets: 1, Initiator: ipFrontendA, Responder: ipCartA, Service: ipSvcCart, ServicePort: 8080, Port: 8443, Proto: flow.ProtoTCP, DNAT: true}, "cart"},
		{"another node's node port, untranslated here", flow.Flow{Packets: 1, Initiator: ipFrontendA, Responder: ipNodeB, Port: 30080, Proto: flow.ProtoTCP}, "web-nodeport"},
		{"a node's own port", flow.Flow{Packets: 1, Initiator: ipFrontendA, Responder: ipNodeB, Port: 10250, Proto: flow.ProtoTCP}, ""},
		{"no Service", flow.Flow{Packets: 1, Initiator: ipFrontendA, Responder: ipCartA, Port: 8443, Proto: flow.ProtoTCP}, ""},
	} {
		var k flow.Key
		if !a.Attribute(&tc.f, &k) || k.DstService != tc.want {
			t.Errorf("%s: destination_service %q, want %q", tc.name, k.DstService, tc.want)
		}
	}
}

// TestIgnoredCountsPackets checks that the self-metrics count a flow's
// packets, not the flow: a conntrack delta carries many, a connection's
// logged first packet in connection mode none (conntrack counts it).
func TestIgnoredCountsPackets(t *testing.T) {
	a := New(resolver, Config{Node: "node-b"})
	var k flow.Key
	for _, packets := range []uint32{5, 0, 1} {
		f := flow.Flow{Initiator: ipFrontendA, Responder: ipCartA, Port: 8080, Proto: flow.ProtoTCP, Packets: packets}
		if a.Attribute(&f, &k) {
			t.Fatal("node-b reports node-a's connection")
		}
	}
	if got := a.Stats().OtherNodeReports; got != 6 {
		t.Errorf("other_node_reports = %d, want 6 packets", got)
	}
}
