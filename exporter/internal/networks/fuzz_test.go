package networks

import (
	"net/netip"
	"slices"
	"testing"
)

// FuzzParse feeds arbitrary files to Parse: it must return a table or an
// error, never panic, and a table must only answer with its own names.
func FuzzParse(f *testing.F) {
	f.Add([]byte(example))
	f.Add([]byte("networks:\n  a: [10.0.0.0/8]\n  b: [10.1.0.0/16, \"::/0\"]\n"))
	f.Add([]byte("networks:\n  corp:\n    - 10.0.0.0/33\n"))
	f.Add([]byte("x: &a [*a]\n"))
	f.Add([]byte(""))
	probes := []netip.Addr{
		netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("0.0.0.0"),
		netip.MustParseAddr("255.255.255.255"), netip.MustParseAddr("2001:db8::1"),
		netip.MustParseAddr("::"), netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tbl, err := Parse("fuzz.yaml", data)
		if err != nil {
			return
		}
		names := tbl.Names()
		for _, n := range names {
			if checkName(n) != nil {
				t.Fatalf("accepted bad name %q", n)
			}
		}
		for _, a := range probes {
			got := tbl.Classify(a)
			if got != Private && got != Internet && !slices.Contains(names, got) {
				t.Fatalf("Classify(%s) = %q, not a network of the table", a, got)
			}
		}
	})
}
