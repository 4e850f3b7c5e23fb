package identity

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podflow/podflow/exporter/internal/flow"
	"github.com/podflow/podflow/exporter/internal/networks"
)

const sample = `# Identities of a plain host and its containers.
endpoints:
  - addresses: [10.0.1.2, "fd00:1::2"]
    namespace: shop
    workload: frontend
    kind: Deployment
    pod: frontend-1
    node: host-a
  - addresses: [10.0.2.0/24]
    namespace: shop
    workload: batch
    kind: Job
  - addresses: [10.0.2.128/25]
    namespace: shop
    workload: cart
    kind: StatefulSet
  - addresses: [192.168.1.1]
    namespace: dropped
    workload: host-a
    kind: Node
  - addresses: [198.51.100.0/24]
    namespace: dropped
    workload: corp
    kind: Network
    node: dropped
`

func TestLookup(t *testing.T) {
	s, err := Parse([]byte(sample), nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		addr string
		want flow.Endpoint
	}{
		{"10.0.1.2", flow.Endpoint{Namespace: "shop", Workload: "frontend", Kind: flow.KindDeployment, Pod: "frontend-1", Node: "host-a"}},
		{"::ffff:10.0.1.2", flow.Endpoint{Namespace: "shop", Workload: "frontend", Kind: flow.KindDeployment, Pod: "frontend-1", Node: "host-a"}},
		{"fd00:1::2", flow.Endpoint{Namespace: "shop", Workload: "frontend", Kind: flow.KindDeployment, Pod: "frontend-1", Node: "host-a"}},
		{"10.0.2.5", flow.Endpoint{Namespace: "shop", Workload: "batch", Kind: flow.KindJob}},
		{"10.0.2.200", flow.Endpoint{Namespace: "shop", Workload: "cart", Kind: flow.KindStatefulSet}}, // most specific
		{"192.168.1.1", flow.Endpoint{Workload: "host-a", Kind: flow.KindNode, Node: "host-a"}},
		{"198.51.100.9", flow.Endpoint{Workload: "corp", Kind: flow.KindNetwork}},
		{"10.9.9.9", flow.Endpoint{Workload: "private", Kind: flow.KindNetwork}},
		{"2001:db8::1", flow.Endpoint{Workload: "internet", Kind: flow.KindNetwork}},
	}
	for _, tt := range tests {
		got, ok := s.Lookup(netip.MustParseAddr(tt.addr))
		if !ok || got != tt.want {
			t.Errorf("Lookup(%s) = %+v, %v; want %+v", tt.addr, got, ok, tt.want)
		}
	}
	if _, ok := s.Lookup(netip.Addr{}); ok {
		t.Error("the zero address resolved")
	}
	corp, err := networks.New(map[string][]netip.Prefix{"corp": {netip.MustParsePrefix("10.9.0.0/16")}})
	if err != nil {
		t.Fatal(err)
	}
	withNetworks, _ := Parse([]byte(sample), corp)
	if got, ok := withNetworks.Lookup(netip.MustParseAddr("10.9.9.9")); !ok || got != (flow.Endpoint{Workload: "corp", Kind: flow.KindNetwork}) {
		t.Errorf("an unlisted address in a named network = %+v, %v; want corp", got, ok)
	}
}

func TestParseErrorsNameTheLine(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"bad address", "endpoints:\n  - addresses: [10.0.0.300]\n    workload: a\n    kind: Pod\n", "line 2: address \"10.0.0.300\""},
		{"host bits", "endpoints:\n  - addresses:\n      - 10.0.0.1/24\n    workload: a\n    kind: Pod\n", "line 3: address \"10.0.0.1/24\": host bits set"},
		{"bad kind", "endpoints:\n  - addresses: [10.0.0.1]\n    workload: a\n    kind: Deploymnet\n", "line 4: unknown kind \"Deploymnet\""},
		{"unknown field", "endpoints:\n  - addresses: [10.0.0.1]\n    workload: a\n    kind: Pod\n    labels: {}\n", "line 5: unknown field \"labels\""},
		{"unknown top-level field", "endpoint:\n  - addresses: [10.0.0.1]\n", "line 1: field endpoint not found"},
		{"no workload", "endpoints:\n  - addresses: [10.0.0.1]\n    kind: Pod\n", "line 2: endpoint without a workload"},
		{"no kind", "endpoints:\n  - addresses: [10.0.0.1]\n    workload: a\n", "line 2: endpoint \"a\" without a kind"},
		{"no addresses", "endpoints:\n  - workload: a\n    kind: Pod\n", "line 2: endpoint \"a\" without addresses"},
		{"duplicate", "endpoints:\n  - addresses: [10.0.0.1]\n    workload: a\n    kind: Pod\n  - addresses: [10.0.0.1/32]\n    workload: b\n    kind: Pod\n", "line 5: 10.0.0.1/32 is already listed on line 2"},
		{"not a mapping", "endpoints:\n  - 10.0.0.1\n", "line 2: an endpoint must be a mapping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "identities.yml")
	if err := os.WriteFile(path, []byte(sample), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Load(path, nil)
	if err != nil || s.Len() != 6 || !s.Synced() {
		t.Fatalf("Load = %v entries, %v", s, err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yml"), nil); err == nil || !strings.Contains(err.Error(), "missing.yml") {
		t.Errorf("missing file: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.yml")
	_ = os.WriteFile(bad, []byte("endpoints:\n  - addresses: [x]\n"), 0o600)
	if _, err := Load(bad, nil); err == nil || !strings.Contains(err.Error(), "bad.yml: line 2") {
		t.Errorf("bad file: %v", err)
	}
	empty := filepath.Join(t.TempDir(), "empty.yml")
	_ = os.WriteFile(empty, nil, 0o600)
	if s, err := Load(empty, nil); err != nil || s.Len() != 0 {
		t.Errorf("empty file: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := s.Run(ctx); err != nil {
		t.Errorf("Run = %v", err)
	}
}

func TestLookupAllocatesNothing(t *testing.T) {
	s, _ := Parse([]byte(sample), nil)
	addrs := []netip.Addr{netip.MustParseAddr("10.0.1.2"), netip.MustParseAddr("10.0.2.200"), netip.MustParseAddr("8.8.8.8")}
	if n := testing.AllocsPerRun(1000, func() {
		for _, a := range addrs {
			s.Lookup(a)
		}
	}); n != 0 {
		t.Fatalf("Lookup allocates %v times", n)
	}
}
