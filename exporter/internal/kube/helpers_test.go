package kube

import (
	"context"
	"net/netip"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	metafake "k8s.io/client-go/metadata/fake"

	"github.com/podflow/podflow/exporter/internal/flow"
)

// cluster is a fake API server with a running Source over it.
type cluster struct {
	t    *testing.T
	core *fake.Clientset
	meta *metafake.FakeMetadataClient
	src  *Source
}

func newCluster(t *testing.T, cfg Config, objs ...runtime.Object) *cluster {
	t.Helper()
	c := &cluster{t: t}
	c.core, c.meta = newFakeClients(objs...)
	return c.start(cfg)
}

func newFakeClients(objs ...runtime.Object) (*fake.Clientset, *metafake.FakeMetadataClient) {
	var coreObjs, metaObjs []runtime.Object
	for _, o := range objs {
		if _, ok := o.(*metav1.PartialObjectMetadata); ok {
			metaObjs = append(metaObjs, o)
		} else {
			coreObjs = append(coreObjs, o)
		}
	}
	return fake.NewClientset(coreObjs...), metafake.NewSimpleMetadataClient(metaScheme(), metaObjs...)
}

func (c *cluster) start(cfg Config) *cluster {
	t := c.t
	t.Helper()
	src, err := NewWithClients(&cfg, c.core, c.meta)
	if err != nil {
		t.Fatal(err)
	}
	c.src = src
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	eventually(t, "caches synced", src.Synced)
	return c
}

// eventually polls cond until it holds or a deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// expect waits until addr resolves to want.
func (c *cluster) expect(addr string, want flow.Endpoint, wantOK bool) {
	c.t.Helper()
	a := netip.MustParseAddr(addr)
	var got flow.Endpoint
	var ok bool
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, ok = c.src.Lookup(a)
		if got == want && ok == wantOK {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("Lookup(%s) = %+v, %v; want %+v, %v", addr, got, ok, want, wantOK)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// deleted waits until the Source has seen the deletion of a pod.
func (c *cluster) deleted(ns, name string) {
	c.t.Helper()
	eventually(c.t, "the deletion of pod "+ns+"/"+name, func() bool {
		c.src.mu.RLock()
		defer c.src.mu.RUnlock()
		_, ok := c.src.ix.pods[nsName{ns, name}]
		return !ok
	})
}

var ctx = context.Background()

func metaScheme() *runtime.Scheme {
	s := metafake.NewTestScheme()
	if err := metav1.AddMetaToScheme(s); err != nil {
		panic(err)
	}
	return s
}

func ref(kind, name string) metav1.OwnerReference {
	yes := true
	return metav1.OwnerReference{Kind: kind, Name: name, Controller: &yes, UID: types.UID(kind + "-" + name)}
}

type podOpt func(*corev1.Pod)

func owned(kind, name string) podOpt {
	return func(p *corev1.Pod) { p.OwnerReferences = []metav1.OwnerReference{ref(kind, name)} }
}

func phase(ph corev1.PodPhase) podOpt { return func(p *corev1.Pod) { p.Status.Phase = ph } }

func uid(u string) podOpt { return func(p *corev1.Pod) { p.UID = types.UID(u) } }

func hostNet() podOpt { return func(p *corev1.Pod) { p.Spec.HostNetwork = true } }

func terminating() podOpt {
	return func(p *corev1.Pod) { now := metav1.Now(); p.DeletionTimestamp = &now }
}

func pod(ns, name, node string, ips []string, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(ns + "/" + name)},
		Spec:       corev1.PodSpec{NodeName: node},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for _, ip := range ips {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	if len(ips) > 0 {
		p.Status.PodIP = ips[0]
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func service(ns, name string, ips ...string) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	s.Spec.ClusterIPs = ips
	if len(ips) > 0 {
		s.Spec.ClusterIP = ips[0]
	}
	return s
}

func node(name string, podCIDRs []string, internal ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	n.Spec.PodCIDRs = podCIDRs
	for _, a := range internal {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a})
	}
	n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: name})
	return n
}

func replicaSet(ns, name string, owners ...metav1.OwnerReference) *metav1.PartialObjectMetadata {
	return partial(appsv1.SchemeGroupVersion.WithKind("ReplicaSet"), ns, name, owners)
}

func job(ns, name string, owners ...metav1.OwnerReference) *metav1.PartialObjectMetadata {
	return partial(batchv1.SchemeGroupVersion.WithKind("Job"), ns, name, owners)
}

func partial(gvk interface {
	ToAPIVersionAndKind() (string, string)
}, ns, name string, owners []metav1.OwnerReference) *metav1.PartialObjectMetadata {
	av, k := gvk.ToAPIVersionAndKind()
	return &metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{APIVersion: av, Kind: k},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(k + "-" + name), OwnerReferences: owners},
	}
}
