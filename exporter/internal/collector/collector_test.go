package collector

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/podflow/podflow/exporter/internal/aggregate"
	"github.com/podflow/podflow/exporter/internal/attribute"
	"github.com/podflow/podflow/exporter/internal/flow"
)

type fakeTable []aggregate.Series

func (f fakeTable) Snapshot(dst []aggregate.Series) []aggregate.Series {
	return append(dst[:0], f...)
}

var series = fakeTable{
	{
		Key: flow.Key{SrcNamespace: "shop", SrcWorkload: "frontend", SrcKind: flow.KindDeployment,
			DstNamespace: "shop", DstWorkload: "cart", DstKind: flow.KindStatefulSet, DstPort: 8080, Proto: flow.ProtoTCP,
			SrcPod: "frontend-1", DstPod: "cart-0", DstService: "cart"},
		Counters: aggregate.Counters{Bytes: [2]uint64{1500, 300}, Packets: [2]uint64{10, 5}, Connections: 2},
		Created:  1_700_000_000_500_000_000,
	},
	{
		Key:      flow.Key{SrcWorkload: "node-a", SrcKind: flow.KindNode, DstWorkload: "internet", DstKind: flow.KindNetwork, Proto: flow.ProtoICMPv6},
		Counters: aggregate.Counters{Bytes: [2]uint64{104, 0}, Packets: [2]uint64{1, 0}},
	},
}

const workloadExposition = `
# HELP podflow_bytes_total L3 bytes between the source and the destination, by direction (original: source to destination).
# TYPE podflow_bytes_total counter
podflow_bytes_total{destination_kind="Network",destination_namespace="",destination_port="0",destination_workload="internet",direction="original",protocol="ICMPv6",source_kind="Node",source_namespace="",source_workload="node-a"} 104
podflow_bytes_total{destination_kind="Network",destination_namespace="",destination_port="0",destination_workload="internet",direction="reply",protocol="ICMPv6",source_kind="Node",source_namespace="",source_workload="node-a"} 0
podflow_bytes_total{destination_kind="StatefulSet",destination_namespace="shop",destination_port="8080",destination_workload="cart",direction="original",protocol="TCP",source_kind="Deployment",source_namespace="shop",source_workload="frontend"} 1500
podflow_bytes_total{destination_kind="StatefulSet",destination_namespace="shop",destination_port="8080",destination_workload="cart",direction="reply",protocol="TCP",source_kind="Deployment",source_namespace="shop",source_workload="frontend"} 300
# HELP podflow_connections_total Connections the source opened to the destination.
# TYPE podflow_connections_total counter
podflow_connections_total{destination_kind="Network",destination_namespace="",destination_port="0",destination_workload="internet",protocol="ICMPv6",source_kind="Node",source_namespace="",source_workload="node-a"} 0
podflow_connections_total{destination_kind="StatefulSet",destination_namespace="shop",destination_port="8080",destination_workload="cart",protocol="TCP",source_kind="Deployment",source_namespace="shop",source_workload="frontend"} 2
# HELP podflow_packets_total Packets between the source and the destination, by direction (original: source to destination).
# TYPE podflow_packets_total counter
podflow_packets_total{destination_kind="Network",destination_namespace="",destination_port="0",destination_workload="internet",direction="original",protocol="ICMPv6",source_kind="Node",source_namespace="",source_workload="node-a"} 1
podflow_packets_total{destination_kind="Network",destination_namespace="",destination_port="0",destination_workload="internet",direction="reply",protocol="ICMPv6",source_kind="Node",source_namespace="",source_workload="node-a"} 0
podflow_packets_total{destination_kind="StatefulSet",destination_namespace="shop",destination_port="8080",destination_workload="cart",direction="original",protocol="TCP",source_kind="Deployment",source_namespace="shop",source_workload="frontend"} 10
podflow_packets_total{destination_kind="StatefulSet",destination_namespace="shop",destination_port="8080",destination_workload="cart",direction="reply",protocol="TCP",source_kind="Deployment",source_namespace="shop",source_workload="frontend"} 5
`

func pedantic(t *testing.T, c prometheus.Collector) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	return reg
}

func TestFlowsExposition(t *testing.T) {
	// The table projects before counting; with labels disabled the opt-in
	// fields of its keys are empty.
	projected := make(fakeTable, len(series))
	copy(projected, series)
	projected[0].Key.SrcPod, projected[0].Key.DstPod, projected[0].Key.DstService = "", "", ""

	reg := pedantic(t, NewFlows(projected, attribute.Labels{}))
	if err := testutil.GatherAndCompare(reg, strings.NewReader(workloadExposition)); err != nil {
		t.Fatal(err)
	}
}

