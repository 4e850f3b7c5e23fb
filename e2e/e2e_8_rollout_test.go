package e2e_test

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/podflow/podflow/e2e/harness"
)

// TestRollout: a Deployment rolls out behind a Service while a client keeps
// a connection open to the old pod. The old pod terminates with a grace
// period (deletion timestamp set, listed as terminating, still serving the
// open connection) while the new pod takes the new connections. Every
// packet of both stays the Deployment's, counted exactly, and no series
// names an Unknown endpoint at any moment.
func TestRollout(t *testing.T) {
	s := sandbox(t)
	ctx := context.Background()
	e := s.Env
	n1, n2 := s.Nodes[0], s.Nodes[1]
	const port = 7950
	v1, err := e.Deployment(ctx, "edge", "rollout")
	if err != nil {
		t.Fatal(err)
	}
	old, err := e.AddPod(ctx, v1, n2)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := e.NewService(ctx, harness.ServiceSpec{Name: "rollout", Namespace: "edge", Selector: map[string]string{"app": "rollout"},
		Backend: old, Protocol: corev1.ProtocolTCP, Port: port - 1000, TargetPort: port})
	if err != nil {
		t.Fatal(err)
	}
	client := s.Pod("shop/frontend")
	vip := netip.AddrPortFrom(svc.ClusterIP(4), uint16(svc.Port))
	if _, err := e.TCPSink(old.NS, port, true); err != nil {
		t.Fatal(err)
	}
	kernel := map[string]*harness.FlowCounter{}
	count := func(p *harness.Pod) {
		fc, err := e.CountFlow(client.NS, p.NS, client.IPv4, p.IPv4, "tcp")
		if err != nil {
			t.Fatal(err)
		}
		kernel[p.Name] = fc
	}
	count(old)

	// The long connection, opened while the old pod is the only endpoint.
	conn, err := client.NS.Dial(ctx, "tcp", vip.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	echo := func(n int) {
		t.Helper()
		buf := make([]byte, 1000)
		for i := 0; i < n; i++ {
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := conn.Write(buf); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(conn, buf); err != nil {
				t.Fatalf("the old pod stopped serving the open connection: %v", err)
			}
		}
	}
	echo(5)

	// The rollout: a new ReplicaSet's pod becomes ready on the other node,
	// then the old pod terminates with a grace period.
	v2, err := e.NextReplicaSet(ctx, v1, "7f9c6d5b8")
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := e.AddPod(ctx, v2, n1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.TCPSink(fresh.NS, port, true); err != nil {
		t.Fatal(err)
	}
	count(fresh)
	if err := e.TerminatePod(ctx, old, time.Minute); err != nil {
		t.Fatal(err)
	}
	// kube-proxy sends new connections to the new pod only: its rules
	// still list the old pod (terminating endpoints stay known), so wait
	// for the EndpointSlice to say so instead.
	if err := waitTerminating(ctx, e, svc, old); err != nil {
		t.Fatal(err)
	}
	if err := e.WaitProxied(ctx, []netip.Addr{fresh.IPv4}, nil, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	// In flight on the terminating pod, and new connections to the new one.
	for i := 0; i < 3; i++ {
		echo(3)
		if err := harness.TCPExchange(ctx, client.NS, vip, 3000, true); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
	}
	if tc, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
	}
	_, _ = io.Copy(io.Discard, conn)
	conn.Close()
	time.Sleep(500 * time.Millisecond) // the last FIN/ACK
	var want harness.CountedFlow
	for name, fc := range kernel {
		k, err := fc.Read()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("kernel counted %s: %+v", name, k)
		if k.OrigPackets == 0 {
			t.Errorf("no traffic reached %s: the scenario did not exercise it", name)
		}
		want.OrigPackets += k.OrigPackets
		want.OrigBytes += k.OrigBytes
		want.ReplyPackets += k.ReplyPackets
		want.ReplyBytes += k.ReplyBytes
	}
	// The kernel's counts are read in the pods' namespaces, so the old pod
	// goes only now.
	if err := e.FinishPod(ctx, old); err != nil {
		t.Fatal(err)
	}
	rollout := &harness.Workload{Namespace: "edge", Name: "rollout", Kind: "Deployment"}
	expectPair(t, e, client.Workload, rollout, port, "TCP", want.OrigPackets, want.OrigBytes, want.ReplyPackets, want.ReplyBytes, 4)

	// Not one sample of any series of this port named an Unknown side.
	unknown := fmt.Sprintf(`last_over_time({__name__=~"podflow_.*_total",destination_port="%d",source_kind="Unknown"}[15m]) or last_over_time({__name__=~"podflow_.*_total",destination_port="%d",destination_kind="Unknown"}[15m])`, port, port)
	if v, ok, err := e.QueryValue(ctx, "count("+unknown+")"); err != nil || ok {
		series, _ := e.Query(ctx, unknown)
		t.Errorf("count(%s) = %v %v %v: an endpoint of the rollout was Unknown: %v", unknown, v, ok, err, series)
	}
}

// waitTerminating waits until the EndpointSlice lists p as terminating.
func waitTerminating(ctx context.Context, e *harness.Env, svc *harness.Service, p *harness.Pod) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		terminating, err := e.EndpointTerminating(ctx, svc, p)
		if err != nil {
			return err
		}
		if terminating {
			return nil
		}
		time.Sleep(300 * time.Millisecond)
	}
	return fmt.Errorf("the EndpointSlice of %s/%s never listed %s as terminating", svc.Namespace, svc.Name, p.Name)
}
