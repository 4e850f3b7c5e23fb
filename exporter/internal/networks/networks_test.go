package networks

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const example = `# Networks outside the cluster.
networks:
  corp:
    - 10.0.0.0/8
    - "fd00:c0:ffee::/48"
  corp-lab: [10.20.0.0/16]
  corp-lab-printers: [10.20.30.0/24, 10.20.31.7]
  monitoring:
    - 192.0.2.0/24
    - "2001:db8:100::/40"
  denylist-tor: [203.0.113.0/24, "2001:db8:666::/48"]
  metadata: [169.254.169.254]
  everything_v6: ["::/0"]
  empty:
`

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "networks.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestClassify(t *testing.T) {
	tbl, err := Load(writeFile(t, example))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ addr, want string }{
		{"10.1.2.3", "corp"},
		{"10.0.0.0", "corp"},
		{"10.255.255.255", "corp"},
		{"10.20.0.1", "corp-lab"},
		{"10.20.30.40", "corp-lab-printers"},
		{"10.20.31.7", "corp-lab-printers"},
		{"10.20.31.8", "corp-lab"},
		{"10.21.0.0", "corp"},
		{"11.0.0.0", "internet"},
		{"9.255.255.255", "internet"},
		{"192.0.2.1", "monitoring"},
		{"203.0.113.77", "denylist-tor"},
		{"203.0.114.1", "internet"},
		{"169.254.169.254", "metadata"},
		{"169.254.1.1", "private"},
		{"::ffff:10.20.30.1", "corp-lab-printers"}, // IPv4-mapped
		{"::ffff:8.8.8.8", "internet"},
		{"fd00:c0:ffee::1", "corp"},
		{"fd00:c0:ffef::1", "everything_v6"},
		{"2001:db8:100::1", "monitoring"},
		{"2001:db8:666:0:ffff::1", "denylist-tor"},
		{"2001:4860::8888", "everything_v6"},
		// Fallbacks.
		{"172.16.0.1", "private"},
		{"172.31.255.255", "private"},
		{"172.32.0.0", "internet"},
		{"192.168.1.1", "private"},
		{"100.64.0.1", "private"},
		{"100.127.255.255", "private"},
		{"100.128.0.0", "internet"},
		{"127.0.0.1", "private"},
		{"224.0.0.251", "private"},
		{"255.255.255.255", "private"},
		{"0.0.0.0", "private"},
		{"8.8.8.8", "internet"},
		{"239.1.1.1", "internet"},
	}
	for _, tt := range tests {
		if got := tbl.Classify(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("Classify(%s) = %q, want %q", tt.addr, got, tt.want)
		}
	}
	wantNames := []string{"corp", "corp-lab", "corp-lab-printers", "denylist-tor", "empty", "everything_v6", "metadata", "monitoring"}
	if got := tbl.Names(); !slices.Equal(got, wantNames) {
		t.Errorf("Names() = %q, want %q", got, wantNames)
	}
}

