package aggregate

import (
	"fmt"
	"runtime"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/podflow/podflow/exporter/internal/flow"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time          { return c.t }
func (c *fakeClock) Advance(d time.Duration) { c.t = c.t.Add(d) }

func newClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

var (
	frontend = flow.Endpoint{Namespace: "shop", Workload: "frontend", Kind: flow.KindDeployment, Pod: "frontend-1"}
	cart     = flow.Endpoint{Namespace: "shop", Workload: "cart", Kind: flow.KindDeployment, Pod: "cart-1"}
	db       = flow.Endpoint{Namespace: "data", Workload: "db", Kind: flow.KindStatefulSet, Pod: "db-0"}
	nodeA    = flow.Endpoint{Workload: "node-a", Kind: flow.KindNode, Node: "node-a"}
)

func key(src, dst flow.Endpoint, port uint16, withPods bool) flow.Key {
	k := flow.Key{
		SrcNamespace: src.Namespace, SrcWorkload: src.Workload, SrcKind: src.Kind,
		DstNamespace: dst.Namespace, DstWorkload: dst.Workload, DstKind: dst.Kind,
		DstPort: port, Proto: flow.ProtoTCP,
	}
	if withPods {
		k.SrcPod, k.DstPod = src.Pod, dst.Pod
	}
	return k
}

func snapshotMap(t *Table) map[flow.Key]Series {
	m := map[flow.Key]Series{}
	for _, s := range t.Snapshot(nil) {
		if _, dup := m[s.Key]; dup {
			panic(fmt.Sprintf("duplicate key %+v", s.Key))
		}
		m[s.Key] = s
	}
	return m
}

func TestAddCountsPerDirection(t *testing.T) {
	clk := newClock()
	tab := New(Config{Now: clk.Now})
	k := key(frontend, cart, 8080, false)
	tab.Add(k, flow.Original, 60, true, 1)
	tab.Add(k, flow.Reply, 60, false, 1)
	tab.Add(k, flow.Original, 1500, false, 1)
	tab.Add(k, flow.Reply, 52, false, 0) // 0 counts as 1

	got := snapshotMap(tab)[k]
	want := Counters{Bytes: [2]uint64{1560, 112}, Packets: [2]uint64{2, 2}, Connections: 1}
	if got.Counters != want {
		t.Fatalf("counters = %+v, want %+v", got.Counters, want)
	}
	if got.Created != clk.t.UnixNano() {
		t.Errorf("created = %d, want %d", got.Created, clk.t.UnixNano())
	}
}

func TestAddScalesBySampleRate(t *testing.T) {
	tab := New(Config{Now: newClock().Now})
	k := key(frontend, cart, 8080, false)
	tab.AddBatch(time.Unix(1, 0), []Update{
		{Key: k, Dir: flow.Original, Bytes: 100, Packets: 1, NewConn: true},
		// A super-packet of three segments.
		{Key: k, Dir: flow.Reply, Bytes: 40, Packets: 3},
	}, 10)
	got := snapshotMap(tab)[k].Counters
	want := Counters{Bytes: [2]uint64{1000, 400}, Packets: [2]uint64{10, 30}, Connections: 10}
	if got != want {
		t.Fatalf("counters = %+v, want %+v", got, want)
	}
}

func TestProjectedKeysNeverCollide(t *testing.T) {
	// Two pods of one workload at workload granularity share one series;
	// with pod labels they are two.
	tab := New(Config{Now: newClock().Now})
	other := frontend
	other.Pod = "frontend-2"
	tab.Add(key(frontend, cart, 80, false), flow.Original, 10, false, 1)
	tab.Add(key(other, cart, 80, false), flow.Original, 10, false, 1)
	tab.Add(key(frontend, cart, 80, true), flow.Original, 10, false, 1)
	tab.Add(key(other, cart, 80, true), flow.Original, 10, false, 1)
	m := snapshotMap(tab)
	if len(m) != 3 {
		t.Fatalf("series = %d, want 3", len(m))
	}
	if got := m[key(frontend, cart, 80, false)].Packets[flow.Original]; got != 2 {
		t.Errorf("workload series packets = %d, want 2", got)
	}
}

// TestSeriesCapDropsScaledPackets checks that packets the cap refuses are
// counted on the scale of the packets it keeps: with 1-in-N sampling each
// logged packet stands for N.
func TestSeriesCapDropsScaledPackets(t *testing.T) {
	tab := New(Config{MaxSeries: 1, Now: newClock().Now})
	ups := []Update{
		{Key: key(frontend, cart, 1000, false), Dir: flow.Original, Bytes: 100, Packets: 1},
		{Key: key(frontend, cart, 1001, false), Dir: flow.Original, Bytes: 100, Packets: 1},
		{Key: key(frontend, cart, 1002, false), Dir: flow.Reply, Bytes: 100, Packets: 1},
	}
	tab.AddBatch(time.Unix(0, 0), ups, 10)
	if st := tab.Stats(); st.Dropped != 20 {
		t.Errorf("dropped = %d, want 20 (two logged packets at 1 in 10)", st.Dropped)
	}
	if s := tab.Snapshot(nil); len(s) != 1 || s[0].Packets[flow.Original] != 10 {
		t.Errorf("kept series = %+v, want one of 10 packets", s)
	}
}

func TestSeriesCap(t *testing.T) {
	tests := []struct {
		name        string
		max         int
		keys        int
		wantSeries  int
		wantDropped uint64
	}{
		{"no cap", 0, 5, 5, 0},
		{"under cap", 10, 5, 5, 0},
		{"at cap", 5, 5, 5, 0},
		{"over cap", 3, 5, 3, 4}, // two refused keys, two packets each
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := New(Config{MaxSeries: tt.max, Now: newClock().Now})
			for range 2 {
				for i := range tt.keys {
					tab.Add(key(frontend, cart, uint16(1000+i), false), flow.Original, 1, false, 1)
				}
			}
			st := tab.Stats()
			if st.Series != tt.wantSeries || st.Dropped != tt.wantDropped || st.Limit != tt.max {
				t.Fatalf("stats = %+v, want series %d dropped %d limit %d", st, tt.wantSeries, tt.wantDropped, tt.max)
			}
			// Existing series keep counting at the cap.
			for _, s := range tab.Snapshot(nil) {
				if s.Packets[flow.Original] != 2 {
					t.Errorf("series %d packets = %d, want 2", s.Key.DstPort, s.Packets[flow.Original])
				}
			}
		})
	}
}

