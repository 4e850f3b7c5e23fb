package kube

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/podflow/podflow/exporter/internal/flow"
)

// TestIndexMatchesRebuild applies random pod, Service, node and owner
// events and the passing of time, in any order, to one index, and after
// each compares it with an index rebuilt from scratch from the objects and
// the tombstones of deleted pods that remain, set or made in the order
// they were last set or made (the invariants at the top of index.go). A
// small pool of addresses makes every kind of collision common.
func TestIndexMatchesRebuild(t *testing.T) {
	pool := []netip.Addr{
		netip.MustParseAddr("10.244.1.0"), netip.MustParseAddr("10.244.1.1"), netip.MustParseAddr("10.244.1.2"), netip.MustParseAddr("10.244.2.1"),
		netip.MustParseAddr("192.168.0.1"), netip.MustParseAddr("192.168.0.2"), netip.MustParseAddr("10.96.0.1"),
	}
	cidrs := []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("10.244.2.0/24")}
	svcCIDRs := []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")}
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 1))
		m := newIndexModel()
		ix := newIndex(nil, svcCIDRs)
		for step := range 400 {
			ev := m.randomEvent(r, pool, cidrs)
			ev(&ix)
			want := m.rebuild(svcCIDRs)
			if got, exp := viewOf(&ix), viewOf(&want); !reflect.DeepEqual(got, exp) {
				t.Fatalf("seed %d, step %d (%s): the index differs from a rebuild\n got  %+v\n want %+v", seed, step, m.last, got, exp)
			}
		}
	}
}

// indexModel is the set of objects an index should hold, each with the
// step it was last set at, and the tombstones of deleted pods, each with
// the step it was made at. Each step is a second of the model's clock.
type indexModel struct {
	objs map[string]modelObj // by kind/namespace/name, or tomb/step
	step int
	last string
}

// modelGrace is how long a tombstone lasts in the model, in steps.
const modelGrace = 8

type modelObj struct {
	set   func(*index)
	step  int
	uid   string   // a pod's
	pod   *podInfo // a pod's
	until int      // a tombstone's
}

func modelTime(step int) time.Time { return time.Unix(int64(step), 0) }

// claimsAsPod reports whether a pod claims its addresses as a pod, and
// so leaves a tombstone when deleted.
func claimsAsPod(p *podInfo) bool {
	return !p.hostNetwork && (p.deleting || p.phase == phasePending || p.phase == phaseRunning)
}

func newIndexModel() *indexModel { return &indexModel{objs: map[string]modelObj{}} }

// rebuild sets every remaining object into a new index, in the order
// they were last set.
func (m *indexModel) rebuild(svcCIDRs []netip.Prefix) index {
	ix := newIndex(nil, svcCIDRs)
	objs := make([]modelObj, 0, len(m.objs))
	for _, o := range m.objs {
		objs = append(objs, o)
	}
	slices.SortFunc(objs, func(a, b modelObj) int { return a.step - b.step })
	for _, o := range objs {
		o.set(&ix)
	}
	return ix
}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

func somePrefixes(r *rand.Rand, pool []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range pool {
		if r.IntN(3) == 0 {
			out = append(out, p)
		}
	}
	return out
}

func someAddrs(r *rand.Rand, pool []netip.Addr, most int) []netip.Addr {
	var out []netip.Addr
	for range r.IntN(most + 1) {
		out = parseAddrs(out, pick(r, pool).String())
	}
	return out
}

