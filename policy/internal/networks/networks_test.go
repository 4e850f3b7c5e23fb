package networks

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	n, err := Parse([]byte(`
networks:
  corp: [10.0.0.0/8, "fd00:c0:ffee::/48", 10.0.0.0/8]
  corp-lab: [10.20.0.0/16]
  cloud-metadata: [169.254.169.254]
  mapped: ["::ffff:192.0.2.0/120"]
  empty: []
`))
	if err != nil {
		t.Fatal(err)
	}
	want := Networks{
		"corp":           {netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00:c0:ffee::/48")},
		"corp-lab":       {netip.MustParsePrefix("10.20.0.0/16")},
		"cloud-metadata": {netip.MustParsePrefix("169.254.169.254/32")},
		"mapped":         {netip.MustParsePrefix("192.0.2.0/24")},
	}
	if !reflect.DeepEqual(n, want) {
		t.Fatalf("got %v\nwant %v", n, want)
	}
	for name, bad := range map[string]string{
		"host bits": "networks:\n  a: [10.1.2.3/8]\n",
		"reserved":  "networks:\n  internet: [192.0.2.0/24]\n",
		"cidr":      "networks:\n  a: [10.0.0.0/33]\n",
		"key":       "network:\n  a: [10.0.0.0/8]\n",
	} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("%s: accepted %q", name, bad)
		}
	}
}

func blocks(t *testing.T, n Networks, name string) string {
	t.Helper()
	bs, ok := n.Blocks(name)
	if !ok {
		t.Fatalf("no network %s", name)
	}
	var parts []string
	for _, b := range bs {
		s := b.CIDR.String()
		for _, e := range b.Except {
			s += " -" + e.String()
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// TestBlocks checks that each network's ipBlocks hold exactly the addresses
// podflow classifies as that network: the more specific network wins.
func TestBlocks(t *testing.T) {
	n := Networks{
		"corp":     {netip.MustParsePrefix("10.0.0.0/8")},
		"corp-lab": {netip.MustParsePrefix("10.20.0.0/16")},
		"partner":  {netip.MustParsePrefix("192.0.2.0/24")},
	}
	if got, want := blocks(t, n, "corp"), "10.0.0.0/8 -10.20.0.0/16"; got != want {
		t.Errorf("corp: %s, want %s", got, want)
	}
	// corp holds all of 10.0.0.0/8: none of it is private any more.
	if got := blocks(t, n, "private"); !strings.HasPrefix(got, "172.16.0.0/12; 192.168.0.0/16") {
		t.Errorf("private: %s", got)
	}
	inet := blocks(t, n, "internet")
	for _, want := range []string{"0.0.0.0/0 -10.0.0.0/8", "-192.0.2.0/24", "-192.168.0.0/16", "::/0 -::1/128"} {
		if !strings.Contains(inet, want) {
			t.Errorf("internet %q lacks %q", inet, want)
		}
	}
	if strings.Contains(inet, "10.20.0.0/16") {
		t.Errorf("internet %q carves out a prefix already inside another exception", inet)
	}
	if _, ok := n.Blocks("nope"); ok {
		t.Error("an unknown network has blocks")
	}
}
