// Package networks reads podflow's networks file (docs/networks.md) into the
// prefixes of each named network, and knows the prefixes of the built-in
// `private` and `internet` networks, so that a Network peer becomes ipBlocks.
package networks

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"slices"

	"go.yaml.in/yaml/v3"
)

// Private lists the ranges podflow classifies as `private` (docs/networks.md).
var Private = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/24"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("ff02::/16"),
	netip.MustParsePrefix("ff01::/16"),
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// Networks maps a network name to its prefixes, sorted.
type Networks map[string][]netip.Prefix

// Load reads a networks file; an empty path defines no networks.
func Load(path string) (Networks, error) {
	if path == "" {
		return Networks{}, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	n, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

// Parse reads the networks file format.
func Parse(data []byte) (Networks, error) {
	var f struct {
		Networks map[string][]string `yaml:"networks"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	out := Networks{}
	var errs []error
	for name, list := range f.Networks {
		if !nameRE.MatchString(name) || name == "private" || name == "internet" {
			errs = append(errs, fmt.Errorf("network %q: not a usable name", name))
			continue
		}
		for _, s := range list {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				a, aerr := netip.ParseAddr(s)
				if aerr != nil {
					errs = append(errs, fmt.Errorf("network %q: bad CIDR %q", name, s))
					continue
				}
				p = netip.PrefixFrom(a, a.BitLen())
			}
			if p.Addr().Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			if p.Masked() != p {
				errs = append(errs, fmt.Errorf("network %q: %s has host bits set (did you mean %s?)", name, s, p.Masked()))
				continue
			}
			if !slices.Contains(out[name], p) {
				out[name] = append(out[name], p)
			}
		}
		slices.SortFunc(out[name], func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// Names returns the network names, sorted.
func (n Networks) Names() []string {
	var out []string
	for k := range n {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Block is an ipBlock: a CIDR with the ranges carved out of it.
type Block struct {
	CIDR   netip.Prefix
	Except []netip.Prefix
}

// Blocks returns the ipBlocks of a network as podflow classifies it: a named
// network is its prefixes; `private` is the private ranges less the named
// networks inside them; `internet` is everything less the private ranges
// and the named networks (a more specific network wins).
func (n Networks) Blocks(name string) ([]Block, bool) {
	named := func(inside netip.Prefix) []netip.Prefix {
		var out []netip.Prefix
		for _, k := range n.Names() {
			for _, p := range n[k] {
				if p.Bits() > inside.Bits() && inside.Contains(p.Addr()) {
					out = append(out, p)
				}
			}
		}
		return out
	}
	var roots []netip.Prefix
	switch name {
	case "internet":
		roots = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	case "private":
		roots = Private
	default:
		ps, ok := n[name]
		if !ok {
			return nil, false
		}
		roots = ps
	}
	covered := func(root netip.Prefix) bool {
		for k, ps := range n {
			for _, p := range ps {
				if k != name && p.Bits() <= root.Bits() && p.Contains(root.Addr()) {
					return true
				}
			}
		}
		return false
	}
	var out []Block
	for _, r := range roots {
		if (name == "private" || name == "internet") && covered(r) {
			continue // a named network holds all of it
		}
		except := named(r)
		if name == "internet" {
			for _, p := range Private {
				if p.Addr().Is4() == r.Addr().Is4() {
					except = append(except, p)
				}
			}
		}
		except = minimal(except)
		out = append(out, Block{CIDR: r, Except: except})
	}
	return out, true
}

// minimal drops prefixes inside other prefixes of the list and sorts it.
func minimal(ps []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for i, p := range ps {
		inside := false
		for j, q := range ps {
			if i != j && q.Bits() <= p.Bits() && q.Contains(p.Addr()) && (q.Bits() < p.Bits() || j < i) {
				inside = true
				break
			}
		}
		if !inside {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return out
}