// randomEvent changes the model and returns the same change as an index
// event.
func (m *indexModel) randomEvent(r *rand.Rand, pool []netip.Addr, cidrs []netip.Prefix) func(*index) {
	m.step++
	del := r.IntN(3) == 0
	if r.IntN(8) == 0 {
		// Time passes: the tombstones whose time is up end.
		now := m.step
		m.last = fmt.Sprintf("expire tombstones at %d", now)
		for k, o := range m.objs {
			if o.until != 0 && o.until <= now {
				delete(m.objs, k)
			}
		}
		return func(ix *index) { ix.expireTombstones(modelTime(now)) }
	}
	switch r.IntN(5) {
	case 0, 1: // pods
		ns, name := pick(r, []string{"a", "b"}), pick(r, []string{"p0", "p1", "p2", "p3"})
		key := "pod/" + ns + "/" + name
		if del {
			// A deletion names the UID it deletes: sometimes a stale one,
			// which must change nothing.
			uid := pick(r, []string{"u0", "u1", ""})
			m.last = fmt.Sprintf("delete %s uid %q", key, uid)
			until := m.step + modelGrace
			o, ok := m.objs[key]
			if !ok || (uid != "" && o.uid != uid) {
				return func(ix *index) { ix.deletePod(nsName{ns, name}, uid, modelTime(until)) }
			}
			delete(m.objs, key)
			if !claimsAsPod(o.pod) || len(o.pod.ips) == 0 {
				return func(ix *index) { ix.deletePod(nsName{ns, name}, uid, modelTime(until)) }
			}
			// The tombstone names the pod as it was named when deleted,
			// whatever its owners do later.
			var ep flow.Endpoint
			ips := o.pod.ips
			m.objs[fmt.Sprintf("tomb/%d", m.step)] = modelObj{step: m.step, until: until,
				set: func(ix *index) { ix.bury(ep, ips, modelTime(until)) }}
			return func(ix *index) {
				ep = ix.pods[nsName{ns, name}].ep
				ix.deletePod(nsName{ns, name}, uid, modelTime(until))
			}
		}
		p := &podInfo{
			objMeta:     objMeta{name: name, namespace: ns, uid: types.UID(pick(r, []string{"u0", "u1"}))},
			phase:       pick(r, []podPhase{phaseOther, phasePending, phaseRunning, phaseRunning, phaseFinished}),
			deleting:    r.IntN(4) == 0,
			hostNetwork: r.IntN(5) == 0,
			node:        pick(r, []string{"", "n0", "n1"}),
			ips:         someAddrs(r, pool, 2),
			owner: pick(r, []ownerRef{{}, {"ReplicaSet", "r0"}, {"ReplicaSet", "r1"}, {"Job", "j0"},
				{"StatefulSet", "s0"}, {"DaemonSet", "d0"}, {"Node", "n0"}, {"Widget", "w0"}}),
		}
		m.last = fmt.Sprintf("set %s %+v", key, *p)
		m.objs[key] = modelObj{step: m.step, set: podSetter(p), uid: string(p.uid), pod: p}
		return podSetter(p)
	case 2: // Services
		name := pick(r, []string{"s0", "s1", "s2"})
		key := "svc/a/" + name
		if del {
			m.last = "delete " + key
			delete(m.objs, key)
			return func(ix *index) { ix.deleteService(nsName{"a", name}) }
		}
		s := &serviceInfo{objMeta: objMeta{name: name, namespace: "a"}, ips: someAddrs(r, pool, 2), lbIPs: someAddrs(r, pool, 1)}
		for range r.IntN(3) {
			s.ports = append(s.ports, servicePort{proto: pick(r, []flow.Protocol{flow.ProtoTCP, flow.ProtoUDP}),
				port: pick(r, []uint16{80, 443}), nodePort: pick(r, []uint16{0, 30000, 30001})})
		}
		m.last = fmt.Sprintf("set %s %+v", key, *s)
		set := func(ix *index) { c := *s; ix.setService(&c) }
		m.objs[key] = modelObj{step: m.step, set: set}
		return set
	case 3: // nodes
		name := pick(r, []string{"n0", "n1", "n2"})
		key := "node/" + name
		if del {
			m.last = "delete " + key
			delete(m.objs, key)
			return func(ix *index) { ix.deleteNode(name) }
		}
		n := &nodeInfo{objMeta: objMeta{name: name}, ips: someAddrs(r, pool, 2), podCIDRs: somePrefixes(r, cidrs)}
		// As transformNode derives them: from random annotations and the
		// pod CIDRs, the node's own addresses left out.
		ann := map[string]string{}
		for _, a := range someAddrs(r, pool, 1) {
			ann[pick(r, routerAnnotations)] = a.String()
		}
		n.routerIPs = routerAddrs(ann, n.podCIDRs, n.ips)
		m.last = fmt.Sprintf("set %s %+v", key, *n)
		set := func(ix *index) { c := *n; ix.setNode(&c) }
		m.objs[key] = modelObj{step: m.step, set: set}
		return set
	default: // ReplicaSets and Jobs
		isJob := r.IntN(3) == 0
		ns := pick(r, []string{"a", "b"})
		name, owners, table := pick(r, []string{"r0", "r1"}), []ownerRef{{}, {"Deployment", "d0"}, {"Deployment", "d1"}, {"Other", "x"}}, func(ix *index) map[nsName]ownerRef { return ix.rsOwner }
		if isJob {
			name, owners, table = "j0", []ownerRef{{}, {"CronJob", "c0"}}, func(ix *index) map[nsName]ownerRef { return ix.jobOwner }
		}
		key := fmt.Sprintf("owner/%v/%s/%s", isJob, ns, name)
		if del {
			m.last = "delete " + key
			delete(m.objs, key)
			return func(ix *index) { ix.deleteOwner(table(ix), nsName{ns, name}) }
		}
		o := &ownerInfo{objMeta: objMeta{name: name, namespace: ns}, owner: pick(r, owners)}
		m.last = fmt.Sprintf("set %s %+v", key, *o)
		set := func(ix *index) { ix.setOwner(table(ix), o) }
		m.objs[key] = modelObj{step: m.step, set: set}
		return set
	}
}