func TestEvictIdle(t *testing.T) {
	clk := newClock()
	tab := New(Config{IdleTimeout: 10 * time.Minute, Now: clk.Now})
	quiet := key(frontend, cart, 80, false)
	busy := key(frontend, db, 5432, false)
	tab.Add(quiet, flow.Original, 1, false, 1)
	tab.Add(busy, flow.Original, 1, false, 1)

	steps := []struct {
		advance   time.Duration
		touchBusy bool
		wantEvict int
		wantKeys  []flow.Key
	}{
		{5 * time.Minute, true, 0, []flow.Key{quiet, busy}},
		{5 * time.Minute, true, 0, []flow.Key{quiet, busy}}, // exactly at the timeout: kept
		{time.Second, false, 1, []flow.Key{busy}},
		{10*time.Minute - time.Second, false, 0, []flow.Key{busy}}, // idle exactly the timeout
		{time.Nanosecond, false, 1, nil},
	}
	for i, s := range steps {
		clk.Advance(s.advance)
		if s.touchBusy {
			tab.Add(busy, flow.Reply, 1, false, 1)
		}
		if n := tab.Evict(clk.Now()); n != s.wantEvict {
			t.Fatalf("step %d: evicted %d, want %d", i, n, s.wantEvict)
		}
		m := snapshotMap(tab)
		if len(m) != len(s.wantKeys) {
			t.Fatalf("step %d: %d series, want %d", i, len(m), len(s.wantKeys))
		}
		for _, k := range s.wantKeys {
			if _, ok := m[k]; !ok {
				t.Fatalf("step %d: series %v missing", i, k)
			}
		}
	}
	if st := tab.Stats(); st.EvictedIdle != 2 || st.Series != 0 {
		t.Errorf("stats = %+v, want 2 idle evictions and no series", st)
	}
}

