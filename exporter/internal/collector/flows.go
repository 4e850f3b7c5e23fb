// Package collector exposes podflow's counters to Prometheus: the flow
// series from the aggregation table's snapshot, and the self-metrics read
// from each component's Stats.
package collector

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

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
		src:    src,
		labels: labels,
		bytes: prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "bytes_total"),
			"L3 bytes between the source and the destination, by direction (original: source to destination).", directed, nil),
		packets: prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "packets_total"),
			"Packets between the source and the destination, by direction (original: source to destination).", directed, nil),
		connections: prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "connections_total"),
			"Connections the source opened to the destination.", undirected, nil),
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
	bp, _ := c.bufs.Get().(*[]aggregate.Series)
	if bp == nil {
		bp = new([]aggregate.Series)
	}
	*bp = c.src.Snapshot(*bp)
	defer c.bufs.Put(bp)

	nOpt := len(c.labels.Names())
	// values holds the directed label values; the undirected ones are the
	// same without "direction".
	values := make([]string, len(pairLabels)+1+nOpt)
	undirected := make([]string, len(pairLabels)+nOpt)
	for i := range *bp {
		s := &(*bp)[i]
		k := &s.Key
		values[0] = k.SrcNamespace
		values[1] = k.SrcWorkload
		values[2] = k.SrcKind.String()
		values[3] = k.DstNamespace
		values[4] = k.DstWorkload
		values[5] = k.DstKind.String()
		values[6] = portString(k.DstPort)
		values[7] = k.Proto.String()
		o := len(pairLabels) + 1
		if c.labels.SourcePod {
			values[o] = k.SrcPod
			o++
		}
		if c.labels.DestinationPod {
			values[o] = k.DstPod
			o++
		}
		if c.labels.DestinationService {
			values[o] = k.DstService
		}
		copy(undirected, values[:len(pairLabels)])
		copy(undirected[len(pairLabels):], values[len(pairLabels)+1:])

		for _, d := range [...]flow.Direction{flow.Original, flow.Reply} {
			values[len(pairLabels)] = d.String()
			ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(s.Bytes[d]), values...)
			ch <- prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(s.Packets[d]), values...)
		}
		ch <- prometheus.MustNewConstMetric(c.connections, prometheus.CounterValue, float64(s.Connections), undirected...)
	}
	// Drop references to label strings the table may have forgotten.
	clear(*bp)
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