// podSetter sets a copy of p, as the informer hands each event a new
// object.
func podSetter(p *podInfo) func(*index) {
	return func(ix *index) { c := *p; ix.setPod(&c) }
}

// indexView is an index without pointers and sequence numbers: two
// indexes that name every address, workload and frontend alike are equal.
type indexView struct {
	Addrs     map[netip.Addr]flow.Endpoint
	Claims    map[netip.Addr][]string
	Pods      map[nsName]flow.Endpoint
	Workloads map[workloadKey]int
	Dependent map[nsName][]string
	LBIPs     map[netip.Addr][]string
	NodePorts map[frontend][]string
	InCluster []netip.Prefix
	NodeCIDRs []nodeCIDR
}

func viewOf(ix *index) indexView {
	v := indexView{
		Addrs: map[netip.Addr]flow.Endpoint{}, Claims: map[netip.Addr][]string{}, Pods: map[nsName]flow.Endpoint{},
		Workloads: ix.workloads, Dependent: map[nsName][]string{}, LBIPs: map[netip.Addr][]string{},
		NodePorts: map[frontend][]string{}, InCluster: ix.inCluster, NodeCIDRs: ix.nodeCIDRs,
	}
	for a, ep := range ix.addrs {
		v.Addrs[a] = *ep
	}
	for a, cs := range ix.claims {
		for _, c := range cs {
			v.Claims[a] = append(v.Claims[a], fmt.Sprintf("%d/%v/%+v", c.rank, c.running, *c.ep))
		}
	}
	for k, st := range ix.pods {
		v.Pods[k] = st.ep
	}
	for o, d := range ix.dependent {
		for st := range d {
			v.Dependent[o] = append(v.Dependent[o], st.info.namespace+"/"+st.info.name)
		}
		slices.Sort(v.Dependent[o])
	}
	for a, ss := range ix.lbIPs {
		for _, s := range ss {
			v.LBIPs[a] = append(v.LBIPs[a], s.name)
		}
	}
	for f, ss := range ix.nodePorts {
		for _, s := range ss {
			v.NodePorts[f] = append(v.NodePorts[f], s.name)
		}
	}
	if len(v.Workloads) == 0 {
		v.Workloads = nil
	}
	return v
}
