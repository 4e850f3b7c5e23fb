package kube

import (
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/podflow/podflow/exporter/internal/flow"
)

// The index maps each address to the endpoint it names. Event handlers
// update it in place under the write lock; Lookup reads one map entry
// under the read lock and never allocates. Rebuilding an immutable copy
// per event would cost O(cluster) on every pod start, which a busy
// cluster cannot afford; a read lock costs a few nanoseconds.
//
// The objects (pods, services, nodes, rsOwner, jobOwner) are the truth:
// the informers' last word on each; so are the tombstones of deleted pods,
// which the clock ends. Everything else is derived from them, and the
// derived state is always what rebuilding the index from scratch would
// give, setting the same objects and making the same tombstones in the
// order they were last set or made (index_test.go checks it against
// random event sequences):
//
//  1. podState.ep is resolve(pod) under the current owners;
//     workloads[k] counts the pods whose endpoint is workload k, and
//     dependent[o] holds the pods whose endpoint depends on owner o.
//  2. claims[a] holds one claim per object that claims address a (see
//     podClaim, setService and setNode: a node claims its addresses and
//     its router addresses), and one per tombstone on a, in the order the
//     objects were last set and the tombstones made.
//  3. addrs[a] is the endpoint of the claim of a that wins (see
//     claim.beats), and absent when nothing claims a.
//  4. nodeCIDRs and inCluster follow the nodes' pod CIDRs and the given
//     CIDRs; lbIPs and nodePorts list the Services of each frontend, in
//     the order they were last set.
//  5. tombstones hold, in the order they were made, the deleted pods
//     that claimed addresses when deleted, until their time is up
//     (expireTombstones): the tombstones are state, like the objects.
//
// Only link and unlink (one pair per kind of object), bury and
// expireTombstones change claims and frontends, and they always do it for
// every address of the object or tombstone.
//
// All fields below are guarded by Source.mu.

type nsName struct{ namespace, name string }

type nodeCIDR struct {
	prefix netip.Prefix
	node   string
}

// workloadKey names a workload: the series that Forget removes at
// workload granularity.
type workloadKey struct {
	namespace, workload string
	kind                flow.Kind
}

// podState is a cached pod with its resolved endpoint.
type podState struct {
	info  *podInfo
	ep    flow.Endpoint
	owner nsName // the ReplicaSet or Job its endpoint depends on, if any
	seq   uint64 // when the pod was last set
}

// rank orders the kinds of claims on one address: the higher wins.
type rank uint8

const (
	rankNone rank = iota
	// A node's router addresses (nodeInfo.routerIPs) are in part
	// guessed from its pod CIDRs: everything else beats them.
	rankNodeRouter
	// A deleted pod's addresses keep naming it for a while (a
	// tombstone), so that what is counted late (a connection's last
	// conntrack delta, read at its end or at the next dump; a packet
	// still queued) keeps its workload, unless anything else claims them
	// (a router address only guessed excepted: the pod held it).
	rankDeletedPod
	// A hostNetwork pod names its node, even when the node object lists
	// no such address.
	rankHostNetwork
	rankNode
	rankService
	// A terminating pod keeps its addresses, so that traffic still in
	// flight to it during a rollout keeps its name, until it is deleted
	// or another pod claims them.
	rankTerminatingPod
	// A Pending or Running pod, not terminating, owns its addresses.
	rankPod
)

// claim is one object's claim on an address.
type claim struct {
	rank    rank
	running bool   // a Running pod beats a Pending one of the same rank
	seq     uint64 // then the object set last wins
	ep      *flow.Endpoint
	by      any // the claiming *podState, *serviceInfo, *nodeInfo or *tombstone
}

// tombstone is a deleted pod's claim on its addresses, until a time.
type tombstone struct {
	ep    flow.Endpoint // the pod's endpoint when it was deleted
	ips   []netip.Addr
	until time.Time
	seq   uint64
}

// beats reports whether c wins over o.
func (c *claim) beats(o *claim) bool {
	if c.rank != o.rank {
		return c.rank > o.rank
	}
	if c.running != o.running {
		return c.running
	}
	return c.seq > o.seq
}