func TestEvictDisabled(t *testing.T) {
	clk := newClock()
	tab := New(Config{Now: clk.Now})
	tab.Add(key(frontend, cart, 80, false), flow.Original, 1, false, 1)
	clk.Advance(24 * time.Hour)
	if n := tab.Evict(clk.Now()); n != 0 || tab.Len() != 1 {
		t.Fatalf("evicted %d, len %d; want 0, 1", n, tab.Len())
	}
}

func TestForget(t *testing.T) {
	otherFrontend := frontend
	otherFrontend.Pod = "frontend-2"
	sameNameOtherNS := flow.Endpoint{Namespace: "staging", Workload: "frontend", Kind: flow.KindDeployment, Pod: "frontend-1"}
	sameNameOtherKind := flow.Endpoint{Namespace: "shop", Workload: "frontend", Kind: flow.KindStatefulSet, Pod: "frontend-0"}
	nodeKey := key(nodeA, db, 5432, false)

	tests := []struct {
		name     string
		withPods bool
		forget   flow.Endpoint
		want     int // series removed
	}{
		{"workload, either side", false, flow.Endpoint{Namespace: "shop", Workload: "frontend", Kind: flow.KindDeployment}, 3},
		{"pod at workload granularity keeps the workload's series", false, frontend, 0},
		{"pod with pod labels, either side", true, frontend, 2},
		{"destination only", false, flow.Endpoint{Namespace: "data", Workload: "db", Kind: flow.KindStatefulSet}, 3}, // cart, frontend and the node
		{"node, namespace ignored", false, flow.Endpoint{Namespace: "ignored", Workload: "node-a", Kind: flow.KindNode}, 1},
		{"unknown workload", false, flow.Endpoint{Namespace: "shop", Workload: "nope", Kind: flow.KindDeployment}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := New(Config{Now: newClock().Now})
			keys := []flow.Key{
				key(frontend, cart, 80, tt.withPods),
				key(cart, frontend, 8080, tt.withPods),
				key(cart, db, 5432, tt.withPods),
				key(otherFrontend, db, 5432, tt.withPods),
				key(sameNameOtherNS, cart, 80, tt.withPods),
				key(sameNameOtherKind, cart, 80, tt.withPods),
				nodeKey,
			}
			if !tt.withPods {
				keys[3] = key(frontend, db, 5432, false) // otherFrontend projects to frontend
			}
			for _, k := range keys {
				tab.Add(k, flow.Original, 1, false, 1)
			}
			before := tab.Len()
			n := tab.Forget(tt.forget)
			if n != tt.want {
				t.Fatalf("Forget removed %d, want %d", n, tt.want)
			}
			if tab.Len() != before-tt.want || tab.Stats().EvictedDeleted != uint64(tt.want) {
				t.Fatalf("len %d stats %+v after removing %d of %d", tab.Len(), tab.Stats(), tt.want, before)
			}
			for _, s := range tab.Snapshot(nil) {
				k := s.Key
				if (k.SrcKind == tt.forget.Kind && k.SrcWorkload == tt.forget.Workload && k.SrcNamespace == tt.forget.Namespace && (tt.forget.Pod == "" || k.SrcPod == tt.forget.Pod)) ||
					(k.DstKind == tt.forget.Kind && k.DstWorkload == tt.forget.Workload && k.DstNamespace == tt.forget.Namespace && (tt.forget.Pod == "" || k.DstPod == tt.forget.Pod)) {
					t.Errorf("series %+v survived", k)
				}
			}
		})
	}
}

func TestSnapshotReusesBuffer(t *testing.T) {
	tab := New(Config{Now: newClock().Now})
	for i := range 100 {
		tab.Add(key(frontend, cart, uint16(i), false), flow.Original, 1, false, 1)
	}
	buf := tab.Snapshot(nil)
	if len(buf) != 100 {
		t.Fatalf("len = %d", len(buf))
	}
	again := tab.Snapshot(buf)
	if &again[0] != &buf[0] {
		t.Error("Snapshot did not reuse a large enough buffer")
	}
	ports := make([]int, 0, len(again))
	for _, s := range again {
		ports = append(ports, int(s.Key.DstPort))
	}
	sort.Ints(ports)
	for i, p := range ports {
		if p != i {
			t.Fatalf("ports = %v", ports)
		}
	}
}

