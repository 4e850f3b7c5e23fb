package kube

import (
	"net/netip"
	"slices"

	"github.com/podflow/podflow/exporter/internal/flow"
)

// The index maps each address to the endpoint it names. Event handlers
// update it in place under the write lock; Lookup reads one map entry
// under the read lock and never allocates. Rebuilding an immutable copy
// per event would cost O(cluster) on every pod start, which a busy
// cluster cannot afford; a read lock costs a few nanoseconds.
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
}

type index struct {
	// addrs points into podState, serviceInfo and nodeEPs: one endpoint
	// value per object, however many addresses it has.
	addrs map[netip.Addr]*flow.Endpoint
	// inCluster lists the pod and service CIDRs: an address inside them
	// that no object names is Unknown, not a network.
	inCluster []netip.Prefix
	// nodeCIDRs are the nodes' pod CIDRs: they tell which node an unknown
	// pod address lives on.
	nodeCIDRs []nodeCIDR

	pods      map[nsName]*podState
	podIPs    map[netip.Addr][]*podState // pods that own the address
	hostIPs   map[netip.Addr][]*podState // hostNetwork pods, named as their node
	services  map[nsName]*serviceInfo
	svcIPs    map[netip.Addr][]*serviceInfo
	nodes     map[string]*nodeInfo
	nodeIPs   map[netip.Addr][]*nodeInfo
	rsOwner   map[nsName]ownerRef // ReplicaSet → its controller
	jobOwner  map[nsName]ownerRef // Job → its controller
	dependent map[nsName]map[*podState]struct{}
	workloads map[workloadKey]int // live pods per workload
	nodeEPs   map[string]*flow.Endpoint

	givenPodCIDRs, serviceCIDRs []netip.Prefix
}

func newIndex(podCIDRs, serviceCIDRs []netip.Prefix) index {
	ix := index{
		addrs:         make(map[netip.Addr]*flow.Endpoint),
		nodeEPs:       make(map[string]*flow.Endpoint),
		pods:          make(map[nsName]*podState),
		podIPs:        make(map[netip.Addr][]*podState),
		hostIPs:       make(map[netip.Addr][]*podState),
		services:      make(map[nsName]*serviceInfo),
		svcIPs:        make(map[netip.Addr][]*serviceInfo),
		nodes:         make(map[string]*nodeInfo),
		nodeIPs:       make(map[netip.Addr][]*nodeInfo),
		rsOwner:       make(map[nsName]ownerRef),
		jobOwner:      make(map[nsName]ownerRef),
		dependent:     make(map[nsName]map[*podState]struct{}),
		workloads:     make(map[workloadKey]int),
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

// refresh recomputes which endpoint an address names: an owning pod
// (Running before Pending, then the newest), a Service, a node, a
// hostNetwork pod's node.
func (ix *index) refresh(a netip.Addr) {
	if c := ix.podIPs[a]; len(c) > 0 {
		best := c[len(c)-1]
		for i := len(c) - 1; i >= 0; i-- {
			if c[i].info.phase == phaseRunning {
				best = c[i]
				break
			}
		}
		ix.addrs[a] = &best.ep
		return
	}
	if c := ix.svcIPs[a]; len(c) > 0 {
		ix.addrs[a] = &c[len(c)-1].ep
		return
	}
	if c := ix.nodeIPs[a]; len(c) > 0 {
		ix.addrs[a] = ix.nodeEP(c[len(c)-1].name)
		return
	}
	if c := ix.hostIPs[a]; len(c) > 0 {
		ix.addrs[a] = ix.nodeEP(c[len(c)-1].info.node)
		return
	}
	delete(ix.addrs, a)
}

// nodeEP returns the shared endpoint of a node. Node names are few and
// kept for the life of the process.
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

// addTo and removeFrom keep the per-address candidate lists.
func addTo[T comparable](m map[netip.Addr][]T, a netip.Addr, v T) {
	m[a] = append(m[a], v)
}

func removeFrom[T comparable](m map[netip.Addr][]T, a netip.Addr, v T) {
	c := m[a]
	i := slices.Index(c, v)
	if i < 0 {
		return
	}
	if len(c) == 1 {
		delete(m, a)
		return
	}
	m[a] = slices.Delete(slices.Clone(c), i, i+1)
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

// setPod inserts or replaces a pod.
func (ix *index) setPod(p *podInfo) {
	k := nsName{p.namespace, p.name}
	if old := ix.pods[k]; old != nil {
		ix.unlinkPod(old)
	}
	st := &podState{info: p}
	st.ep, st.owner = ix.resolve(p)
	ix.pods[k] = st
	ix.linkPod(st)
}

// deletePod removes a pod if the cached one still has its UID; it returns
// the removed state.
func (ix *index) deletePod(k nsName, uid string) *podState {
	st := ix.pods[k]
	if st == nil || (uid != "" && string(st.info.uid) != uid) {
		return nil
	}
	ix.unlinkPod(st)
	delete(ix.pods, k)
	return st
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
	p := st.info
	switch {
	case p.ownsIPs():
		for _, a := range p.ips {
			addTo(ix.podIPs, a, st)
			ix.refresh(a)
		}
	case p.hostNetwork && p.phase != phaseFinished && p.node != "":
		for _, a := range p.ips {
			addTo(ix.hostIPs, a, st)
			ix.refresh(a)
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
		removeFrom(ix.podIPs, a, st)
		removeFrom(ix.hostIPs, a, st)
		ix.refresh(a)
	}
}

// reresolve recomputes the endpoints of the pods owned by a ReplicaSet
// or a Job after that owner changed.
func (ix *index) reresolve(owner nsName) {
	deps := ix.dependent[owner]
	if len(deps) == 0 {
		return
	}
	// Relinking edits the set being walked: walk a copy.
	pods := make([]*podState, 0, len(deps))
	for st := range deps {
		pods = append(pods, st)
	}
	for _, st := range pods {
		ep, _ := ix.resolve(st.info)
		if ep == st.ep {
			continue
		}
		ix.unlinkPod(st)
		st.ep = ep
		ix.linkPod(st)
	}
}

func (ix *index) setService(s *serviceInfo) {
	k := nsName{s.namespace, s.name}
	if old := ix.services[k]; old != nil {
		ix.unlinkService(old)
	}
	s.ep = flow.Endpoint{Namespace: s.namespace, Workload: s.name, Kind: flow.KindService}
	ix.services[k] = s
	for _, a := range s.ips {
		addTo(ix.svcIPs, a, s)
		ix.refresh(a)
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
		removeFrom(ix.svcIPs, a, s)
		ix.refresh(a)
	}
}

func (ix *index) setNode(n *nodeInfo) {
	old := ix.nodes[n.name]
	if old != nil {
		ix.unlinkNode(old)
	}
	ix.nodes[n.name] = n
	for _, a := range n.ips {
		addTo(ix.nodeIPs, a, n)
		ix.refresh(a)
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
		removeFrom(ix.nodeIPs, a, n)
		ix.refresh(a)
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
