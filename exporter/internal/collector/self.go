package collector

import (
	"errors"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	dto "github.com/prometheus/client_model/go"

	"github.com/podflow/podflow/exporter/internal/aggregate"
	"github.com/podflow/podflow/exporter/internal/attribute"
)

// Count is one value of a counter with one label.
type Count struct {
	Label string
	Value uint64
}

// CaptureStats is what the NFLOG reader and the hand-off report.
type CaptureStats struct {
	Received, Lost, Overruns uint64
	// BadBatches counts NFLOG datagrams whose framing was broken (their
	// packets count in Lost).
	BadBatches uint64
	Bound      bool
	// Conntrack is true when NFLOG attaches conntrack data (the original
	// tuple), false when state and direction come from the log prefix
	// alone.
	Conntrack bool
	// Dropped counts packets dropped after reading, by reason
	// (queue_full, malformed, ...).
	Dropped []Count
}

// NftablesStats is what the table's installer reports.
type NftablesStats struct {
	// SyncSuccess counts installs and checks that found the table as
	// built, SyncReinstall checks that rebuilt a missing or changed
	// table, SyncError failures.
	SyncSuccess, SyncReinstall, SyncError uint64
	// Overlay counts the encapsulated packets excluded from the pair
	// counters, by encapsulation.
	Overlay []Count
}

// ResourceStats is the state of one watched Kubernetes resource.
type ResourceStats struct {
	Resource string
	Synced   bool
	Errors   uint64
}

// Sources are the readers of every component's Stats. A nil reader
// leaves its metrics out (for example the Kubernetes ones with static
// identities). Every reader must be cheap and must not block: it is
// called on each scrape.
type Sources struct {
	Capture     func() CaptureStats
	Decode      func() []Count // errors by reason
	Attribution func() attribute.Stats
	// Ignored counts packets seen but not counted here, by reason, on
	// top of attribution's other_node_reports.
	Ignored    func() []Count
	Aggregate  func() aggregate.Stats
	Nftables   func() NftablesStats
	Kubernetes func() []ResourceStats
	// SampleRate is the 1-in-N sampling rate (--capture.sample-rate).
	SampleRate uint32
	// ServiceNaming says how the Services clients dialled are named.
	ServiceNaming func() ServiceNamingStats
	// Mode is the capture mode (--capture.mode): ModePacket or
	// ModeConnection; "" leaves podflow_capture_mode out.
	Mode string
	// Conntrack reads the conntrack source in connection mode; nil in
	// packet mode.
	Conntrack func() ConntrackStats
}

// The capture modes, the values of podflow_capture_mode's mode label.
const (
	ModePacket     = "packet"
	ModeConnection = "connection"
)

// ConntrackStats is what connection mode's conntrack source and the
// hand-off of its deltas report.
type ConntrackStats struct {
	// AccountingEnabled: the kernel counts bytes and packets per
	// connection (nf_conntrack_acct); EnabledByPodflow: podflow turned
	// it on.
	AccountingEnabled, EnabledByPodflow bool
	// Events counts destroy events read; Overruns, overruns of the event
	// socket (the kernel dropped at least one event each time);
	// MalformedEvents, event messages that could not be decoded.
	Events, Overruns, MalformedEvents uint64
	// Dumps counts periodic reads of the live connections; DumpErrors,
	// the ones that failed.
	Dumps, DumpErrors uint64
	// Tracked is how many connections the source follows.
	Tracked uint64
	// Lost counts connections whose last counts were never read.
	Lost uint64
	// CounterResets counts connection totals that went backwards
	// (someone zeroed the kernel's counters).
	CounterResets uint64
	// QueueFull counts counter updates (one per direction of a delta)
	// dropped because the hand-off queue was full.
	QueueFull uint64
}

// How a node names the Service a client dialled before DNAT: the values
// of podflow_service_naming's method label.
const (
	NamingGlue      = "glue"      // NFLOG's conntrack tuple
	NamingConntrack = "conntrack" // connection mode: conntrack's original tuple
	NamingLog       = "log"       // the first packet logged before DNAT
	NamingNone      = "none"
)

// ServiceNamingStats is the state of Service naming.
type ServiceNamingStats struct {
	// Method is NamingGlue, NamingLog or NamingNone ("" is none).
	Method string
	// Misses counts translated packets whose Service was not known;
	// Forgotten, connections dropped to stay within the memory bound.
	Misses, Forgotten uint64
}

type self struct {
	src Sources

	received, lost, dropped, overruns, bound, sampleRate  *prometheus.Desc
	badBatches, conntrack                                 *prometheus.Desc
	decodeErrors, misses, ignored, overlay                *prometheus.Desc
	series, seriesLimit, seriesDropped, seriesEvicted     *prometheus.Desc
	nftSyncs, kubeSynced, kubeErrors                      *prometheus.Desc
	naming, namingMisses, namingForgotten                 *prometheus.Desc
	mode, ctAccounting, ctEvents, ctOverruns, ctMalformed *prometheus.Desc
	ctDumps, ctDumpErrors, ctTracked, ctLost, ctDropped   *prometheus.Desc
	ctResets                                              *prometheus.Desc
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, nil)
}

