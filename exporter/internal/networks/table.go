// Package networks names the addresses outside the cluster: a peer is
// labelled with the most specific network of the networks file
// (--networks.file) that holds its address, else "private" or "internet".
// A raw external address never becomes a label value.
//
// The file's format is documented in docs/networks.md. Lookups take a
// single binary search over the prefixes flattened into disjoint ranges
// (one table per address family) and never allocate.
//
// "private" is every address that is not reachable across the internet:
// RFC 1918 (10/8, 172.16/12, 192.168/16), RFC 6598 shared address space
// (100.64/10, carrier-grade NAT), IPv6 unique local addresses (fc00::/7),
// loopback (127/8, ::1), link-local unicast (169.254/16, fe80::/10) and
// link-local and interface-local multicast (224.0.0/24, ff01::/16,
// ff02::/16), the unspecified addresses and the IPv4 limited broadcast.
// Everything else is "internet". A named network wins over both, so a
// file can single out part of the private space (a corporate range, the
// cloud metadata address 169.254.169.254).
package networks

import (
	"encoding/binary"
	"net/netip"
	"slices"
)

// Label values for addresses that no named network holds.
const (
	Private  = "private"
	Internet = "internet"
)

// Table classifies addresses. The zero Table and a nil *Table have no
// named networks and classify every address as Private or Internet. A
// Table is immutable and safe for concurrent use.
type Table struct {
	names  []string // by index, in the order of the file
	v4, v6 []span   // sorted by start, disjoint, covering named ranges
}

// span starts a range of addresses that belong to network name (an index
// into Table.names), up to the next span's start; -1 means no network.
type span struct {
	start u128
	name  int
}

// Classify returns the name of the most specific network that holds a,
// else Private or Internet. IPv4-mapped IPv6 addresses are classified as
// IPv4; the zero Addr is Internet.
func (t *Table) Classify(a netip.Addr) string {
	if !a.IsValid() {
		return Internet
	}
	a = a.Unmap()
	if t != nil {
		spans := t.v6
		if a.Is4() {
			spans = t.v4
		}
		if n := lookup(spans, key(a)); n >= 0 {
			return t.names[n]
		}
	}
	if isPrivate(a) {
		return Private
	}
	return Internet
}

// Names returns the names of the networks the table defines, sorted.
func (t *Table) Names() []string {
	if t == nil {
		return nil
	}
	names := slices.Clone(t.names)
	slices.Sort(names)
	return names
}

// lookup returns the network of the last span that starts at or before
// x, or -1.
func lookup(spans []span, x u128) int {
	lo, hi := 0, len(spans) // the first span starting after x is in [lo, hi]
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if x.less(spans[mid].start) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	if lo == 0 {
		return -1
	}
	return spans[lo-1].name
}

var sharedAddressSpace = netip.MustParsePrefix("100.64.0.0/10")

func isPrivate(a netip.Addr) bool {
	return a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() ||
		a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() ||
		a.IsUnspecified() || sharedAddressSpace.Contains(a) ||
		a == netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// u128 is an address as a 128-bit number; IPv4 addresses use the low 32
// bits.
type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || a.hi == b.hi && a.lo < b.lo }

func (a u128) plusOne() u128 {
	if a.lo == ^uint64(0) {
		return u128{a.hi + 1, 0}
	}
	return u128{a.hi, a.lo + 1}
}

func key(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{lo: uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// bounds returns the first and the last address of a masked prefix.
func bounds(p netip.Prefix) (first, last u128) {
	first = key(p.Addr())
	host := p.Addr().BitLen() - p.Bits() // host bits
	last = first
	if host >= 64 {
		last.lo = ^uint64(0)
		last.hi |= uint64(1)<<(host-64) - 1 // a shift by 64 gives 0: all ones
	} else {
		last.lo |= uint64(1)<<host - 1
	}
	return first, last
}
