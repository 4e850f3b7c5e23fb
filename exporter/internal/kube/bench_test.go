package kube

import (
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// syntheticPod is a pod as the API server sends it: labels, annotations,
// managed fields, a container with resources and probes, conditions. The
// transform keeps a small part of it.
func syntheticPod(i int) *corev1.Pod {
	ns := fmt.Sprintf("team-%d", i%200)
	rs := fmt.Sprintf("app-%d-5f7c9d8b4", i%2000)
	name := fmt.Sprintf("%s-%05x", rs, i)
	ip := netip.AddrFrom4([4]byte{10, byte(64 + i>>16), byte(i >> 8), byte(i)})
	ip6 := netip.AddrFrom16([16]byte{0xfd, 0, 0x10, 0x24, 12: byte(i >> 24), 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
	yes := true
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: ns, UID: types.UID(fmt.Sprintf("4b1e9f3a-0c2d-4e5f-8a9b-%012x", i)),
			ResourceVersion: fmt.Sprint(100000 + i),
			Labels:          map[string]string{"app": rs[:len(rs)-10], "pod-template-hash": "5f7c9d8b4", "team": ns},
			Annotations:     map[string]string{"kubectl.kubernetes.io/restartedAt": "2026-11-25T10:00:00Z", "prometheus.io/scrape": "true"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs, UID: "rs-uid", Controller: &yes, BlockOwnerDeletion: &yes}},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: "Update", APIVersion: "v1",
				FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(strings.Repeat("x", 1500))}},
		},
		Spec: corev1.PodSpec{
			NodeName: fmt.Sprintf("node-%d", i%500),
			Containers: []corev1.Container{{
				Name: "app", Image: "registry.example.com/team/app:v1.2.3",
				Args:  []string{"--listen=:8080", "--log.level=info"},
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
				Env:   []corev1.EnvVar{{Name: "GOMAXPROCS", Value: "2"}, {Name: "MODE", Value: "production"}},
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
					Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
				},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready"}}},
			}},
		},
		Status: corev1.PodStatus{
			Phase:      corev1.PodRunning,
			PodIP:      ip.String(),
			PodIPs:     []corev1.PodIP{{IP: ip.String()}, {IP: ip6.String()}},
			HostIP:     "192.168.0.10",
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}, {Type: corev1.PodScheduled, Status: corev1.ConditionTrue}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Ready: true, Image: "registry.example.com/team/app:v1.2.3",
				ImageID: "registry.example.com/team/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", ContainerID: "containerd://0123456789abcdef"}},
		},
	}
}

// fill feeds n synthetic pods through the transform into an informer
// store and the address index, as the informer does.
func fill(n int) (cache.Indexer, *Source) {
	store := cache.NewIndexer(cache.DeletionHandlingMetaNamespaceKeyFunc, cache.Indexers{})
	s := &Source{ix: newIndex(nil, nil)}
	for i := range n {
		obj, _ := transformPod(syntheticPod(i))
		_ = store.Add(obj)
		s.onPod(obj)
	}
	return store, s
}

func heap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkCacheMemory reports the heap the pod cache and index hold per
// pod (bytes/pod).
func BenchmarkCacheMemory(b *testing.B) {
	for _, n := range []int{10_000, 50_000} {
		b.Run(fmt.Sprintf("pods=%d", n), func(b *testing.B) {
			var perPod float64
			for range b.N {
				before := heap()
				store, s := fill(n)
				after := heap()
				runtime.KeepAlive(store)
				runtime.KeepAlive(s)
				perPod = float64(after-before) / float64(n)
			}
			b.ReportMetric(perPod, "bytes/pod")
			b.ReportMetric(perPod*float64(n)/(1<<20), "MiB")
		})
	}
}

// BenchmarkLookup is the per-packet cost of naming an address in a
// cluster of 50k pods.
func BenchmarkLookup(b *testing.B) {
	const n = 50_000
	_, s := fill(n)
	s.ix.inCluster = []netip.Prefix{netip.MustParsePrefix("10.64.0.0/10")}
	addrs := make([]netip.Addr, 1024)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{10, byte(64 + (i*48)>>16), byte(i * 48 >> 8), byte(i * 48)})
	}
	b.Run("pod", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			if _, ok := s.Lookup(addrs[i&1023]); !ok {
				b.Fatal("miss")
			}
		}
	})
	b.Run("network", func(b *testing.B) {
		ext := netip.MustParseAddr("203.0.113.7")
		b.ReportAllocs()
		for range b.N {
			if ep, _ := s.Lookup(ext); ep.Workload != "internet" {
				b.Fatal(ep)
			}
		}
	})
	// The map alone, without the read lock: the floor an immutable,
	// atomically swapped index could reach, at the price of copying the
	// whole index on every pod event.
	b.Run("map-only", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			if s.ix.addrs[addrs[i&1023]] == nil {
				b.Fatal("miss")
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				s.Lookup(addrs[i&1023])
				i++
			}
		})
	})
}
