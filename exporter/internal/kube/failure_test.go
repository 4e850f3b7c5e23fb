package kube

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	k8stesting "k8s.io/client-go/testing"

	"github.com/podflow/podflow/exporter/internal/flow"
)

// errRefused is what a client gets from an API server that is down; the
// reflector retries such a watch by itself without reporting it.
var errRefused = fmt.Errorf("dial tcp 10.96.0.1:443: %w", syscall.ECONNREFUSED)

// outage makes the fake API server fail lists and watches of pods, and
// can cut the watches in progress.
type outage struct {
	down    atomic.Bool
	mu      sync.Mutex
	watches []watch.Interface
}

func (o *outage) install(c *cluster) {
	c.core.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		if o.down.Load() {
			return true, nil, errRefused
		}
		return false, nil, nil
	})
	tracker := c.core.Tracker()
	c.core.PrependWatchReactor("pods", func(a k8stesting.Action) (bool, watch.Interface, error) {
		if o.down.Load() {
			return true, nil, errRefused
		}
		var opts metav1.ListOptions
		if wa, ok := a.(k8stesting.WatchActionImpl); ok {
			opts = wa.ListOptions
		}
		w, err := tracker.Watch(a.GetResource(), a.GetNamespace(), opts)
		if err != nil {
			return true, nil, err
		}
		o.mu.Lock()
		o.watches = append(o.watches, w)
		o.mu.Unlock()
		return true, w, nil
	})
}

// cut takes the API server down and ends the watches in progress, as a
// dropped connection does.
func (o *outage) cut() {
	o.down.Store(true)
	o.mu.Lock()
	for _, w := range o.watches {
		w.Stop()
	}
	o.watches = nil
	o.mu.Unlock()
}

func TestAPIFailure(t *testing.T) {
	var o outage
	c := &cluster{t: t}
	c.core, c.meta = newFakeClients(pod("shop", "web-0", "n1", []string{"10.244.1.10"}, owned("StatefulSet", "web")))
	o.install(c)
	c.start(Config{PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}})
	web := flow.Endpoint{Namespace: "shop", Workload: "web", Kind: flow.KindStatefulSet, Pod: "web-0", Node: "n1"}
	c.expect("10.244.1.10", web, true)
	if e := c.src.Stats().Resources[ResPods].Errors; e != 0 {
		t.Fatalf("errors before the outage: %d", e)
	}

	o.cut()
	// Meanwhile the cluster changes.
	if err := c.core.Tracker().Add(pod("shop", "web-1", "n2", []string{"10.244.2.11"}, owned("StatefulSet", "web"))); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a pod list/watch error counted", func() bool { return c.src.Stats().Resources[ResPods].Errors >= 2 })
	// Lookups answer from the last known state; readiness holds.
	c.expect("10.244.1.10", web, true)
	c.expect("10.244.2.11", flow.Endpoint{}, false)
	st := c.src.Stats()
	if !c.src.Synced() || !st.Resources[ResPods].Synced {
		t.Fatalf("synced lost during the outage: %+v", st)
	}
	if st.Resources[ResServices].Errors != 0 {
		t.Fatalf("errors counted on services: %+v", st)
	}

	// The API server comes back: the informer relists by itself.
	o.down.Store(false)
	c.expect("10.244.2.11", flow.Endpoint{Namespace: "shop", Workload: "web", Kind: flow.KindStatefulSet, Pod: "web-1", Node: "n2"}, true)
	c.expect("10.244.1.10", web, true)
	// And watches again.
	if err := c.core.CoreV1().Pods("shop").Delete(ctx, "web-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	c.expect("10.244.1.10", flow.Endpoint{}, false)
}
