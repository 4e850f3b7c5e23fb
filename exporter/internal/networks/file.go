package networks

import (
	"errors"
	"fmt"
	"os"

	"go.yaml.in/yaml/v3"
)

// Load reads a networks file. Every error names the file and the line
// of the offending entry; all errors of a file are reported together.
func Load(path string) (*Table, error) {
	data, err := os.ReadFile(path) //nolint:gosec // the path is the operator's --networks.file
	if err != nil {
		return nil, fmt.Errorf("networks file: %w", err)
	}
	return Parse(path, data)
}

// Parse reads the contents of a networks file; file names it in errors.
//
// The format:
//
//	networks:
//	  corp: [10.0.0.0/8, "fd00:c0:ffee::/48"]
//	  denylist-tor:
//	    - 203.0.113.0/24
//	    - 198.51.100.7        # a single address is a /32 (or /128)
//
// The only top-level key is "networks", a mapping from network name to a
// list of CIDR prefixes. The order of networks and prefixes does not
// matter. An empty file defines no networks.
func Parse(file string, data []byte) (*Table, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	b := newBuilder()
	at := func(n *yaml.Node) string { return fmt.Sprintf("%s:%d", file, n.Line) }
	fail := func(n *yaml.Node, format string, args ...any) {
		b.errs = append(b.errs, fmt.Errorf("%s: "+format, append([]any{at(n)}, args...)...))
	}
	if len(doc.Content) == 0 { // an empty file or only comments
		return b.table()
	}
	root := resolve(doc.Content[0])
	if isNull(root) {
		return b.table()
	}
	if root.Kind != yaml.MappingNode {
		fail(root, `want a mapping with the key "networks"`)
		return nil, errors.Join(b.errs...)
	}
	seen := false
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], resolve(root.Content[i+1])
		switch {
		case k.Value != "networks":
			fail(k, `unknown key %q (the only key is "networks")`, k.Value)
		case seen:
			fail(k, `duplicate key "networks"`)
		default:
			seen = true
			parseNetworks(b, v, at, fail)
		}
	}
	return b.table()
}

// parseNetworks reads the mapping under the key "networks" into b.
func parseNetworks(b *builder, nets *yaml.Node, at func(*yaml.Node) string, fail func(*yaml.Node, string, ...any)) {
	switch {
	case isNull(nets):
		return
	case nets.Kind != yaml.MappingNode:
		fail(nets, "networks: want a mapping from network name to a list of CIDRs")
		return
	}
	for i := 0; i+1 < len(nets.Content); i += 2 {
		k, v := nets.Content[i], resolve(nets.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			fail(k, "want a network name")
			continue
		}
		n := b.network(k.Value, at(k))
		switch {
		case n < 0:
		case isNull(v): // a network without prefixes yet
		case v.Kind != yaml.SequenceNode:
			fail(v, "network %q: want a list of CIDRs", k.Value)
		default:
			for _, item := range v.Content {
				item = resolve(item)
				if item.Kind != yaml.ScalarNode {
					fail(item, "network %q: want a CIDR, not a %s", k.Value, kindName(item.Kind))
					continue
				}
				p, err := parsePrefix(item.Value)
				if err != nil {
					fail(item, "network %q: %v", k.Value, err)
					continue
				}
				b.prefix(n, p, at(item))
			}
		}
	}
}

// resolve follows an alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	}
	return "YAML node"
}
