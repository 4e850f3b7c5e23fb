package networks

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
)

// nameRE is what a network name may be: a label value that reads well.
var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// checkName reports why name cannot name a network, or nil.
func checkName(name string) error {
	switch {
	case name == Private || name == Internet:
		return fmt.Errorf("network name %q is reserved", name)
	case !nameRE.MatchString(name):
		return fmt.Errorf("bad network name %q: use 1 to 63 lowercase letters, digits, '-' and '_', starting with a letter or digit", name)
	}
	return nil
}

// parsePrefix reads a CIDR prefix or a single address (a /32 or /128).
// IPv4-mapped IPv6 prefixes become IPv4 prefixes; host bits must be zero.
func parsePrefix(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return p, fmt.Errorf("bad CIDR %q: %w", s, err)
		}
		if m := p.Masked(); m != p {
			return p, fmt.Errorf("bad CIDR %q: host bits are set (did you mean %s?)", s, m)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return p, fmt.Errorf("bad CIDR %q: %w", s, err)
		}
		if a.Zone() != "" {
			return p, fmt.Errorf("bad CIDR %q: an address with a zone", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	return normalize(p, s)
}

func normalize(p netip.Prefix, orig string) (netip.Prefix, error) {
	if !p.IsValid() {
		return p, fmt.Errorf("bad CIDR %q", orig)
	}
	p = p.Masked()
	// A masked prefix that is still IPv4-mapped is /96 or longer.
	if a := p.Addr(); a.Is4In6() {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p, nil
}

// builder collects networks and their prefixes, then flattens them into
// a Table. where says where a name or prefix was defined, for errors.
type builder struct {
	names  []string
	index  map[string]int
	where  []string               // by network index
	owners map[netip.Prefix]owner // first definition of each prefix
	errs   []error
}

type owner struct {
	name  int
	where string
}

func newBuilder() *builder {
	return &builder{index: map[string]int{}, owners: map[netip.Prefix]owner{}}
}

// network starts network name; it returns its index, or -1 after
// recording an error.
func (b *builder) network(name, where string) int {
	if err := checkName(name); err != nil {
		b.errs = append(b.errs, fmt.Errorf("%s: %w", where, err))
		return -1
	}
	if i, ok := b.index[name]; ok {
		b.errs = append(b.errs, fmt.Errorf("%s: duplicate network %q (first defined at %s)", where, name, b.where[i]))
		return -1
	}
	i := int(len(b.names))
	b.names = append(b.names, name)
	b.where = append(b.where, where)
	b.index[name] = i
	return i
}

// prefix adds p to network n. Listing a prefix twice in one network is
// harmless; in two networks it is ambiguous and an error.
func (b *builder) prefix(n int, p netip.Prefix, where string) {
	if o, ok := b.owners[p]; ok {
		if o.name != n {
			b.errs = append(b.errs, fmt.Errorf("%s: %s is in network %q and in network %q (at %s)",
				where, p, b.names[n], b.names[o.name], o.where))
		}
		return
	}
	b.owners[p] = owner{name: n, where: where}
}

func (b *builder) table() (*Table, error) {
	if len(b.errs) > 0 {
		return nil, errors.Join(b.errs...)
	}
	t := &Table{names: b.names}
	var v4, v6 []entry
	for p, o := range b.owners {
		first, last := bounds(p)
		e := entry{first: first, last: last, bits: p.Bits(), name: o.name}
		if p.Addr().Is4() {
			v4 = append(v4, e)
		} else {
			v6 = append(v6, e)
		}
	}
	t.v4 = flatten(v4, u128{lo: 1<<32 - 1})
	t.v6 = flatten(v6, u128{^uint64(0), ^uint64(0)})
	return t, nil
}

type entry struct {
	first, last u128
	bits        int
	name        int
}

// flatten turns distinct prefixes of one family (max is its last
// address) into disjoint spans, each named after the longest prefix that
// covers it. Two prefixes are either disjoint or nested, so after sorting
// by first address and then by length a stack of the open prefixes knows
// the most specific one at every point.
func flatten(entries []entry, max u128) []span {
	slices.SortFunc(entries, func(a, b entry) int {
		switch {
		case a.first.less(b.first):
			return -1
		case b.first.less(a.first):
			return 1
		}
		return cmp.Compare(a.bits, b.bits)
	})
	var out []span
	emit := func(start u128, name int) {
		if n := len(out); n > 0 && out[n-1].start == start {
			out[n-1].name = name // a later change at the same address wins
			return
		}
		out = append(out, span{start: start, name: name})
	}
	var open []entry
	// closeBefore pops the open prefixes that end before x (all of them
	// when all is set); after each, the enclosing prefix takes over.
	closeBefore := func(x u128, all bool) {
		for len(open) > 0 {
			top := open[len(open)-1]
			if !all && !top.last.less(x) {
				return
			}
			open = open[:len(open)-1]
			if top.last == max {
				continue
			}
			parent := -1
			if len(open) > 0 {
				parent = open[len(open)-1].name
			}
			emit(top.last.plusOne(), parent)
		}
	}
	for _, e := range entries {
		closeBefore(e.first, false)
		emit(e.first, e.name)
		open = append(open, e)
	}
	closeBefore(u128{}, true)
	// Merge neighbours of one network; drop a leading "no network".
	merged := out[:0]
	prev := -1
	for _, s := range out {
		if s.name != prev {
			merged = append(merged, s)
			prev = s.name
		}
	}
	return slices.Clip(merged)
}

// New builds a Table from networks given in code, with the same rules as
// the file: valid, unreserved names and no prefix in two networks.
// Networks are taken in the order of their names.
func New(nets map[string][]netip.Prefix) (*Table, error) {
	b := newBuilder()
	names := make([]string, 0, len(nets))
	for name := range nets {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		n := b.network(name, "network "+name)
		if n < 0 {
			continue
		}
		for _, p := range nets[name] {
			np, err := normalize(p, p.String())
			if err != nil {
				b.errs = append(b.errs, fmt.Errorf("network %s: %w", name, err))
				continue
			}
			b.prefix(n, np, "network "+name)
		}
	}
	return b.table()
}
