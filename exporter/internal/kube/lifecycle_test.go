package kube

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	metafake "k8s.io/client-go/metadata/fake"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/podflow/podflow/exporter/internal/flow"
)

type forgetLog struct {
	mu  sync.Mutex
	eps []flow.Endpoint
}

func (f *forgetLog) forget(ep flow.Endpoint) {
	f.mu.Lock()
	f.eps = append(f.eps, ep)
	f.mu.Unlock()
}

func (f *forgetLog) take() []flow.Endpoint {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.eps
	f.eps = nil
	return out
}

// step advances the clock and waits until exactly want was forgotten.
func (f *forgetLog) expectAfter(t *testing.T, clk *testingclock.FakeClock, d time.Duration, want ...flow.Endpoint) {
	t.Helper()
	clk.Step(d)
	var got []flow.Endpoint
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < len(want) && time.Now().Before(deadline) {
		got = append(got, f.take()...)
		time.Sleep(2 * time.Millisecond)
	}
	// Timers fire on their own goroutines; give a stray one a moment.
	time.Sleep(20 * time.Millisecond)
	got = append(got, f.take()...)
	sortEPs(got)
	sortEPs(want)
	if !slices.Equal(got, want) {
		t.Fatalf("after %v forgotten %+v, want %+v", d, got, want)
	}
}

func sortEPs(eps []flow.Endpoint) {
	slices.SortFunc(eps, func(a, b flow.Endpoint) int {
		if a.Workload+a.Pod < b.Workload+b.Pod {
			return -1
		}
		if a.Workload+a.Pod > b.Workload+b.Pod {
			return 1
		}
		return 0
	})
}