func TestConcurrentAddSnapshotForget(t *testing.T) {
	tab := New(Config{MaxSeries: 50, IdleTimeout: time.Minute})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		var buf []Series
		for {
			select {
			case <-stop:
				return
			default:
				buf = tab.Snapshot(buf)
				tab.Forget(cart)
				tab.Evict(time.Now())
			}
		}
	})
	ups := make([]Update, 64)
	for i := range ups {
		ups[i] = Update{Key: key(frontend, cart, uint16(i), i%2 == 0), Bytes: 10, Packets: 1}
	}
	for range 200 {
		tab.AddBatch(time.Now(), ups, 1)
	}
	close(stop)
	wg.Wait()
	if tab.Len() > 50 {
		t.Fatalf("len %d above the cap", tab.Len())
	}
}

func TestAddAllocatesNothingInSteadyState(t *testing.T) {
	tab := New(Config{MaxSeries: 100, Now: newClock().Now})
	keys := make([]flow.Key, 100)
	for i := range keys {
		keys[i] = key(frontend, cart, uint16(i), true)
		tab.Add(keys[i], flow.Original, 1, true, 1)
	}
	over := key(frontend, db, 1, false) // refused by the cap
	i := 0
	if n := testing.AllocsPerRun(1000, func() {
		tab.Add(keys[i%len(keys)], flow.Direction(i&1), 1500, i%7 == 0, 1)
		tab.Add(over, flow.Original, 1, false, 1)
		i++
	}); n != 0 {
		t.Fatalf("Add allocates %v times per packet", n)
	}
	ups := make([]Update, 64)
	for j := range ups {
		ups[j] = Update{Key: keys[j], Bytes: 100, Packets: 1}
	}
	now := time.Unix(2, 0)
	if n := testing.AllocsPerRun(100, func() { tab.AddBatch(now, ups, 1) }); n != 0 {
		t.Fatalf("AddBatch allocates %v times per batch", n)
	}
}

func benchKeys(n int) []flow.Key {
	keys := make([]flow.Key, n)
	for i := range keys {
		keys[i] = flow.Key{
			SrcNamespace: fmt.Sprintf("ns-%d", i%50), SrcWorkload: fmt.Sprintf("workload-%d", i), SrcKind: flow.KindDeployment,
			DstNamespace: fmt.Sprintf("ns-%d", (i+7)%50), DstWorkload: fmt.Sprintf("backend-%d", i%300), DstKind: flow.KindStatefulSet,
			DstPort: uint16(i % 1000), Proto: flow.ProtoTCP,
		}
	}
	return keys
}

// BenchmarkAdd is the per-packet cost in steady state, through the batch
// API that the pipeline uses (batches of 64).
func BenchmarkAdd(b *testing.B) {
	keys := benchKeys(10_000)
	tab := New(Config{})
	ups := make([]Update, 64)
	for i := range keys {
		tab.Add(keys[i], flow.Original, 1, false, 1)
	}
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	j := 0
	for i := 0; i < b.N; i += len(ups) {
		for u := range ups {
			ups[u] = Update{Key: keys[j%len(keys)], Dir: flow.Direction(j & 1), Bytes: 100, Packets: 1}
			j += 7919
		}
		tab.AddBatch(now, ups, 1)
	}
}

// BenchmarkAddSingle is Add without batching: one lock per packet.
func BenchmarkAddSingle(b *testing.B) {
	keys := benchKeys(10_000)
	tab := New(Config{})
	for i := range keys {
		tab.Add(keys[i], flow.Original, 1, false, 1)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		tab.Add(keys[(i*7919)%len(keys)], flow.Original, 100, false, 1)
	}
}

// BenchmarkSeriesMemory reports the heap each active series costs.
func BenchmarkSeriesMemory(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("series=%d", n), func(b *testing.B) {
			keys := benchKeys(n) // label strings are shared with the source of identity; not counted
			var perSeries float64
			for b.Loop() {
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				tab := New(Config{})
				for i := range keys {
					tab.Add(keys[i], flow.Original, 1, false, 1)
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				perSeries = float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
				runtime.KeepAlive(tab)
			}
			b.ReportMetric(perSeries, "bytes/series")
		})
	}
}
