// Package collector exposes podflow's counters to Prometheus: the flow
// series from the aggregation table's snapshot, and the self-metrics read
// from each component's Stats.
package collector

import (
	"slices"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/podflow/podflow/exporter/internal/aggregate"
	"github.com/podflow/podflow/exporter/internal/attribute"
	"github.com/podflow/podflow/exporter/internal/flow"
)

const namespace = "podflow"

// Snapshotter copies the current series (implemented by *aggregate.Table).
type Snapshotter interface {
	Snapshot(dst []aggregate.Series) []aggregate.Series
}

// pairLabels are the labels of every flow series, in exposition order.
var pairLabels = []string{
	"source_namespace", "source_workload", "source_kind",
	"destination_namespace", "destination_workload", "destination_kind",
	"destination_port", "protocol",
}

const (
	helpBytes       = "L3 bytes between the source and the destination, by direction (original: source to destination)."
	helpPackets     = "Packets between the source and the destination, by direction (original: source to destination)."
	helpConnections = "Connections the source opened to the destination."
)

// labelFields are the values each series fills, in this order.
var labelFields = [...]string{
	"source_namespace", "source_workload", "source_kind",
	"destination_namespace", "destination_workload", "destination_kind",
	"destination_port", "protocol",
	"source_pod", "destination_pod", "destination_service",
}

const numLabelFields = len(labelFields)

// Flows is the collector of the flow series. Collect copies the table
// under the table's short lock and emits with no lock held.
type Flows struct {
	src    Snapshotter
	labels attribute.Labels

	bytes, packets, connections *prometheus.Desc

	bufs sync.Pool // of *[]aggregate.Series, one per concurrent scrape
}

// NewFlows returns the collector of src's series with the enabled opt-in
// labels.
func NewFlows(src Snapshotter, labels attribute.Labels) *Flows {
	opt := labels.Names()
	directed := append(append(append([]string{}, pairLabels...), "direction"), opt...)
	undirected := append(append([]string{}, pairLabels...), opt...)
	return &Flows{
		src:         src,
		labels:      labels,
		bytes:       prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "bytes_total"), helpBytes, directed, nil),
		packets:     prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "packets_total"), helpPackets, directed, nil),
		connections: prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "connections_total"), helpConnections, undirected, nil),
	}
}

// Describe sends the three flow Descs.
func (c *Flows) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.bytes
	ch <- c.packets
	ch <- c.connections
}

// Collect emits every series of the snapshot.
func (c *Flows) Collect(ch chan<- prometheus.Metric) {
	descs := [...]*prometheus.Desc{famBytes: c.bytes, famPackets: c.packets, famConnections: c.connections}
	c.each(func(fam int, labels []*dto.LabelPair, created *timestamppb.Timestamp, v float64) {
		ch <- &counterMetric{descs[fam], labels, created, v}
	})
}

// The three flow families, in the order each emits.
const (
	famBytes = iota
	famPackets
	famConnections
	numFamilies
)

// each calls emit for every sample of the snapshot, with sorted label
// pairs and the series' created timestamp (nil when unknown), both of
// which emit may keep.
//
// The created timestamp is when the table started the series. A series
// evicted while idle and started again by a later packet comes back with
// a value above zero; its new created timestamp tells Prometheus (with
// created-timestamp zero ingestion) that the counter started from zero
// then, so rate() and increase() count its first packets too.
func (c *Flows) each(emit func(fam int, labels []*dto.LabelPair, created *timestamppb.Timestamp, v float64)) {
	bp, _ := c.bufs.Get().(*[]aggregate.Series)
	if bp == nil {
		bp = new([]aggregate.Series)
	}
	*bp = c.src.Snapshot(*bp)
	defer c.bufs.Put(bp)

	// Label pairs are interned for the scrape: a label value such as a
	// namespace is shared by many series, and each series needs three
	// sorted label lists (two directions, and connections).
	in := newInterner()
	names := c.sortedNames()
	n := len(names) // directed labels; connections have one fewer
	dirAt := slices.Index(names, "direction")
	var values [numLabelFields]string
	fieldOf := make([]int, n)
	for i, name := range names {
		fieldOf[i] = slices.Index(labelFields[:], name)
	}
	// Created timestamps come from slabs too, one per series shared by
	// its five samples.
	var stamps []timestamppb.Timestamp
	for i := range *bp {
		s := &(*bp)[i]
		var created *timestamppb.Timestamp
		if s.Created != 0 {
			if len(stamps) == 0 {
				stamps = make([]timestamppb.Timestamp, min(len(*bp)-i, 1024))
			}
			created, stamps = &stamps[0], stamps[1:]
			created.Seconds, created.Nanos = s.Created/1e9, int32(s.Created%1e9) //nolint:gosec // below 1e9
		}
		k := &s.Key
		values = [numLabelFields]string{
			k.SrcNamespace, k.SrcWorkload, k.SrcKind.String(),
			k.DstNamespace, k.DstWorkload, k.DstKind.String(),
			portString(k.DstPort), k.Proto.String(),
			k.SrcPod, k.DstPod, k.DstService,
		}

		// One allocation for the three lists of this series.
		all := make([]*dto.LabelPair, 3*n-1)
		orig, reply, conns := all[:n:n], all[n:2*n:2*n], all[2*n:]
		j := 0
		for i, name := range names {
			if i == dirAt {
				orig[i] = in.pair("direction", "original")
				reply[i] = in.pair("direction", "reply")
				continue
			}
			lp := in.pair(name, values[fieldOf[i]])
			orig[i], reply[i], conns[j] = lp, lp, lp
			j++
		}
		emit(famBytes, orig, created, float64(s.Bytes[flow.Original]))
		emit(famBytes, reply, created, float64(s.Bytes[flow.Reply]))
		emit(famPackets, orig, created, float64(s.Packets[flow.Original]))
		emit(famPackets, reply, created, float64(s.Packets[flow.Reply]))
		emit(famConnections, conns, created, float64(s.Connections))
	}
	// Drop references to label strings the table may have forgotten.
	clear(*bp)
}