// frontend is a Service's node port.
type frontend struct {
	port  uint16
	proto flow.Protocol
}

type index struct {
	// The objects.
	pods     map[nsName]*podState
	services map[nsName]*serviceInfo
	nodes    map[string]*nodeInfo
	rsOwner  map[nsName]ownerRef // ReplicaSet → its controller
	jobOwner map[nsName]ownerRef // Job → its controller

	// Derived (invariants 1 to 4).
	addrs     map[netip.Addr]*flow.Endpoint
	claims    map[netip.Addr][]claim
	workloads map[workloadKey]int
	dependent map[nsName]map[*podState]struct{}
	lbIPs     map[netip.Addr][]*serviceInfo
	nodePorts map[frontend][]*serviceInfo
	// inCluster lists the pod and service CIDRs: an address inside them
	// that no object names is Unknown, not a network.
	inCluster []netip.Prefix
	// nodeCIDRs are the nodes' pod CIDRs: they tell which node an unknown
	// pod address lives on.
	nodeCIDRs []nodeCIDR
	// tombstones, oldest first (invariant 5).
	tombstones []*tombstone

	// nodeEPs shares one endpoint per node name for the life of the
	// process; seq numbers the sets.
	nodeEPs map[string]*flow.Endpoint
	seq     uint64

	givenPodCIDRs, serviceCIDRs []netip.Prefix
}

func newIndex(podCIDRs, serviceCIDRs []netip.Prefix) index {
	ix := index{
		pods:          make(map[nsName]*podState),
		services:      make(map[nsName]*serviceInfo),
		nodes:         make(map[string]*nodeInfo),
		rsOwner:       make(map[nsName]ownerRef),
		jobOwner:      make(map[nsName]ownerRef),
		addrs:         make(map[netip.Addr]*flow.Endpoint),
		claims:        make(map[netip.Addr][]claim),
		workloads:     make(map[workloadKey]int),
		dependent:     make(map[nsName]map[*podState]struct{}),
		lbIPs:         make(map[netip.Addr][]*serviceInfo),
		nodePorts:     make(map[frontend][]*serviceInfo),
		nodeEPs:       make(map[string]*flow.Endpoint),
		givenPodCIDRs: masked(podCIDRs),
		serviceCIDRs:  masked(serviceCIDRs),
	}
	ix.rebuildCIDRs()
	return ix
}

func masked(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.Masked())
	}
	return out
}

