package pipeline

import (
	"context"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	metafake "k8s.io/client-go/metadata/fake"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/podflow/podflow/exporter/internal/aggregate"
	"github.com/podflow/podflow/exporter/internal/attribute"
	"github.com/podflow/podflow/exporter/internal/conntrack"
	"github.com/podflow/podflow/exporter/internal/ctflow"
	"github.com/podflow/podflow/exporter/internal/flow"
	"github.com/podflow/podflow/exporter/internal/kube"
)

func statefulPod(ns, name, ip string) *corev1.Pod {
	yes := true
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(ns + "/" + name),
			OwnerReferences: []metav1.OwnerReference{{Kind: "StatefulSet", Name: name[:len(name)-2], Controller: &yes}}},
		Spec:   corev1.PodSpec{NodeName: "n1"},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
	}
}

// TestConnectionModeNamesADeletedPodsLastDelta: in a rollout the old
// pod serves until its last connection closes, then it is deleted; what
// that connection sent after the last dump is read at the next dump or at
// its destroy event, after the deletion. It counts under the pod's
// workload, as packet mode counts it, not under Unknown; once the
// deletion grace is over, the address is Unknown.
func TestConnectionModeNamesADeletedPodsLastDelta(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clk := testingclock.NewFakeClock(time.Now())
	core := fake.NewClientset(statefulPod("a", "client-0", client.String()), statefulPod("b", "server-0", server.String()))
	scheme := metafake.NewTestScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	src, err := kube.NewWithClients(&kube.Config{DeletionGrace: time.Minute, Clock: clk, Forget: func(flow.Endpoint) {},
		PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16")}}, core, metafake.NewSimpleMetadataClient(scheme))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitFor(t, "caches synced", src.Synced)

	tab := aggregate.New(aggregate.Config{})
	p := New(&Config{Conns: ctflow.New(ctflow.Config{})}, attribute.New(src, attribute.Config{}), tab)
	p.Handle(created(100))
	p.HandleConns([]conntrack.Delta{udpDelta(1, 5, 4)})

	// The server's pod is deleted; a pod created after it shows that the
	// deletion has been seen (one watch delivers events in order).
	if err := core.CoreV1().Pods("b").Delete(ctx, "server-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := core.CoreV1().Pods("b").Create(ctx, statefulPod("b", "marker-0", "10.0.9.9"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deletion seen", func() bool { _, ok := src.Lookup(netip.MustParseAddr("10.0.9.9")); return ok })

	// The connection's last delta, read after the deletion.
	p.HandleConns([]conntrack.Delta{udpDelta(1, 2, 3)})
	p.Drain()
	serverEP := flow.Endpoint{Namespace: "b", Workload: "server", Kind: flow.KindStatefulSet}
	if got := dstTotals(tab); len(got) != 1 || got[serverEP] != [2]uint64{7, 7} {
		t.Errorf("packets by destination %+v, want all 7 and 7 under %+v", got, serverEP)
	}

	// After the grace, the address is Unknown again.
	clk.Step(time.Minute)
	waitFor(t, "the tombstone ended", func() bool { ep, _ := src.Lookup(server); return ep.Kind == flow.KindUnknown })
	p.HandleConns([]conntrack.Delta{udpDelta(2, 1, 1)})
	p.Drain()
	if got := dstTotals(tab); got[flow.Endpoint{Kind: flow.KindUnknown}] != [2]uint64{1, 1} {
		t.Errorf("packets by destination %+v, want 1 and 1 under Unknown after the grace", got)
	}
	for _, s := range tab.Snapshot(nil) {
		if s.Key.SrcNamespace != "a" || s.Key.SrcWorkload != "client" || s.Key.SrcKind != flow.KindStatefulSet {
			t.Errorf("series %+v: the source is not the client", s.Key)
		}
	}
}

// dstTotals sums packets by destination endpoint (namespace, workload,
// kind).
func dstTotals(tab *aggregate.Table) map[flow.Endpoint][2]uint64 {
	out := map[flow.Endpoint][2]uint64{}
	for _, s := range tab.Snapshot(nil) {
		ep := flow.Endpoint{Namespace: s.Key.DstNamespace, Workload: s.Key.DstWorkload, Kind: s.Key.DstKind}
		v := out[ep]
		v[0] += s.Packets[0]
		v[1] += s.Packets[1]
		out[ep] = v
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