func newSelf(src *Sources) *self {
	return &self{
		src:           *src,
		received:      desc("capture_packets_received_total", "Packets read from the NFLOG group."),
		lost:          desc("capture_packets_lost_total", "Packets the kernel logged but podflow never read (NFLOG sequence gaps)."),
		dropped:       desc("capture_packets_dropped_total", "Packets read but dropped before counting, by reason.", "reason"),
		overruns:      desc("capture_overruns_total", "Receive buffer overruns (ENOBUFS) on the NFLOG socket."),
		badBatches:    desc("capture_malformed_batches_total", "NFLOG datagrams whose netlink framing was broken; the packets in them count as lost."),
		bound:         desc("capture_bound", "1 while podflow owns the NFLOG group, else 0."),
		conntrack:     desc("capture_conntrack", "1 when NFLOG attaches conntrack data (the original tuple: destination_service), 0 when state and direction come from the log prefix alone."),
		sampleRate:    desc("capture_sample_rate", "The kernel logs one packet in this many; counters are scaled by it."),
		decodeErrors:  desc("decode_errors_total", "Packets that could not be decoded, by reason.", "reason"),
		misses:        desc("attribution_misses_total", "Packets whose source or destination address no source of identity knew, by side.", "side"),
		ignored:       desc("packets_ignored_total", "Packets seen but not counted on this node, by reason.", "reason"),
		overlay:       desc("overlay_packets_total", "Encapsulated packets between nodes excluded from the pair counters, by encapsulation.", "encapsulation"),
		series:        desc("series", "Active flow series (label sets)."),
		seriesLimit:   desc("series_limit", "The cap on flow series (--metrics.max-series; 0: no cap)."),
		seriesDropped: desc("series_dropped_total", "Packets not counted because their new series would exceed the cap."),
		seriesEvicted: desc("series_evicted_total", "Flow series removed, by reason (idle: no packet for the idle timeout; deleted: an endpoint went away).", "reason"),
		nftSyncs:      desc("nftables_syncs_total", "Installs and checks of the nftables table, by result (success: as built; reinstall: rebuilt a missing or changed table; error).", "result"),
		kubeSynced:    desc("kubernetes_synced", "1 once the informer of the resource has synced, else 0.", "resource"),
		kubeErrors:    desc("kubernetes_errors_total", "List and watch failures, by resource.", "resource"),
		naming: desc("service_naming", "1 for the method this node names the Service a client dialled by "+
			"(glue: NFLOG's conntrack tuple; log: the first packet logged before DNAT; conntrack: connection mode, conntrack's original tuple; none), else 0.", "method"),
		namingMisses:    desc("service_naming_misses_total", "Packets of connections this node translated whose pre-DNAT destination was not known."),
		namingForgotten: desc("service_naming_forgotten_total", "Translated connections forgotten to keep the naming table within its bound."),
		mode:            desc("capture_mode", "1 for the capture mode podflow runs in (packet: every packet logged; connection: bytes and packets from conntrack), else 0.", "mode"),
		ctAccounting: desc("conntrack_accounting_enabled", "1 when the kernel counts bytes and packets per connection (nf_conntrack_acct), else 0; by_podflow says whether podflow turned it on.",
			"by_podflow"),
		ctEvents:     desc("conntrack_events_total", "Conntrack events read (connections that ended)."),
		ctOverruns:   desc("conntrack_overruns_total", "Overruns (ENOBUFS) of the conntrack event socket: the kernel dropped at least one event each time."),
		ctMalformed:  desc("conntrack_events_malformed_total", "Conntrack event messages that could not be decoded; their connections' last counts are missing."),
		ctResets:     desc("conntrack_accounting_resets_total", "Connection counters that went backwards (zeroed by another program); the new totals are counted whole."),
		ctDumps:      desc("conntrack_dumps_total", "Periodic reads of the live connections' counters."),
		ctDumpErrors: desc("conntrack_dump_errors_total", "Periodic reads of the live connections' counters that failed."),
		ctTracked:    desc("conntrack_connections", "Connections whose counters podflow follows."),
		ctLost:       desc("conntrack_connections_lost_total", "Connections whose last counts were never read (their end event lost, or gone between two dumps)."),
		ctDropped:    desc("conntrack_updates_dropped_total", "Counter updates of connections (one per direction and read) dropped before counting, by reason.", "reason"),
	}
}

