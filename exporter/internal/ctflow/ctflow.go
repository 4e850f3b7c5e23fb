// Package ctflow turns conntrack's per-connection counters into flows, in
// connection mode: what orient does for a logged packet, it does for the
// bytes and packets one connection exchanged since it was last read.
//
// A conntrack entry holds the connection's two tuples. The original tuple
// is what the initiator sent, before any NAT: its source is the
// initiator, its destination what the initiator dialled (a Service's
// ClusterIP, node port or load balancer address when this node
// translated it). The reply tuple is what the responder sends back,
// after NAT: its source is the real responder (the backend pod after
// DNAT) and its port the responder's port. A delta becomes up to two
// flows, one per direction that carried packets, with exactly the
// initiator, responder, port, Service and DNAT flag that orient gives the
// packets of the same connection in packet mode (podflow's chains see
// them after DNAT and before SNAT), so that both modes count into the
// same series.
//
// The Converter also leaves out what packet mode's nftables table leaves
// out: loopback traffic (both ends local to this network namespace),
// the encapsulations between nodes (--capture.overlay, counted per
// encapsulation as the table counts them) and, with sampling, all but
// one connection in N (chosen by the connection's id, so that every delta
// of a connection is kept or none).
package ctflow

import (
	"math"
	"net/netip"
	"sync/atomic"

	"github.com/podflow/podflow/exporter/internal/conntrack"
	"github.com/podflow/podflow/exporter/internal/flow"
)

// Overlay is an encapsulation between nodes that the table excludes:
// IP protocol Proto and, when Port is not zero, that destination port.
type Overlay struct {
	Name  string
	Proto uint8
	Port  uint16
}

// LocalAddrs tells the addresses of this network namespace
// (*localaddr.Set). Local must be safe to call from the conntrack
// goroutine while the set is refreshed.
type LocalAddrs interface {
	Local(netip.Addr) bool
}

// Config is what the Converter leaves out.
type Config struct {
	// Overlays are the --capture.overlay encapsulations.
	Overlays []Overlay
	// SampleRate keeps one connection in SampleRate; 0 and 1 keep all.
	SampleRate uint32
	// Local names this namespace's addresses; nil leaves no traffic out
	// as loopback.
	Local LocalAddrs
}

// Stats are the Converter's counters.
type Stats struct {
	// Overlay counts the packets left out per encapsulation, in the
	// order of the names in OverlayNames.
	Overlay []uint64
	// Loopback counts deltas of connections between two local addresses.
	Loopback uint64
	// SampledOut counts deltas of connections sampling left out.
	SampledOut uint64
}

// Converter turns deltas into flows. Convert must be called from one
// goroutine at a time; Stats from any.
type Converter struct {
	cfg Config
	// names are the distinct overlay names; idx maps each overlay of
	// cfg.Overlays to its name's counter.
	names   []string
	idx     []int
	overlay []atomic.Uint64

	loopback, sampledOut atomic.Uint64
}

// New returns a Converter for cfg.
func New(cfg Config) *Converter {
	c := &Converter{cfg: cfg}
	for _, o := range cfg.Overlays {
		i := 0
		for i < len(c.names) && c.names[i] != o.Name {
			i++
		}
		if i == len(c.names) {
			c.names = append(c.names, o.Name)
		}
		c.idx = append(c.idx, i)
	}
	c.overlay = make([]atomic.Uint64, len(c.names))
	return c
}

// OverlayNames returns the distinct encapsulation names, in the order of
// Stats().Overlay.
func (c *Converter) OverlayNames() []string { return c.names }

// Convert appends the flows of d to dst and returns it: one per direction
// that carried packets (more when a count exceeds a flow's 32 bits), none
// for a connection the table would not have logged. Flows never open a
// connection: in connection mode the table logs each connection's first
// packet, which counts it.
func (c *Converter) Convert(dst []flow.Flow, d *conntrack.Delta) []flow.Flow {
	if r := c.cfg.SampleRate; r > 1 && sample(d.ID)%r != 0 {
		c.sampledOut.Add(1)
		return dst
	}
	if c.cfg.Local != nil && c.cfg.Local.Local(d.Orig.Src) && c.cfg.Local.Local(d.Reply.Src) {
		// Every packet of it crossed lo, which the table skips.
		c.loopback.Add(1)
		return dst
	}
	f := flow.Flow{
		Initiator: d.Orig.Src.Unmap(),
		Responder: d.Reply.Src.Unmap(),
		Port:      d.Reply.SrcPort,
		Proto:     flow.Protocol(d.Proto),
		DNAT:      d.Status&conntrack.StatusDstNAT != 0,
	}
	if svc := d.Orig.Dst.Unmap(); f.DNAT && svc.IsValid() && svc != f.Responder {
		f.Service, f.ServicePort = svc, d.Orig.DstPort
	}
	// The packets of each direction as podflow's chains see them (after
	// DNAT, before SNAT): the original direction goes to the responder's
	// port, the reply direction to the initiator's own port.
	if !c.overlay1(d.Proto, d.Reply.SrcPort, d.OrigPackets) {
		f.Dir = flow.Original
		dst = appendCounts(dst, &f, d.OrigPackets, d.OrigBytes)
	}
	if !c.overlay1(d.Proto, d.Orig.SrcPort, d.ReplyPackets) {
		f.Dir = flow.Reply
		dst = appendCounts(dst, &f, d.ReplyPackets, d.ReplyBytes)
	}
	return dst
}

// overlay1 reports whether packets of protocol proto to port are an
// excluded encapsulation, and counts them.
func (c *Converter) overlay1(proto uint8, port uint16, packets uint64) bool {
	for i, o := range c.cfg.Overlays {
		if o.Proto == proto && (o.Port == 0 || o.Port == port) {
			c.overlay[c.idx[i]].Add(packets)
			return true
		}
	}
	return false
}

// appendCounts appends f with packets and bytes, in as many flows as
// 32-bit counts need.
func appendCounts(dst []flow.Flow, f *flow.Flow, packets, bytes uint64) []flow.Flow {
	for packets > 0 || bytes > 0 {
		p, b := min(packets, math.MaxUint32), min(bytes, math.MaxUint32)
		f.Packets, f.Bytes = uint32(p), uint32(b) //nolint:gosec // clamped just above
		dst = append(dst, *f)
		packets, bytes = packets-p, bytes-b
	}
	return dst
}

// sample spreads connection ids over the sampling rate's residues.
func sample(id uint32) uint32 {
	return uint32((uint64(id) * 0x9e3779b97f4a7c15) >> 32) //nolint:gosec // the high half of the product
}

// Stats returns the Converter's counters.
func (c *Converter) Stats() Stats {
	s := Stats{Overlay: make([]uint64, len(c.overlay)), Loopback: c.loopback.Load(), SampledOut: c.sampledOut.Load()}
	for i := range c.overlay {
		s.Overlay[i] = c.overlay[i].Load()
	}
	return s
}