func TestFlowsOptInLabels(t *testing.T) {
	c := NewFlows(series, attribute.Labels{SourcePod: true, DestinationService: true})
	want := `
# HELP podflow_connections_total Connections the source opened to the destination.
# TYPE podflow_connections_total counter
podflow_connections_total{destination_kind="Network",destination_namespace="",destination_port="0",destination_service="",destination_workload="internet",protocol="ICMPv6",source_kind="Node",source_namespace="",source_pod="",source_workload="node-a"} 0
podflow_connections_total{destination_kind="StatefulSet",destination_namespace="shop",destination_port="8080",destination_service="cart",destination_workload="cart",protocol="TCP",source_kind="Deployment",source_namespace="shop",source_pod="frontend-1",source_workload="frontend"} 2
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "podflow_connections_total"); err != nil {
		t.Fatal(err)
	}
	// The pedantic registry checks that every metric matches its Desc.
	if _, err := pedantic(t, c).Gather(); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(c, "podflow_bytes_total"); n != 4 {
		t.Errorf("%d byte series, want 4", n)
	}
}

var sources = Sources{
	SampleRate: 4,
	Capture: func() CaptureStats {
		return CaptureStats{Received: 1000, Lost: 3, Overruns: 1, BadBatches: 2, Bound: true, Dropped: []Count{{"queue_full", 64}}}
	},
	Decode: func() []Count { return []Count{{"truncated", 2}, {"unsupported_protocol", 0}} },
	Attribution: func() attribute.Stats {
		return attribute.Stats{OtherNodeReports: 7, LinkLocal: 8, Multicast: 9, SourceMisses: 1, DestinationMisses: 2}
	},
	Ignored: func() []Count { return []Count{{"identity_not_synced", 11}} },
	Aggregate: func() aggregate.Stats {
		return aggregate.Stats{Series: 12, Limit: 100000, Dropped: 5, EvictedIdle: 3, EvictedDeleted: 4}
	},
	Nftables: func() NftablesStats {
		return NftablesStats{SyncSuccess: 2, SyncReinstall: 3, SyncError: 1, Overlay: []Count{{"vxlan", 9}, {"wireguard", 0}}}
	},
	Kubernetes: func() []ResourceStats {
		return []ResourceStats{{"pods", true, 0}, {"services", false, 2}}
	},
	ServiceNaming: func() ServiceNamingStats {
		return ServiceNamingStats{Method: NamingLog, Misses: 6, Forgotten: 10}
	},
	Mode: ModeConnection,
	Conntrack: func() ConntrackStats {
		return ConntrackStats{AccountingEnabled: true, EnabledByPodflow: true, Events: 20, Overruns: 1, MalformedEvents: 4, Dumps: 30, DumpErrors: 2, Tracked: 40, Lost: 3, CounterResets: 5, QueueFull: 128}
	},
}

func TestSelfExposition(t *testing.T) {
	want := `
# HELP podflow_attribution_misses_total Packets whose source or destination address no source of identity knew, by side.
# TYPE podflow_attribution_misses_total counter
podflow_attribution_misses_total{side="destination"} 2
podflow_attribution_misses_total{side="source"} 1
# HELP podflow_capture_bound 1 while podflow owns the NFLOG group, else 0.
# TYPE podflow_capture_bound gauge
podflow_capture_bound 1
# HELP podflow_capture_conntrack 1 when NFLOG attaches conntrack data (the original tuple: destination_service), 0 when state and direction come from the log prefix alone.
# TYPE podflow_capture_conntrack gauge
podflow_capture_conntrack 0
# HELP podflow_capture_malformed_batches_total NFLOG datagrams whose netlink framing was broken; the packets in them count as lost.
# TYPE podflow_capture_malformed_batches_total counter
podflow_capture_malformed_batches_total 2
# HELP podflow_capture_mode 1 for the capture mode podflow runs in (packet: every packet logged; connection: bytes and packets from conntrack), else 0.
# TYPE podflow_capture_mode gauge
podflow_capture_mode{mode="connection"} 1
podflow_capture_mode{mode="packet"} 0
# HELP podflow_capture_overruns_total Receive buffer overruns (ENOBUFS) on the NFLOG socket.
# TYPE podflow_capture_overruns_total counter
podflow_capture_overruns_total 1
# HELP podflow_capture_packets_dropped_total Packets read but dropped before counting, by reason.
# TYPE podflow_capture_packets_dropped_total counter
podflow_capture_packets_dropped_total{reason="queue_full"} 64
# HELP podflow_capture_packets_lost_total Packets the kernel logged but podflow never read (NFLOG sequence gaps).
# TYPE podflow_capture_packets_lost_total counter
podflow_capture_packets_lost_total 3
# HELP podflow_capture_packets_received_total Packets read from the NFLOG group.
# TYPE podflow_capture_packets_received_total counter
podflow_capture_packets_received_total 1000
# HELP podflow_capture_sample_rate The kernel logs one packet in this many; counters are scaled by it.
# TYPE podflow_capture_sample_rate gauge
podflow_capture_sample_rate 4
# HELP podflow_conntrack_accounting_enabled 1 when the kernel counts bytes and packets per connection (nf_conntrack_acct), else 0; by_podflow says whether podflow turned it on.
# TYPE podflow_conntrack_accounting_enabled gauge
podflow_conntrack_accounting_enabled{by_podflow="true"} 1
# HELP podflow_conntrack_connections Connections whose counters podflow follows.
# TYPE podflow_conntrack_connections gauge
podflow_conntrack_connections 40
# HELP podflow_conntrack_connections_lost_total Connections whose last counts were never read (their end event lost, or gone between two dumps).
# TYPE podflow_conntrack_connections_lost_total counter
podflow_conntrack_connections_lost_total 3
# HELP podflow_conntrack_accounting_resets_total Connection counters that went backwards (zeroed by another program); the new totals are counted whole.
# TYPE podflow_conntrack_accounting_resets_total counter
podflow_conntrack_accounting_resets_total 5
# HELP podflow_conntrack_dump_errors_total Periodic reads of the live connections' counters that failed.
# TYPE podflow_conntrack_dump_errors_total counter
podflow_conntrack_dump_errors_total 2
# HELP podflow_conntrack_dumps_total Periodic reads of the live connections' counters.
# TYPE podflow_conntrack_dumps_total counter
podflow_conntrack_dumps_total 30
# HELP podflow_conntrack_events_malformed_total Conntrack event messages that could not be decoded; their connections' last counts are missing.
# TYPE podflow_conntrack_events_malformed_total counter
podflow_conntrack_events_malformed_total 4
# HELP podflow_conntrack_events_total Conntrack events read (connections that ended).
# TYPE podflow_conntrack_events_total counter
podflow_conntrack_events_total 20
# HELP podflow_conntrack_overruns_total Overruns (ENOBUFS) of the conntrack event socket: the kernel dropped at least one event each time.
# TYPE podflow_conntrack_overruns_total counter
podflow_conntrack_overruns_total 1
# HELP podflow_conntrack_updates_dropped_total Counter updates of connections (one per direction and read) dropped before counting, by reason.
# TYPE podflow_conntrack_updates_dropped_total counter
podflow_conntrack_updates_dropped_total{reason="queue_full"} 128
# HELP podflow_decode_errors_total Packets that could not be decoded, by reason.
# TYPE podflow_decode_errors_total counter
podflow_decode_errors_total{reason="truncated"} 2
podflow_decode_errors_total{reason="unsupported_protocol"} 0
# HELP podflow_kubernetes_errors_total List and watch failures, by resource.
# TYPE podflow_kubernetes_errors_total counter
podflow_kubernetes_errors_total{resource="pods"} 0
podflow_kubernetes_errors_total{resource="services"} 2
# HELP podflow_kubernetes_synced 1 once the informer of the resource has synced, else 0.
# TYPE podflow_kubernetes_synced gauge
podflow_kubernetes_synced{resource="pods"} 1
podflow_kubernetes_synced{resource="services"} 0
# HELP podflow_nftables_syncs_total Installs and checks of the nftables table, by result (success: as built; reinstall: rebuilt a missing or changed table; error).
# TYPE podflow_nftables_syncs_total counter
podflow_nftables_syncs_total{result="error"} 1
podflow_nftables_syncs_total{result="reinstall"} 3
podflow_nftables_syncs_total{result="success"} 2
# HELP podflow_overlay_packets_total Encapsulated packets between nodes excluded from the pair counters, by encapsulation.
# TYPE podflow_overlay_packets_total counter
podflow_overlay_packets_total{encapsulation="vxlan"} 9
podflow_overlay_packets_total{encapsulation="wireguard"} 0
# HELP podflow_packets_ignored_total Packets seen but not counted on this node, by reason.
# TYPE podflow_packets_ignored_total counter
podflow_packets_ignored_total{reason="identity_not_synced"} 11
podflow_packets_ignored_total{reason="link_local"} 8
podflow_packets_ignored_total{reason="multicast"} 9
podflow_packets_ignored_total{reason="other_node_reports"} 7
# HELP podflow_series Active flow series (label sets).
# TYPE podflow_series gauge
podflow_series 12
# HELP podflow_series_dropped_total Packets not counted because their new series would exceed the cap.
# TYPE podflow_series_dropped_total counter
podflow_series_dropped_total 5
# HELP podflow_series_evicted_total Flow series removed, by reason (idle: no packet for the idle timeout; deleted: an endpoint went away).
# TYPE podflow_series_evicted_total counter
podflow_series_evicted_total{reason="deleted"} 4
podflow_series_evicted_total{reason="idle"} 3
# HELP podflow_series_limit The cap on flow series (--metrics.max-series; 0: no cap).
# TYPE podflow_series_limit gauge
podflow_series_limit 100000
# HELP podflow_service_naming 1 for the method this node names the Service a client dialled by (glue: NFLOG's conntrack tuple; log: the first packet logged before DNAT; conntrack: connection mode, conntrack's original tuple; none), else 0.
# TYPE podflow_service_naming gauge
podflow_service_naming{method="conntrack"} 0
podflow_service_naming{method="glue"} 0
podflow_service_naming{method="log"} 1
podflow_service_naming{method="none"} 0
# HELP podflow_service_naming_forgotten_total Translated connections forgotten to keep the naming table within its bound.
# TYPE podflow_service_naming_forgotten_total counter
podflow_service_naming_forgotten_total 10
# HELP podflow_service_naming_misses_total Packets of connections this node translated whose pre-DNAT destination was not known.
# TYPE podflow_service_naming_misses_total counter
podflow_service_naming_misses_total 6
`
	if err := testutil.GatherAndCompare(pedantic(t, newSelf(&sources)), strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

func TestSelfRegistryHasBuildInfo(t *testing.T) {
	reg := NewSelfRegistry(&Sources{})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, n := range []string{"podflow_build_info", "podflow_capture_sample_rate", "go_goroutines", "process_cpu_seconds_total"} {
		optional := n == "process_cpu_seconds_total" && !processSupported()
		if !names[n] && !optional {
			t.Errorf("%s missing from the self registry", n)
		}
	}
}

func processSupported() bool { _, err := os.Stat("/proc/self/stat"); return err == nil }

// TestEveryMetricIsDocumented fails when a metric the code exposes has no
// entry in docs/metrics.md.
func TestEveryMetricIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("`((?:podflow|go|process|promhttp)_[a-z0-9_]*\\*?)`").FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = true
	}
	flows := NewFlowRegistry(NewFlows(series, attribute.Labels{SourcePod: true, DestinationPod: true, DestinationService: true}))
	selfReg := NewSelfRegistry(&sources)
	mfs, err := Gatherers{Flows: NewFlows(series, attribute.Labels{SourcePod: true, DestinationPod: true, DestinationService: true}), Self: selfReg}.Gather()
	_ = flows
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		name := mf.GetName()
		family := name[:strings.Index(name, "_")+1] + "*"
		if strings.HasPrefix(name, "podflow_") {
			family = ""
		}
		if !documented[name] && !documented[family] {
			t.Errorf("metric %s is not documented in docs/metrics.md", name)
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.HasPrefix(name, "podflow_") && !strings.Contains(string(doc), fmt.Sprintf("`%s`", l.GetName())) {
					t.Errorf("label %s of %s is not documented in docs/metrics.md", l.GetName(), name)
				}
			}
		}
	}
}

// TestGatherMatchesRegistry checks the fast path against the registry's
// checked and sorted output, and that Gatherers serves both registries.
func TestGatherMatchesRegistry(t *testing.T) {
	for _, labels := range []attribute.Labels{{}, {SourcePod: true, DestinationPod: true, DestinationService: true}} {
		flows := NewFlows(series, labels)
		want, err := NewFlowRegistry(flows).Gather()
		if err != nil {
			t.Fatal(err)
		}
		got, err := flows.Gather()
		if err != nil {
			t.Fatal(err)
		}
		if a, b := exposition(t, want), exposition(t, got); a != b {
			t.Errorf("labels %+v: fast path\n%s\nregistry\n%s", labels, b, a)
		}
		both, err := Gatherers{Flows: flows, Self: NewSelfRegistry(&sources)}.Gather()
		if err != nil {
			t.Fatal(err)
		}
		if text := exposition(t, both); !strings.Contains(text, "podflow_series_limit 100000") || !strings.Contains(text, "podflow_connections_total{") {
			t.Error("Gatherers lost a registry")
		}
	}
}

// exposition renders families as sorted OpenMetrics lines, created
// timestamps included.
func exposition(t *testing.T, mfs []*dto.MetricFamily) string {
	t.Helper()
	var lines []string
	for _, mf := range mfs {
		var b strings.Builder
		if _, err := expfmt.MetricFamilyToOpenMetrics(&b, mf, expfmt.WithCreatedLines()); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, strings.Split(strings.TrimSpace(b.String()), "\n")...)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// TestCreatedTimestamps checks that every sample of a series carries the
// time the table started it, in the checked registry path and the fast
// path alike, and that the OpenMetrics and protobuf encodings carry it.
func TestCreatedTimestamps(t *testing.T) {
	flows := NewFlows(series, attribute.Labels{})
	checked, err := NewFlowRegistry(flows).Gather()
	if err != nil {
		t.Fatal(err)
	}
	fast, err := flows.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for name, mfs := range map[string][]*dto.MetricFamily{"registry": checked, "fast path": fast} {
		n := 0
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				ct := m.GetCounter().GetCreatedTimestamp()
				frontend := strings.Contains(fmt.Sprint(m.GetLabel()), `"frontend"`)
				switch {
				case frontend && (ct.GetSeconds() != 1_700_000_000 || ct.GetNanos() != 500_000_000):
					t.Errorf("%s: %s{%v} created %v, want 1700000000.5", name, mf.GetName(), m.GetLabel(), ct)
				case !frontend && ct != nil:
					t.Errorf("%s: %s{%v} has a created timestamp its series never had", name, mf.GetName(), m.GetLabel())
				}
				if ct != nil {
					n++
				}
			}
		}
		if n != 5 {
			t.Errorf("%s: %d samples with a created timestamp, want 5 (bytes and packets both ways, connections)", name, n)
		}
	}

	text := exposition(t, fast)
	for _, want := range []string{
		`podflow_bytes_created{destination_kind="StatefulSet",destination_namespace="shop",destination_port="8080",destination_workload="cart",direction="reply",protocol="TCP",source_kind="Deployment",source_namespace="shop",source_workload="frontend"} 1.7000000005e+09`,
		`podflow_connections_created{destination_kind="StatefulSet",destination_namespace="shop",destination_port="8080",destination_workload="cart",protocol="TCP",source_kind="Deployment",source_namespace="shop",source_workload="frontend"} 1.7000000005e+09`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("OpenMetrics output lacks\n%s\nin\n%s", want, text)
		}
	}

	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeProtoDelim))
	for _, mf := range fast {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	dec := expfmt.NewDecoder(&buf, expfmt.NewFormat(expfmt.TypeProtoDelim))
	var mf dto.MetricFamily
	stamped := 0
	for dec.Decode(&mf) == nil {
		for _, m := range mf.GetMetric() {
			if m.GetCounter().GetCreatedTimestamp().AsTime().Equal(time.Unix(1_700_000_000, 500_000_000)) {
				stamped++
			}
		}
	}
	if stamped != 5 {
		t.Errorf("protobuf: %d samples with the created timestamp, want 5", stamped)
	}
}

// TestRecreatedSeriesGetANewCreatedTimestamp: a series evicted while idle
// and started again by a later packet is a new counter, and its created
// timestamp says when it started, so that Prometheus counts its first
// increment instead of mistaking the new counter for the old one.
func TestRecreatedSeriesGetANewCreatedTimestamp(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	tab := aggregate.New(aggregate.Config{IdleTimeout: 10 * time.Minute, Now: func() time.Time { return now }})
	key := series[1].Key
	flows := NewFlows(tab, attribute.Labels{})
	created := func() time.Time {
		t.Helper()
		mfs, err := flows.Gather()
		if err != nil || len(mfs) == 0 {
			t.Fatalf("gather: %v, %d families", err, len(mfs))
		}
		return mfs[0].GetMetric()[0].GetCounter().GetCreatedTimestamp().AsTime()
	}

	tab.Add(key, flow.Original, 100, true, 1)
	if got := created(); !got.Equal(now) {
		t.Fatalf("created %v, want %v", got, now)
	}
	first := now
	now = now.Add(5 * time.Minute)
	tab.Add(key, flow.Original, 100, false, 1)
	if got := created(); !got.Equal(first) {
		t.Fatalf("a series that keeps counting moved its created timestamp to %v", got)
	}
	now = now.Add(15 * time.Minute)
	if tab.Evict(now) != 1 {
		t.Fatal("the idle series was not evicted")
	}
	now = now.Add(time.Second)
	tab.Add(key, flow.Original, 100, true, 1)
	if got := created(); !got.Equal(now) {
		t.Fatalf("recreated series: created %v, want %v", got, now)
	}
}
