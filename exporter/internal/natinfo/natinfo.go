// Package natinfo names the destination a client dialled before
// destination NAT (a Service's ClusterIP, node port or load balancer
// address) on kernels whose NFLOG messages carry no conntrack tuple.
//
// The nftables table then logs each connection's first packet twice:
// before DNAT (prefix "p", at prerouting and output, priority dstnat - 1)
// and after it (in podflow's postrouting or input chain, with the DNAT
// flag when this node translated it). Both records travel through the
// same NFLOG group, in the order the kernel logged them, so the pre-DNAT
// record always arrives first. Neither NAT step has changed the source
// yet at either point, so the two records share the client's address and
// port: that is the key that joins them. From then on the connection is
// known by its post-DNAT five-tuple, which every later packet carries (in
// one direction or the other).
//
// The Table runs on capture's goroutine, between decode and aggregation:
// no lock, no system call, no allocation in steady state, and a fixed
// bound on memory. What it cannot name (the first packet was lost or the
// connection outlived the table's memory) stays unnamed and is counted.
package natinfo

import (
	"net/netip"
	"sync/atomic"

	"github.com/podflow/podflow/exporter/internal/flow"
)

// DefaultConnections is how many translated connections a Table
// remembers by default: about 100 bytes each.
const DefaultConnections = 65536

// Stats are the Table's self-metrics.
type Stats struct {
	// Named counts translated packets whose pre-DNAT destination was
	// known.
	Named uint64
	// Missed counts translated packets whose pre-DNAT destination was
	// not: the connection's first packet never arrived (lost, or logged
	// before podflow started) or the Table forgot it.
	Missed uint64
	// Forgotten counts connections dropped to stay within the bound.
	Forgotten uint64
}

// client is a connection's source before any NAT. Addresses are kept as
// 16 bytes (IPv4 mapped): plain memory hashes faster than netip.Addr.
type client struct {
	addr  [16]byte
	port  uint16
	proto flow.Protocol
}

// conn is a connection after DNAT, in its original direction.
type conn struct {
	client
	dst     [16]byte
	dstPort uint16
}

// dialled is what the client addressed.
type dialled struct {
	addr netip.Addr
	port uint16
}

// Table joins pre-DNAT records with the connection's later packets. Its
// methods must be called from one goroutine; Stats from any.
type Table struct {
	max int
	// firstOnly: only first packets are logged after DNAT (connection
	// mode), so no connection is remembered past its first packet.
	firstOnly bool
	// first holds the pre-DNAT destination of first packets whose
	// post-DNAT record has not arrived yet; it is emptied when full.
	first map[client]dialled
	// conns remember translated connections in two generations: when the
	// current one is full it becomes the old one, and what the old one
	// held and nobody used since is forgotten.
	cur, old map[conn]dialled

	named, missed, forgotten atomic.Uint64
}

// New returns a Table that remembers up to max connections (at most 2*max
// briefly, across its two generations); max <= 0 means DefaultConnections.
func New(max int) *Table {
	if max <= 0 {
		max = DefaultConnections
	}
	return &Table{max: max, first: make(map[client]dialled), cur: make(map[conn]dialled), old: make(map[conn]dialled)}
}

// NewFirstOnly returns a Table for connection mode, where the table logs
// only each connection's first packet after DNAT (its bytes are counted
// from conntrack, which names the Service itself): it joins the two
// records of the first packet and remembers nothing after.
func NewFirstOnly(max int) *Table {
	t := New(max)
	t.firstOnly = true
	return t
}

// Remember takes a connection's first packet as logged before DNAT.
func (t *Table) Remember(p *flow.Packet) {
	if !p.Proto.HasPorts() {
		return
	}
	if len(t.first) >= t.max {
		t.forgotten.Add(uint64(len(t.first)))
		clear(t.first)
	}
	t.first[client{p.Src.As16(), p.SrcPort, p.Proto}] = dialled{p.Dst.Unmap(), p.DstPort}
}

// Name sets f.Service and f.ServicePort for a packet of a connection this
// node translated (f.DNAT), when conntrack did not say (f.Service unset).
// p is the packet f was oriented from.
func (t *Table) Name(p *flow.Packet, f *flow.Flow) {
	if !p.Proto.HasPorts() {
		return
	}
	var c conn
	if f.Dir == flow.Original {
		c = conn{client{p.Src.As16(), p.SrcPort, p.Proto}, p.Dst.As16(), p.DstPort}
	} else {
		c = conn{client{p.Dst.As16(), p.DstPort, p.Proto}, p.Src.As16(), p.SrcPort}
	}
	if t.firstOnly {
		t.nameFirst(f, c.client)
		return
	}
	if f.NewConn {
		// The post-DNAT record of a first packet (or a retransmission of
		// one): its pre-DNAT record, if any, came just before. A
		// connection this node did not translate needs none.
		d, ok := t.first[c.client]
		if ok {
			delete(t.first, c.client)
			if f.DNAT {
				t.store(c, d)
			}
		}
	}
	if !f.DNAT || f.Service.IsValid() {
		return
	}
	d, ok := t.cur[c]
	if !ok {
		if d, ok = t.old[c]; ok {
			delete(t.old, c)
			t.store(c, d)
		} else if d, ok = t.first[c.client]; ok {
			// The first packet's post-DNAT record never came (sampled
			// out in the kernel): a later packet takes its place.
			delete(t.first, c.client)
			t.store(c, d)
		}
	}
	if !ok {
		t.missed.Add(1)
		return
	}
	t.named.Add(1)
	f.Service, f.ServicePort = d.addr, d.port
}

// nameFirst names the first packet of a connection from its pre-DNAT
// record and forgets the record.
func (t *Table) nameFirst(f *flow.Flow, cl client) {
	if !f.NewConn {
		return
	}
	d, ok := t.first[cl]
	if ok {
		delete(t.first, cl)
	}
	if !f.DNAT || f.Service.IsValid() {
		return
	}
	if !ok {
		t.missed.Add(1)
		return
	}
	t.named.Add(1)
	f.Service, f.ServicePort = d.addr, d.port
}

// store remembers a translated connection in the current generation.
func (t *Table) store(c conn, d dialled) {
	if len(t.cur) >= t.max {
		t.forgotten.Add(uint64(len(t.old)))
		clear(t.old)
		t.cur, t.old = t.old, t.cur
	}
	t.cur[c] = d
}

// Stats returns the Table's counters.
func (t *Table) Stats() Stats {
	return Stats{Named: t.named.Load(), Missed: t.missed.Load(), Forgotten: t.forgotten.Load()}
}
