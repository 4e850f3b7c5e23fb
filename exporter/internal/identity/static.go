// Package identity is the static source of identity: a YAML file that
// names the endpoints behind addresses and CIDRs, for plain Linux hosts
// and for tests. Addresses it does not list are classified as networks.
package identity

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/podflow/podflow/exporter/internal/flow"
	"github.com/podflow/podflow/exporter/internal/networks"
)

// Static resolves addresses from a fixed list of endpoints, then from the
// networks table (nil: private or internet). It is read-only after Load
// and safe for concurrent use.
type Static struct {
	exact    map[netip.Addr]flow.Endpoint
	prefixes []prefixEndpoint // most specific first
	networks *networks.Table
}

type prefixEndpoint struct {
	prefix netip.Prefix
	ep     flow.Endpoint
}

// file is the YAML layout:
//
//	endpoints:
//	  - addresses: [10.0.1.2, "fd00::2", 10.0.2.0/24]
//	    namespace: shop
//	    workload: frontend
//	    kind: Deployment
//	    pod: frontend-1
//	    node: node-a
type file struct {
	Endpoints []entry `yaml:"endpoints"`
}

type entry struct {
	Addresses []address `yaml:"addresses"`
	Namespace string    `yaml:"namespace"`
	Workload  string    `yaml:"workload"`
	Kind      kind      `yaml:"kind"`
	Pod       string    `yaml:"pod"`
	Node      string    `yaml:"node"`
	line      int
}

type address struct {
	prefix netip.Prefix
	line   int
}

func (a *address) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: address: %w", n.Line, err)
	}
	s = strings.TrimSpace(s)
	var err error
	if strings.Contains(s, "/") {
		a.prefix, err = netip.ParsePrefix(s)
		if err == nil && a.prefix != a.prefix.Masked() {
			err = fmt.Errorf("host bits set (did you mean %s?)", a.prefix.Masked())
		}
	} else {
		var addr netip.Addr
		addr, err = netip.ParseAddr(s)
		if err == nil && addr.Zone() != "" {
			err = errors.New("zones are not supported")
		}
		a.prefix = netip.PrefixFrom(addr, addr.BitLen())
	}
	if err != nil {
		return fmt.Errorf("line %d: address %q: %w", n.Line, s, err)
	}
	a.line = n.Line
	return nil
}

type kind struct {
	k    flow.Kind
	line int
}

func (k *kind) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: kind: %w", n.Line, err)
	}
	parsed, ok := flow.ParseKind(s)
	if !ok || parsed == flow.KindUnknown {
		return fmt.Errorf("line %d: unknown kind %q (want Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, Pod, Node, Service or Network)", n.Line, s)
	}
	k.k, k.line = parsed, n.Line
	return nil
}

var entryFields = map[string]bool{"addresses": true, "namespace": true, "workload": true, "kind": true, "pod": true, "node": true}

func (e *entry) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: an endpoint must be a mapping", n.Line)
	}
	// Node.Decode does not inherit KnownFields: check the keys here.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; !entryFields[k.Value] {
			return fmt.Errorf("line %d: unknown field %q (want addresses, namespace, workload, kind, pod, node)", k.Line, k.Value)
		}
	}
	type plain entry
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*e = entry(p)
	e.line = n.Line
	return nil
}

// Load reads the identity file at path. Addresses not in it are
// classified by nets: a named network, else private or internet (all a
// nil table knows).
func Load(path string, nets *networks.Table) (*Static, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity file: %w", err)
	}
	s, err := Parse(data, nets)
	if err != nil {
		return nil, fmt.Errorf("identity file %s: %w", path, err)
	}
	return s, nil
}

// Parse builds a Static from the YAML in data.
func Parse(data []byte, nets *networks.Table) (*Static, error) {
	var f file
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	s := &Static{exact: map[netip.Addr]flow.Endpoint{}, networks: nets}
	seen := map[netip.Prefix]int{}
	for _, e := range f.Endpoints {
		if e.Workload == "" {
			return nil, fmt.Errorf("line %d: endpoint without a workload", e.line)
		}
		if e.Kind.line == 0 {
			return nil, fmt.Errorf("line %d: endpoint %q without a kind", e.line, e.Workload)
		}
		if len(e.Addresses) == 0 {
			return nil, fmt.Errorf("line %d: endpoint %q without addresses", e.line, e.Workload)
		}
		ep := flow.Endpoint{Namespace: e.Namespace, Workload: e.Workload, Kind: e.Kind.k, Pod: e.Pod, Node: e.Node}
		switch ep.Kind {
		case flow.KindNode:
			ep.Namespace = ""
			if ep.Node == "" {
				ep.Node = ep.Workload
			}
		case flow.KindNetwork:
			ep.Namespace, ep.Node = "", ""
		}
		for _, a := range e.Addresses {
			p := a.prefix
			if first, dup := seen[p]; dup {
				return nil, fmt.Errorf("line %d: %s is already listed on line %d", a.line, p, first)
			}
			seen[p] = a.line
			if p.IsSingleIP() {
				s.exact[p.Addr()] = ep
			} else {
				s.prefixes = append(s.prefixes, prefixEndpoint{prefix: p, ep: ep})
			}
		}
	}
	slices.SortStableFunc(s.prefixes, func(a, b prefixEndpoint) int { return b.prefix.Bits() - a.prefix.Bits() })
	return s, nil
}

// Lookup returns the endpoint listed for a (the most specific CIDR when
// several hold it), else the network it belongs to.
func (s *Static) Lookup(a netip.Addr) (flow.Endpoint, bool) {
	a = a.Unmap()
	if ep, ok := s.exact[a]; ok {
		return ep, true
	}
	for i := range s.prefixes {
		if s.prefixes[i].prefix.Contains(a) {
			return s.prefixes[i].ep, true
		}
	}
	if !a.IsValid() {
		return flow.Endpoint{}, false
	}
	return flow.Endpoint{Workload: s.networks.Classify(a), Kind: flow.KindNetwork}, true
}

// Len returns the number of addresses and CIDRs listed.
func (s *Static) Len() int { return len(s.exact) + len(s.prefixes) }

// Synced is always true: the file is read before the daemon starts.
func (s *Static) Synced() bool { return true }

// Run waits for ctx: the static list never changes.
func (s *Static) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}