func TestFallbackWithoutNetworks(t *testing.T) {
	empty, err := Parse("empty.yaml", []byte("# nothing yet\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tbl := range []*Table{nil, {}, empty} {
		for addr, want := range map[string]string{
			"10.1.1.1": "private", "fd12::1": "private", "fe80::1": "private", "::1": "private",
			"ff02::1": "private", "::": "private", "2001:4860::8888": "internet", "1.1.1.1": "internet",
			"ff0e::1": "internet",
		} {
			if got := tbl.Classify(netip.MustParseAddr(addr)); got != want {
				t.Errorf("%v: Classify(%s) = %q, want %q", tbl, addr, got, want)
			}
		}
		if got := tbl.Classify(netip.Addr{}); got != Internet {
			t.Errorf("zero Addr: %q", got)
		}
		if len(tbl.Names()) != 0 {
			t.Errorf("names of an empty table: %q", tbl.Names())
		}
	}
}

func TestOrderDoesNotMatter(t *testing.T) {
	a, err := Parse("a", []byte("networks:\n  wide: [10.0.0.0/8]\n  narrow: [10.1.0.0/16, 10.1.2.0/24]\n"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse("b", []byte("networks:\n  narrow: [10.1.2.0/24, 10.1.0.0/16]\n  wide: [10.0.0.0/8]\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"10.0.0.1", "10.1.0.1", "10.1.2.3", "10.1.3.0", "10.2.0.0"} {
		x := netip.MustParseAddr(addr)
		if a.Classify(x) != b.Classify(x) {
			t.Errorf("%s: %q vs %q", addr, a.Classify(x), b.Classify(x))
		}
	}
}

func TestBadFiles(t *testing.T) {
	tests := []struct {
		name, content string
		want          []string // each must appear in the error
	}{
		{"bad CIDR", "networks:\n  corp:\n    - 10.0.0.0/8\n    - 10.0.0.0/33\n",
			[]string{"networks.yaml:4:", `bad CIDR "10.0.0.0/33"`, `network "corp"`}},
		{"host bits", "networks:\n  corp: [10.1.2.3/8]\n",
			[]string{"networks.yaml:2:", "host bits", "did you mean 10.0.0.0/8"}},
		{"not an address", "networks:\n  corp: [corp.example.com]\n",
			[]string{"networks.yaml:2:", `bad CIDR "corp.example.com"`}},
		{"bad name", "networks:\n  Corp: [10.0.0.0/8]\n",
			[]string{"networks.yaml:2:", `bad network name "Corp"`}},
		{"name with a space", "networks:\n  \"my net\": [10.0.0.0/8]\n",
			[]string{"networks.yaml:2:", `bad network name "my net"`}},
		{"reserved name", "networks:\n  corp: [10.0.0.0/8]\n  internet: [0.0.0.0/0]\n",
			[]string{"networks.yaml:3:", `"internet" is reserved`}},
		{"duplicate name", "networks:\n  corp: [10.0.0.0/8]\n  lab: [192.168.0.0/16]\n  corp: [172.16.0.0/12]\n",
			[]string{"networks.yaml:4:", `duplicate network "corp"`, "networks.yaml:2"}},
		{"unknown key", "networks:\n  corp: [10.0.0.0/8]\nnetwork:\n  lab: [192.168.0.0/16]\n",
			[]string{"networks.yaml:3:", `unknown key "network"`}},
		{"prefix in two networks", "networks:\n  a: [10.0.0.0/8]\n  b:\n    - 10.0.0.0/8\n",
			[]string{"networks.yaml:4:", `in network "b" and in network "a"`, "networks.yaml:2"}},
		{"list item is a mapping", "networks:\n  corp:\n    - cidr: 10.0.0.0/8\n",
			[]string{"networks.yaml:3:", "want a CIDR, not a mapping"}},
		{"network is not a list", "networks:\n  corp: 10.0.0.0/8\n",
			[]string{"networks.yaml:2:", "want a list of CIDRs"}},
		{"networks is a list", "networks:\n  - 10.0.0.0/8\n",
			[]string{"networks.yaml:2:", "want a mapping"}},
		{"top level is a list", "- 10.0.0.0/8\n",
			[]string{"networks.yaml:1:", `want a mapping with the key "networks"`}},
		{"syntax error", "networks:\n  corp: [10.0.0.0/8\n  lab: x\n",
			[]string{"networks.yaml", "line "}},
		{"two errors reported together", "networks:\n  Bad: [10.0.0.0/8]\n  ok: [10.0.0.0/40]\n",
			[]string{"networks.yaml:2:", "networks.yaml:3:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(writeFile(t, tt.content))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Fatalf("error %v does not name the file", err)
	}
}

func TestGoodFileVariants(t *testing.T) {
	tbl, err := Parse("x.yaml", []byte(`
networks:
  v6: [fd00::/8, "2001:db8::/32", 2001:db9::1]
  mapped: ["::ffff:198.51.100.0/120"]
  same-twice: [192.0.2.0/24, 192.0.2.0/24]
  anchored: &list [198.18.0.0/15]
`))
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]string{
		"fd00::1": "v6", "2001:db8::1": "v6", "2001:db9::1": "v6", "2001:db9::2": "internet",
		"198.51.100.9": "mapped", "192.0.2.200": "same-twice", "198.19.0.1": "anchored",
	} {
		if got := tbl.Classify(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Classify(%s) = %q, want %q", addr, got, want)
		}
	}
}

func TestNew(t *testing.T) {
	tbl, err := New(map[string][]netip.Prefix{
		"corp": {netip.MustParsePrefix("10.0.0.0/8")},
		"lab":  {netip.MustParsePrefix("10.1.0.0/16")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := tbl.Classify(netip.MustParseAddr("10.1.1.1")); got != "lab" {
		t.Errorf("got %q", got)
	}
	if _, err := New(map[string][]netip.Prefix{"private": {netip.MustParsePrefix("10.0.0.0/8")}}); err == nil {
		t.Error("reserved name accepted")
	}
}

// longestMatch is the obvious classification the flattened table must
// agree with.
func longestMatch(nets map[string][]netip.Prefix, a netip.Addr) string {
	best, bestBits := "", -1
	for name, ps := range nets {
		for _, p := range ps {
			if p.Contains(a) && p.Bits() > bestBits {
				best, bestBits = name, p.Bits()
			}
		}
	}
	if bestBits < 0 {
		if isPrivate(a) {
			return Private
		}
		return Internet
	}
	return best
}

// randomNetworks makes n distinct prefixes, clustered so that many nest,
// spread over a few networks, and probe addresses at and around their
// edges.
func randomNetworks(rng *rand.Rand, n int) (map[string][]netip.Prefix, []netip.Addr) {
	nets := map[string][]netip.Prefix{}
	seen := map[netip.Prefix]bool{}
	var probes []netip.Addr
	for len(seen) < n {
		var p netip.Prefix
		if rng.IntN(2) == 0 {
			a := netip.AddrFrom4([4]byte{byte(rng.IntN(4)), byte(rng.IntN(8)), byte(rng.IntN(256)), byte(rng.IntN(256))})
			p = netip.PrefixFrom(a, rng.IntN(33)).Masked()
		} else {
			var b [16]byte
			b[0], b[1], b[15] = 0x20, byte(rng.IntN(4)), byte(rng.IntN(256))
			b[7] = byte(rng.IntN(8))
			p = netip.PrefixFrom(netip.AddrFrom16(b), rng.IntN(129)).Masked()
		}
		if seen[p] {
			continue
		}
		seen[p] = true
		name := fmt.Sprintf("net-%d", rng.IntN(8))
		nets[name] = append(nets[name], p)
		first := p.Addr()
		probes = append(probes, first, first.Prev(), first.Next())
	}
	for range n {
		probes = append(probes, netip.AddrFrom4([4]byte{byte(rng.IntN(5)), byte(rng.IntN(9)), byte(rng.IntN(256)), byte(rng.IntN(256))}))
	}
	return nets, probes
}

func TestFlattenMatchesLongestPrefix(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for round := range 20 {
		nets, probes := randomNetworks(rng, 50+round*20)
		tbl, err := New(nets)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range probes {
			if !a.IsValid() {
				continue
			}
			if got, want := tbl.Classify(a), longestMatch(nets, a); got != want {
				t.Fatalf("round %d: Classify(%s) = %q, want %q", round, a, got, want)
			}
		}
	}
}

func TestBoundsAtTheEdges(t *testing.T) {
	tbl, err := New(map[string][]netip.Prefix{
		"all4":  {netip.MustParsePrefix("0.0.0.0/0")},
		"top4":  {netip.MustParsePrefix("255.255.255.255/32")},
		"all6":  {netip.MustParsePrefix("::/0")},
		"top6":  {netip.MustParsePrefix("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128")},
		"half6": {netip.MustParsePrefix("8000::/1"), netip.MustParsePrefix("::/64")},
	})
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]string{
		"0.0.0.0": "all4", "255.255.255.254": "all4", "255.255.255.255": "top4",
		"::": "half6", "::1:0:0:0:0": "all6", "7fff::": "all6", "8000::": "half6",
		"ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe": "half6", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff": "top6",
	} {
		if got := tbl.Classify(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Classify(%s) = %q, want %q", addr, got, want)
		}
	}
}

func TestClassifyDoesNotAllocate(t *testing.T) {
	tbl, err := Parse("x", []byte(example))
	if err != nil {
		t.Fatal(err)
	}
	addrs := []netip.Addr{netip.MustParseAddr("10.20.30.1"), netip.MustParseAddr("2001:db8:666::1"), netip.MustParseAddr("8.8.8.8")}
	for _, a := range addrs {
		if n := testing.AllocsPerRun(100, func() { tbl.Classify(a) }); n != 0 {
			t.Errorf("%s: %v allocations", a, n)
		}
	}
}

func BenchmarkClassify(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	nets, probes := randomNetworks(rng, 1000)
	tbl, err := New(nets)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		tbl.Classify(probes[i%len(probes)])
		i++
	}
}