func (s *self) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		s.received, s.lost, s.dropped, s.overruns, s.bound, s.sampleRate,
		s.badBatches, s.conntrack,
		s.decodeErrors, s.misses, s.ignored, s.overlay,
		s.series, s.seriesLimit, s.seriesDropped, s.seriesEvicted,
		s.nftSyncs, s.kubeSynced, s.kubeErrors,
		s.naming, s.namingMisses, s.namingForgotten,
		s.mode, s.ctAccounting, s.ctEvents, s.ctOverruns, s.ctMalformed,
		s.ctDumps, s.ctDumpErrors, s.ctTracked, s.ctLost, s.ctDropped, s.ctResets,
	} {
		ch <- d
	}
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (s *self) Collect(ch chan<- prometheus.Metric) {
	rate := s.src.SampleRate
	if rate == 0 {
		rate = 1
	}
	gauge(ch, s.sampleRate, float64(rate))
	if s.src.Capture != nil {
		c := s.src.Capture()
		counter(ch, s.received, c.Received)
		counter(ch, s.lost, c.Lost)
		counter(ch, s.overruns, c.Overruns)
		counter(ch, s.badBatches, c.BadBatches)
		gauge(ch, s.bound, b2f(c.Bound))
		gauge(ch, s.conntrack, b2f(c.Conntrack))
		for _, d := range c.Dropped {
			counter(ch, s.dropped, d.Value, d.Label)
		}
	}
	if s.src.Decode != nil {
		for _, d := range s.src.Decode() {
			counter(ch, s.decodeErrors, d.Value, d.Label)
		}
	}
	if s.src.Attribution != nil {
		a := s.src.Attribution()
		counter(ch, s.misses, a.SourceMisses, "source")
		counter(ch, s.misses, a.DestinationMisses, "destination")
		counter(ch, s.ignored, a.OtherNodeReports, "other_node_reports")
		counter(ch, s.ignored, a.LinkLocal, "link_local")
		counter(ch, s.ignored, a.Multicast, "multicast")
	}
	if s.src.Ignored != nil {
		for _, c := range s.src.Ignored() {
			counter(ch, s.ignored, c.Value, c.Label)
		}
	}
	if s.src.Aggregate != nil {
		a := s.src.Aggregate()
		gauge(ch, s.series, float64(a.Series))
		gauge(ch, s.seriesLimit, float64(a.Limit))
		counter(ch, s.seriesDropped, a.Dropped)
		counter(ch, s.seriesEvicted, a.EvictedIdle, "idle")
		counter(ch, s.seriesEvicted, a.EvictedDeleted, "deleted")
	}
	if s.src.Nftables != nil {
		n := s.src.Nftables()
		counter(ch, s.nftSyncs, n.SyncSuccess, "success")
		counter(ch, s.nftSyncs, n.SyncReinstall, "reinstall")
		counter(ch, s.nftSyncs, n.SyncError, "error")
		for _, o := range n.Overlay {
			counter(ch, s.overlay, o.Value, o.Label)
		}
	}
	if s.src.Mode != "" {
		for _, m := range []string{ModePacket, ModeConnection} {
			gauge(ch, s.mode, b2f(s.src.Mode == m), m)
		}
	}
	if s.src.Conntrack != nil {
		c := s.src.Conntrack()
		gauge(ch, s.ctAccounting, b2f(c.AccountingEnabled), strconv.FormatBool(c.EnabledByPodflow))
		counter(ch, s.ctEvents, c.Events)
		counter(ch, s.ctOverruns, c.Overruns)
		counter(ch, s.ctMalformed, c.MalformedEvents)
		counter(ch, s.ctResets, c.CounterResets)
		counter(ch, s.ctDumps, c.Dumps)
		counter(ch, s.ctDumpErrors, c.DumpErrors)
		gauge(ch, s.ctTracked, float64(c.Tracked))
		counter(ch, s.ctLost, c.Lost)
		counter(ch, s.ctDropped, c.QueueFull, "queue_full")
	}
	if s.src.ServiceNaming != nil {
		n := s.src.ServiceNaming()
		for _, m := range []string{NamingGlue, NamingLog, NamingConntrack, NamingNone} {
			gauge(ch, s.naming, b2f(n.Method == m || (n.Method == "" && m == NamingNone)), m)
		}
		counter(ch, s.namingMisses, n.Misses)
		counter(ch, s.namingForgotten, n.Forgotten)
	}
	if s.src.Kubernetes != nil {
		for _, r := range s.src.Kubernetes() {
			gauge(ch, s.kubeSynced, b2f(r.Synced), r.Resource)
			counter(ch, s.kubeErrors, r.Errors, r.Resource)
		}
	}
}

// NewSelfRegistry returns the registry of podflow's own health: the
// self-metrics of src, podflow_build_info, and the Go and process
// collectors.
func NewSelfRegistry(src *Sources) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		newSelf(src),
		versioncollector.NewCollector(namespace),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// Gatherers serves the flow series and the self registry together, as
// prometheus.Gatherers would, but lets the flows skip the registry's
// per-sample checks (see Flows.Gather). The self registry is checked as
// usual.
type Gatherers struct {
	Flows *Flows
	Self  prometheus.Gatherer
}

// Gather returns the self-metrics, then the flow families.
func (g Gatherers) Gather() ([]*dto.MetricFamily, error) {
	self, err := g.Self.Gather()
	flows, ferr := g.Flows.Gather()
	return append(self, flows...), errors.Join(err, ferr)
}