// rebuildCIDRs recomputes the in-cluster prefixes: the given pod CIDRs,
// or else every node's spec.podCIDRs, plus the service CIDRs. The slice is
// replaced, never modified, so a reader holding the old one stays valid.
func (ix *index) rebuildCIDRs() {
	var nodeCIDRs []nodeCIDR
	for _, n := range ix.nodes {
		for _, p := range n.podCIDRs {
			nodeCIDRs = append(nodeCIDRs, nodeCIDR{p, n.name})
		}
	}
	slices.SortFunc(nodeCIDRs, func(a, b nodeCIDR) int {
		if c := a.prefix.Addr().Compare(b.prefix.Addr()); c != 0 {
			return c
		}
		return strings.Compare(a.node, b.node)
	})
	ix.nodeCIDRs = nodeCIDRs
	cidrs := slices.Clone(ix.givenPodCIDRs)
	if len(cidrs) == 0 {
		for _, nc := range nodeCIDRs {
			if !slices.Contains(cidrs, nc.prefix) {
				cidrs = append(cidrs, nc.prefix)
			}
		}
	}
	cidrs = append(cidrs, ix.serviceCIDRs...)
	slices.SortFunc(cidrs, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	ix.inCluster = cidrs
}

// addClaim and removeClaim keep claims[a] and addrs[a] (invariants 2, 3).
func (ix *index) addClaim(a netip.Addr, c claim) {
	ix.claims[a] = append(ix.claims[a], c)
	ix.elect(a)
}

func (ix *index) removeClaim(a netip.Addr, by any) {
	cs := ix.claims[a]
	i := slices.IndexFunc(cs, func(c claim) bool { return c.by == by })
	if i < 0 {
		return
	}
	if len(cs) == 1 {
		delete(ix.claims, a)
	} else {
		ix.claims[a] = slices.Delete(cs, i, i+1)
	}
	ix.elect(a)
}

// elect points addrs[a] at the winning claim's endpoint.
func (ix *index) elect(a netip.Addr) {
	cs := ix.claims[a]
	if len(cs) == 0 {
		delete(ix.addrs, a)
		return
	}
	best := &cs[0]
	for i := 1; i < len(cs); i++ {
		if cs[i].beats(best) {
			best = &cs[i]
		}
	}
	ix.addrs[a] = best.ep
}

// nodeEP returns the shared endpoint of a node.
func (ix *index) nodeEP(node string) *flow.Endpoint {
	ep := ix.nodeEPs[node]
	if ep == nil {
		e := nodeEndpoint(node)
		ep = &e
		ix.nodeEPs[node] = ep
	}
	return ep
}

func nodeEndpoint(node string) flow.Endpoint {
	return flow.Endpoint{Workload: node, Kind: flow.KindNode, Node: node}
}

// resolve computes a pod's endpoint from its controlling owner, following
// ReplicaSet → Deployment and Job → CronJob by the owners' own
// ownerReferences.
func (ix *index) resolve(p *podInfo) (flow.Endpoint, nsName) {
	ep := flow.Endpoint{Namespace: p.namespace, Pod: p.name, Node: p.node}
	var dep nsName
	switch p.owner.kind {
	case "":
		ep.Workload, ep.Kind = p.name, flow.KindPod
	case "ReplicaSet":
		dep = nsName{p.namespace, p.owner.name}
		ep.Workload, ep.Kind = p.owner.name, flow.KindReplicaSet
		if o := ix.rsOwner[dep]; o.kind == "Deployment" {
			ep.Workload, ep.Kind = o.name, flow.KindDeployment
		}
	case "Job":
		dep = nsName{p.namespace, p.owner.name}
		ep.Workload, ep.Kind = p.owner.name, flow.KindJob
		if o := ix.jobOwner[dep]; o.kind == "CronJob" {
			ep.Workload, ep.Kind = o.name, flow.KindCronJob
		}
	case "StatefulSet":
		ep.Workload, ep.Kind = p.owner.name, flow.KindStatefulSet
	case "DaemonSet":
		ep.Workload, ep.Kind = p.owner.name, flow.KindDaemonSet
	case "Node":
		// A static pod's mirror: the kubelet owns it, it is a bare pod.
		ep.Workload, ep.Kind = p.name, flow.KindPod
	default:
		// Another controller (a custom resource): keep its name, so that
		// its pods share one workload instead of one series per pod.
		ep.Workload, ep.Kind = p.owner.name, flow.KindPod
	}
	return ep, dep
}

func keyOf(ep flow.Endpoint) workloadKey {
	return workloadKey{namespace: ep.Namespace, workload: ep.Workload, kind: ep.Kind}
}

// podClaim is the claim a pod makes on each of its addresses; rankNone
// when it makes none (a finished pod, whose address may already be
// another's, or a hostNetwork pod without a node).
func (ix *index) podClaim(st *podState) claim {
	p := st.info
	c := claim{seq: st.seq, by: st, ep: &st.ep, running: p.phase == phaseRunning}
	switch {
	case p.hostNetwork:
		if p.phase != phaseFinished && p.node != "" {
			c.rank, c.ep, c.running = rankHostNetwork, ix.nodeEP(p.node), false
		}
	case p.deleting:
		c.rank = rankTerminatingPod
	case p.phase == phasePending || p.phase == phaseRunning:
		c.rank = rankPod
	}
	return c
}

// setPod inserts or replaces a pod.
func (ix *index) setPod(p *podInfo) {
	k := nsName{p.namespace, p.name}
	if old := ix.pods[k]; old != nil {
		ix.unlinkPod(old)
	}
	ix.seq++
	st := &podState{info: p, seq: ix.seq}
	st.ep, st.owner = ix.resolve(p)
	ix.pods[k] = st
	ix.linkPod(st)
}

// deletePod removes a pod if the cached one still has its UID; it returns
// the removed state. A pod that claimed its addresses as a pod (not a
// hostNetwork one, not a finished one) leaves a tombstone on them until
// the given time; none if it is zero.
func (ix *index) deletePod(k nsName, uid string, until time.Time) *podState {
	st := ix.pods[k]
	if st == nil || (uid != "" && string(st.info.uid) != uid) {
		return nil
	}
	ix.unlinkPod(st)
	delete(ix.pods, k)
	if r := ix.podClaim(st).rank; !until.IsZero() && (r == rankPod || r == rankTerminatingPod) {
		ix.bury(st.ep, st.info.ips, until)
	}
	return st
}

// bury makes a tombstone: ips keep naming ep, below every other claim,
// until expireTombstones passes the given time.
func (ix *index) bury(ep flow.Endpoint, ips []netip.Addr, until time.Time) {
	if len(ips) == 0 {
		return
	}
	ix.seq++
	t := &tombstone{ep: ep, ips: ips, until: until, seq: ix.seq}
	ix.tombstones = append(ix.tombstones, t)
	for _, a := range ips {
		ix.addClaim(a, claim{rank: rankDeletedPod, seq: t.seq, ep: &t.ep, by: t})
	}
}

// expireTombstones removes the tombstones whose time is up at now; it
// reports how many remain.
func (ix *index) expireTombstones(now time.Time) int {
	kept := ix.tombstones[:0]
	for _, t := range ix.tombstones {
		if t.until.After(now) {
			kept = append(kept, t)
			continue
		}
		for _, a := range t.ips {
			ix.removeClaim(a, t)
		}
	}
	clear(ix.tombstones[len(kept):])
	ix.tombstones = kept
	return len(kept)
}

func (ix *index) linkPod(st *podState) {
	ix.workloads[keyOf(st.ep)]++
	if st.owner != (nsName{}) {
		d := ix.dependent[st.owner]
		if d == nil {
			d = make(map[*podState]struct{})
			ix.dependent[st.owner] = d
		}
		d[st] = struct{}{}
	}
	if c := ix.podClaim(st); c.rank != rankNone {
		for _, a := range st.info.ips {
			ix.addClaim(a, c)
		}
	}
}

func (ix *index) unlinkPod(st *podState) {
	wk := keyOf(st.ep)
	if ix.workloads[wk]--; ix.workloads[wk] <= 0 {
		delete(ix.workloads, wk)
	}
	if d := ix.dependent[st.owner]; d != nil {
		delete(d, st)
		if len(d) == 0 {
			delete(ix.dependent, st.owner)
		}
	}
	for _, a := range st.info.ips {
		ix.removeClaim(a, st)
	}
}

// reresolve recomputes the endpoints of the pods owned by a ReplicaSet
// or a Job after that owner changed. The endpoints change in place: the
// claims point to them, and a pod's place among the claims is the time
// the pod was set, not its owner.
func (ix *index) reresolve(owner nsName) {
	for st := range ix.dependent[owner] {
		ep, _ := ix.resolve(st.info)
		if ep == st.ep {
			continue
		}
		old := keyOf(st.ep)
		if ix.workloads[old]--; ix.workloads[old] <= 0 {
			delete(ix.workloads, old)
		}
		st.ep = ep
		ix.workloads[keyOf(ep)]++
	}
}

func (ix *index) setService(s *serviceInfo) {
	k := nsName{s.namespace, s.name}
	if old := ix.services[k]; old != nil {
		ix.unlinkService(old)
	}
	ix.seq++
	s.seq = ix.seq
	s.ep = flow.Endpoint{Namespace: s.namespace, Workload: s.name, Kind: flow.KindService}
	ix.services[k] = s
	for _, a := range s.ips {
		ix.addClaim(a, claim{rank: rankService, seq: s.seq, ep: &s.ep, by: s})
	}
	for _, a := range s.lbIPs {
		ix.lbIPs[a] = append(ix.lbIPs[a], s)
	}
	for _, p := range s.ports {
		if p.nodePort != 0 {
			f := frontend{p.nodePort, p.proto}
			ix.nodePorts[f] = append(ix.nodePorts[f], s)
		}
	}
}

func (ix *index) deleteService(k nsName) *serviceInfo {
	s := ix.services[k]
	if s == nil {
		return nil
	}
	ix.unlinkService(s)
	delete(ix.services, k)
	return s
}

func (ix *index) unlinkService(s *serviceInfo) {
	for _, a := range s.ips {
		ix.removeClaim(a, s)
	}
	for _, a := range s.lbIPs {
		removeFrom(ix.lbIPs, a, s)
	}
	for _, p := range s.ports {
		if p.nodePort != 0 {
			removeFrom(ix.nodePorts, frontend{p.nodePort, p.proto}, s)
		}
	}
}

// removeFrom removes v from the list m[k]; the list is copied, never
// edited, since a frontend lookup may hold it.
func removeFrom[K comparable, V comparable](m map[K][]V, k K, v V) {
	c := m[k]
	i := slices.Index(c, v)
	switch {
	case i < 0:
	case len(c) == 1:
		delete(m, k)
	default:
		m[k] = slices.Delete(slices.Clone(c), i, i+1)
	}
}

// service returns the Service a connection addressed at addr and port
// (before DNAT): the Service of a ClusterIP, of a load balancer ingress
// address (the one with that port when several share it), or of a node
// port on a node's address.
func (ix *index) service(addr netip.Addr, port uint16, proto flow.Protocol) (*serviceInfo, bool) {
	if c := ix.addrs[addr]; c != nil {
		switch c.Kind {
		case flow.KindService:
			s := ix.services[nsName{c.Namespace, c.Workload}]
			return s, s != nil
		case flow.KindNode:
			if ss := ix.nodePorts[frontend{port, proto}]; len(ss) > 0 {
				return ss[len(ss)-1], true
			}
			return nil, false
		}
	}
	ss := ix.lbIPs[addr]
	for i := len(ss) - 1; i >= 0; i-- {
		if ss[i].hasPort(port, proto) {
			return ss[i], true
		}
	}
	if len(ss) > 0 {
		return ss[len(ss)-1], true
	}
	return nil, false
}

func (ix *index) setNode(n *nodeInfo) {
	old := ix.nodes[n.name]
	if old != nil {
		ix.unlinkNode(old)
	}
	ix.seq++
	n.seq = ix.seq
	ix.nodes[n.name] = n
	for _, a := range n.ips {
		ix.addClaim(a, claim{rank: rankNode, seq: n.seq, ep: ix.nodeEP(n.name), by: n})
	}
	for _, a := range n.routerIPs {
		ix.addClaim(a, claim{rank: rankNodeRouter, seq: n.seq, ep: ix.nodeEP(n.name), by: n})
	}
	if old == nil || !slices.Equal(old.podCIDRs, n.podCIDRs) {
		ix.rebuildCIDRs()
	}
}

func (ix *index) deleteNode(name string) *nodeInfo {
	n := ix.nodes[name]
	if n == nil {
		return nil
	}
	ix.unlinkNode(n)
	delete(ix.nodes, name)
	if len(n.podCIDRs) > 0 {
		ix.rebuildCIDRs()
	}
	return n
}

func (ix *index) unlinkNode(n *nodeInfo) {
	for _, a := range n.ips {
		ix.removeClaim(a, n)
	}
	for _, a := range n.routerIPs {
		ix.removeClaim(a, n)
	}
}

func (ix *index) setOwner(m map[nsName]ownerRef, o *ownerInfo) {
	k := nsName{o.namespace, o.name}
	if prev, ok := m[k]; ok && prev == o.owner {
		return
	}
	m[k] = o.owner
	ix.reresolve(k)
}

func (ix *index) deleteOwner(m map[nsName]ownerRef, k nsName) {
	if _, ok := m[k]; !ok {
		return
	}
	delete(m, k)
	ix.reresolve(k)
}