// Gather returns the flow families directly, skipping the registry's
// per-sample consistency checks and sort: the table's keys are unique by
// construction, and the exposition format does not need an order. At
// 100k series this halves the cost of a scrape (BenchmarkScrape).
func (c *Flows) Gather() ([]*dto.MetricFamily, error) {
	fams := make([]*dto.MetricFamily, numFamilies)
	for i, d := range []struct{ name, help string }{
		famBytes:       {"podflow_bytes_total", helpBytes},
		famPackets:     {"podflow_packets_total", helpPackets},
		famConnections: {"podflow_connections_total", helpConnections},
	} {
		fams[i] = &dto.MetricFamily{Name: &d.name, Help: &d.help, Type: dto.MetricType_COUNTER.Enum()}
	}
	// Samples and their values come from slabs, a few allocations per
	// thousand samples rather than two per sample.
	var metrics []dto.Metric
	var counters []dto.Counter
	var vals []float64
	c.each(func(fam int, labels []*dto.LabelPair, created *timestamppb.Timestamp, v float64) {
		if len(metrics) == cap(metrics) {
			metrics, counters, vals = make([]dto.Metric, 0, 1024), make([]dto.Counter, 0, 1024), make([]float64, 0, 1024)
		}
		vals = append(vals, v)
		counters = append(counters, dto.Counter{Value: &vals[len(vals)-1], CreatedTimestamp: created})
		metrics = append(metrics, dto.Metric{Label: labels, Counter: &counters[len(counters)-1]})
		fams[fam].Metric = append(fams[fam].Metric, &metrics[len(metrics)-1])
	})
	out := fams[:0]
	for _, f := range fams {
		if len(f.Metric) > 0 {
			out = append(out, f)
		}
	}
	return out, nil
}

// sortedNames returns the directed label names in the sorted order the
// exposition wants.
func (c *Flows) sortedNames() []string {
	names := append(append(append([]string{}, pairLabels...), "direction"), c.labels.Names()...)
	slices.Sort(names)
	return names
}

// counterMetric is one flow counter with its labels already sorted and
// interned; it saves the const metric's per-sample label copies. It is
// what prometheus.NewConstMetricWithCreatedTimestamp would build.
type counterMetric struct {
	desc    *prometheus.Desc
	labels  []*dto.LabelPair
	created *timestamppb.Timestamp
	value   float64
}

func (m *counterMetric) Desc() *prometheus.Desc { return m.desc }

func (m *counterMetric) Write(out *dto.Metric) error {
	out.Label = m.labels
	v := m.value
	out.Counter = &dto.Counter{Value: &v, CreatedTimestamp: m.created}
	return nil
}

type labelPair struct{ name, value string }

type interner map[labelPair]*dto.LabelPair

func newInterner() interner { return interner{} }

func (in interner) pair(name, value string) *dto.LabelPair {
	k := labelPair{name, value}
	if lp, ok := in[k]; ok {
		return lp
	}
	lp := &dto.LabelPair{Name: &k.name, Value: &k.value}
	in[k] = lp
	return lp
}

// portStrings caches the label values of the well-known ports; others
// are formatted per scrape.
var portStrings = func() (p [1024]string) {
	for i := range p {
		p[i] = strconv.Itoa(i)
	}
	return p
}()

func portString(port uint16) string {
	if int(port) < len(portStrings) {
		return portStrings[port]
	}
	return strconv.Itoa(int(port))
}