func TestDeletionGrace(t *testing.T) {
	for _, podLabels := range []bool{false, true} {
		name := "workload granularity"
		if podLabels {
			name = "pod labels"
		}
		t.Run(name, func(t *testing.T) {
			clk := testingclock.NewFakeClock(time.Now())
			var log forgetLog
			c := newCluster(t, Config{Forget: log.forget, DeletionGrace: time.Minute, PodLabels: podLabels, Clock: clk, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}},
				replicaSet("shop", "web-5f7", ref("Deployment", "web")),
				pod("shop", "web-5f7-a", "n1", []string{"10.244.1.10"}, owned("ReplicaSet", "web-5f7")),
				pod("shop", "web-5f7-b", "n2", []string{"10.244.2.10"}, owned("ReplicaSet", "web-5f7")),
				pod("data", "db-0", "n2", []string{"10.244.2.20"}, owned("StatefulSet", "db")),
				service("shop", "web", "10.96.0.10"),
			)
			pods := c.core.CoreV1().Pods("shop")
			web := flow.Endpoint{Namespace: "shop", Workload: "web", Kind: flow.KindDeployment}
			webA, webB := web, web
			webA.Pod, webB.Pod = "web-5f7-a", "web-5f7-b"

			// One of two pods goes: its workload lives on.
			if err := pods.Delete(ctx, "web-5f7-a", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			c.deleted("shop", "web-5f7-a")
			log.expectAfter(t, clk, 59*time.Second)
			if podLabels {
				log.expectAfter(t, clk, time.Second, webA)
			} else {
				log.expectAfter(t, clk, time.Second)
			}

			// The last pod goes; a new one starts within the grace period:
			// the workload stays.
			if err := pods.Delete(ctx, "web-5f7-b", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			c.deleted("shop", "web-5f7-b")
			if _, err := pods.Create(ctx, pod("shop", "web-5f7-c", "n1", []string{"10.244.1.11"}, owned("ReplicaSet", "web-5f7")), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			c.expect("10.244.1.11", flow.Endpoint{Namespace: "shop", Workload: "web", Kind: flow.KindDeployment, Pod: "web-5f7-c", Node: "n1"}, true)
			if podLabels {
				log.expectAfter(t, clk, time.Minute, webB)
			} else {
				log.expectAfter(t, clk, time.Minute)
			}

			// The last pod goes for good: the workload goes after the grace.
			if err := pods.Delete(ctx, "web-5f7-c", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			c.deleted("shop", "web-5f7-c")
			webC := web
			webC.Pod = "web-5f7-c"
			if podLabels {
				log.expectAfter(t, clk, time.Minute, web, webC)
			} else {
				log.expectAfter(t, clk, time.Minute, web)
			}

			// A StatefulSet pod re-created under its name keeps its series.
			dbPods := c.core.CoreV1().Pods("data")
			if err := dbPods.Delete(ctx, "db-0", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			c.deleted("data", "db-0")
			if _, err := dbPods.Create(ctx, pod("data", "db-0", "n1", []string{"10.244.1.20"}, owned("StatefulSet", "db"), uid("db-0-new")), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			c.expect("10.244.1.20", flow.Endpoint{Namespace: "data", Workload: "db", Kind: flow.KindStatefulSet, Pod: "db-0", Node: "n1"}, true)
			log.expectAfter(t, clk, time.Minute)

			// A deleted Service is forgotten too.
			if err := c.core.CoreV1().Services("shop").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			c.expect("10.96.0.10", flow.Endpoint{Kind: flow.KindNetwork, Workload: "private"}, true)
			log.expectAfter(t, clk, time.Minute, flow.Endpoint{Namespace: "shop", Workload: "web", Kind: flow.KindService})
		})
	}
}

// TestWorkloadCountFollowsOwners renames many pods at once when their
// ReplicaSet shows up, and forgets the workload once, after its last pod.
func TestWorkloadCountFollowsOwners(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Now())
	var log forgetLog
	const n = 30
	var objs []runtime.Object
	for i := range n {
		objs = append(objs, pod("shop", fmt.Sprintf("bulk-7c-%d", i), "n1", []string{fmt.Sprintf("10.244.1.%d", 10+i)}, owned("ReplicaSet", "bulk-7c")))
	}
	c := newCluster(t, Config{Forget: log.forget, DeletionGrace: time.Minute, Clock: clk, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}}, objs...)
	c.expect("10.244.1.10", flow.Endpoint{Namespace: "shop", Workload: "bulk-7c", Kind: flow.KindReplicaSet, Pod: "bulk-7c-0", Node: "n1"}, true)
	if _, err := c.meta.Resource(gvrReplicaSets).Namespace("shop").(metafake.MetadataClient).CreateFake(replicaSet("shop", "bulk-7c", ref("Deployment", "bulk")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		c.expect(fmt.Sprintf("10.244.1.%d", 10+i), flow.Endpoint{Namespace: "shop", Workload: "bulk", Kind: flow.KindDeployment, Pod: fmt.Sprintf("bulk-7c-%d", i), Node: "n1"}, true)
	}
	c.src.mu.RLock()
	got := c.src.ix.workloads[workloadKey{"shop", "bulk", flow.KindDeployment}]
	stale := c.src.ix.workloads[workloadKey{"shop", "bulk-7c", flow.KindReplicaSet}]
	c.src.mu.RUnlock()
	if got != n || stale != 0 {
		t.Fatalf("pods counted per workload: Deployment %d, ReplicaSet %d; want %d and 0", got, stale, n)
	}
	for i := range n {
		if err := c.core.CoreV1().Pods("shop").Delete(ctx, fmt.Sprintf("bulk-7c-%d", i), metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	c.deleted("shop", fmt.Sprintf("bulk-7c-%d", n-1))
	log.expectAfter(t, clk, time.Minute, flow.Endpoint{Namespace: "shop", Workload: "bulk", Kind: flow.KindDeployment})
}

// TestGraceFromLastDeletion: the workload's series stay for the grace
// period after its last pod went, not its first.
func TestGraceFromLastDeletion(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Now())
	var log forgetLog
	c := newCluster(t, Config{Forget: log.forget, DeletionGrace: time.Minute, Clock: clk, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}},
		pod("shop", "api-0", "n1", []string{"10.244.1.10"}, owned("StatefulSet", "api")),
		pod("shop", "api-1", "n1", []string{"10.244.1.11"}, owned("StatefulSet", "api")),
	)
	pods := c.core.CoreV1().Pods("shop")
	if err := pods.Delete(ctx, "api-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	c.deleted("shop", "api-0")
	log.expectAfter(t, clk, 30*time.Second)
	if err := pods.Delete(ctx, "api-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	c.deleted("shop", "api-1")
	log.expectAfter(t, clk, 30*time.Second) // a minute after the first deletion
	log.expectAfter(t, clk, 29*time.Second)
	log.expectAfter(t, clk, time.Second, flow.Endpoint{Namespace: "shop", Workload: "api", Kind: flow.KindStatefulSet})
}

// TestDeletedPodKeepsItsAddresses: a deleted pod's addresses keep naming
// it for the deletion grace, so that what is counted after its deletion
// (a connection's last conntrack delta, a late packet) keeps its name; a
// pod that claims the address wins at once; the address is Unknown once
// the grace is over, before the pod's series are forgotten.
func TestDeletedPodKeepsItsAddresses(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Now())
	var (
		c    *cluster
		mu   sync.Mutex
		seen []flow.Endpoint // what 10.244.1.12 named when each Forget came
	)
	forget := func(flow.Endpoint) {
		ep, _ := c.src.Lookup(netip.MustParseAddr("10.244.1.12"))
		mu.Lock()
		seen = append(seen, ep)
		mu.Unlock()
	}
	c = newCluster(t, Config{Forget: forget, DeletionGrace: time.Minute, Clock: clk, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}},
		node("n1", []string{"10.244.1.0/24"}, "192.168.0.1"),
		replicaSet("shop", "web-old", ref("Deployment", "web")),
		replicaSet("shop", "web-new", ref("Deployment", "web")),
		pod("shop", "web-old-a", "n1", []string{"10.244.1.10"}, owned("ReplicaSet", "web-old"), terminating()),
		pod("shop", "web-old-b", "n1", []string{"10.244.1.11"}, owned("ReplicaSet", "web-old")),
		pod("shop", "web-new-a", "n1", []string{"10.244.1.12"}, owned("ReplicaSet", "web-new")),
	)
	pods := c.core.CoreV1().Pods("shop")
	old := func(name string) flow.Endpoint {
		return flow.Endpoint{Namespace: "shop", Workload: "web", Kind: flow.KindDeployment, Pod: name, Node: "n1"}
	}
	unknown := flow.Endpoint{Kind: flow.KindUnknown, Node: "n1"}

	// The terminating pod is deleted: its address still names it.
	if err := pods.Delete(ctx, "web-old-a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	c.deleted("shop", "web-old-a")
	c.expect("10.244.1.10", old("web-old-a"), true)

	// Another pod is deleted 30s later; a new pod takes its address at
	// once, and wins at once.
	clk.Step(30 * time.Second)
	if err := pods.Delete(ctx, "web-old-b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	c.deleted("shop", "web-old-b")
	c.expect("10.244.1.11", old("web-old-b"), true)
	if _, err := pods.Create(ctx, pod("shop", "web-new-b", "n1", []string{"10.244.1.11"}, owned("ReplicaSet", "web-new"), phase(corev1.PodPending)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.expect("10.244.1.11", old("web-new-b"), true)

	// A minute after the first deletion, its address is Unknown, and
	// already so when the series are forgotten; the second still names
	// its pod.
	clk.Step(29 * time.Second)
	c.expect("10.244.1.10", old("web-old-a"), true)
	clk.Step(time.Second)
	c.expect("10.244.1.10", unknown, false)
	c.expect("10.244.1.11", old("web-new-b"), true)

	// The new pod goes too, within the grace of the one it replaced: the
	// address names the pod deleted last, then nothing.
	if err := pods.Delete(ctx, "web-new-b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	c.deleted("shop", "web-new-b")
	c.expect("10.244.1.11", old("web-new-b"), true)
	clk.Step(30 * time.Second)
	c.expect("10.244.1.11", old("web-new-b"), true)
	clk.Step(30 * time.Second)
	c.expect("10.244.1.11", unknown, false)

	// The workload lives on in web-new-a, so its series stay. Delete
	// it: its address is Unknown by the time the series go.
	if err := pods.Delete(ctx, "web-new-a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	c.deleted("shop", "web-new-a")
	c.expect("10.244.1.12", old("web-new-a"), true)
	clk.Step(time.Minute)
	c.expect("10.244.1.12", unknown, false)
	eventually(t, "the workload forgotten", func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) > 0 })
	mu.Lock()
	defer mu.Unlock()
	for _, ep := range seen {
		if ep != unknown {
			t.Errorf("10.244.1.12 named %+v when the workload was forgotten; want Unknown", ep)
		}
	}
}
