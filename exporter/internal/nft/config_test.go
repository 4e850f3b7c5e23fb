package nft

import (
	"strings"
	"testing"

	"github.com/google/nftables/expr"
)

func TestParseOverlay(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Overlay
	}{
		{"udp:4789", Overlay{"vxlan", 17, 4789}},
		{"udp:8472", Overlay{"vxlan", 17, 8472}},
		{"udp:6081", Overlay{"geneve", 17, 6081}},
		{"udp:51820", Overlay{"wireguard", 17, 51820}},
		{"udp:4500", Overlay{"esp", 17, 4500}},
		{"udp:9999", Overlay{"udp-9999", 17, 9999}},
		{"tcp:179", Overlay{"tcp-179", 6, 179}},
		{"ipip", Overlay{"ipip", 4, 0}},
		{"esp", Overlay{"esp", 50, 0}},
		{"geneve", Overlay{"geneve", 17, 6081}},
		{"vxlan", Overlay{"vxlan", 17, 4789}},
		{"wireguard", Overlay{"wireguard", 17, 51820}},
		{"sit", Overlay{"sit", 41, 0}},
		{"gre", Overlay{"gre", 47, 0}},
		{"proto:4", Overlay{"ipip", 4, 0}},
		{"proto:132", Overlay{"proto-132", 132, 0}},
		{"cilium=udp:8472", Overlay{"cilium", 17, 8472}},
		{"my_tun-1=proto:99", Overlay{"my_tun-1", 99, 0}},
	} {
		got, err := ParseOverlay(tc.in)
		if err != nil {
			t.Errorf("ParseOverlay(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseOverlay(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		again, err := ParseOverlay(got.String())
		if err != nil || again != got {
			t.Errorf("ParseOverlay(%q.String() = %q) = %+v, %v; want a round trip", tc.in, got.String(), again, err)
		}
	}
	for _, tc := range []struct{ in, errPart string }{
		{"", "want udp:PORT"},
		{"udp", "want udp:PORT"},
		{"udp:0", "from 1 to 65535"},
		{"udp:65536", "from 1 to 65535"},
		{"udp:x", "from 1 to 65535"},
		{"proto:17", "give a port"},
		{"proto:6", "give a port"},
		{"proto:256", "from 1 to 255"},
		{"icmp:1", "unknown kind"},
		{"Bad=udp:1", "may hold only"},
		{"=udp:1", "1 to 32 characters"},
		{strings.Repeat("a", 33) + "=esp", "1 to 32 characters"},
	} {
		_, err := ParseOverlay(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.errPart) {
			t.Errorf("ParseOverlay(%q) error = %v, want one containing %q", tc.in, err, tc.errPart)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := DefaultConfig()
	if err := ok.Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	for _, tc := range []struct {
		name    string
		mutate  func(*Config)
		errPart string
	}{
		{"snaplen too small", func(c *Config) { c.SnapLen = 20 }, "snaplen 20"},
		{"snaplen too big", func(c *Config) { c.SnapLen = 70000 }, "snaplen 70000"},
		{"queue threshold", func(c *Config) { c.QueueThreshold = 0 }, "queue threshold"},
		{"sample rate", func(c *Config) { c.SampleRate = 0 }, "sample rate"},
		{"duplicate overlay", func(c *Config) { c.Overlays = append(c.Overlays, Overlay{"other", 17, 4789}) }, "same match as vxlan=udp:4789"},
		{"udp without port", func(c *Config) { c.Overlays = []Overlay{{"x", 17, 0}} }, "without a port"},
		{"port without udp", func(c *Config) { c.Overlays = []Overlay{{"x", 50, 3}} }, "needs UDP or TCP"},
		{"bad name", func(c *Config) { c.Overlays = []Overlay{{"X Y", 50, 0}} }, "may hold only"},
		{"proto zero", func(c *Config) { c.Overlays = []Overlay{{"x", 0, 0}} }, "IP protocol 0"},
	} {
		c := DefaultConfig()
		tc.mutate(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.errPart) {
			t.Errorf("%s: Validate() = %v, want an error containing %q", tc.name, err, tc.errPart)
		}
	}
}

func TestBuildSpecNeverSetsAVerdict(t *testing.T) {
	cfg := DefaultConfig()
	cfg.SampleRate = 8
	s := buildSpec(&cfg)
	if len(s.chains) != 3 {
		t.Fatalf("chains = %d, want 3 (postrouting, input, dnat)", len(s.chains))
	}
	// loopback + 6 overlays + sampling + the goto to dnat + 4 log rules
	// (new, original, reply, untracked), per base chain; 3 in dnat.
	if want := 2*(1+len(cfg.Overlays)+1+1+4) + 3; len(s.rules) != want {
		t.Errorf("rules = %d, want %d", len(s.rules), want)
	}
	// Two VXLAN ports share one counter.
	if len(s.counters) != 5 {
		t.Errorf("counters = %d, want 5 (vxlan once)", len(s.counters))
	}
}

func TestInstallRejectsInvalidConfig(t *testing.T) {
	cfg := DefaultConfig()
	cfg.SampleRate = 0
	tbl := New(cfg, nil)
	if err := tbl.Install(); err == nil || !strings.Contains(err.Error(), "sample rate") {
		t.Fatalf("Install() = %v, want the validation error", err)
	}
	if s := tbl.Stats(); s.SyncsError != 1 || s.Installed || s.LastError == "" {
		t.Errorf("Stats() = %+v, want one failed sync", s)
	}
}

// TestLogRulesLogOnce checks the shape of each chain: the sampling rule
// comes before every log rule, each log rule but the last ends in return
// (so a packet is logged once), the last one logs unconditionally, and
// the prefixes are new, original, reply, untracked in that order. The
// DNAT chain, reached by a goto after sampling, logs new, original and
// reply with the DNAT flag, each ending in return.
func TestLogRulesLogOnce(t *testing.T) {
	cfg := DefaultConfig()
	cfg.SampleRate = 4
	s := buildSpec(&cfg)
	for _, c := range s.chains {
		var prefixes []string
		sampled := c.Name == chainDNAT // reached only after sampling
		var rules [][]expr.Any
		for _, r := range s.rules {
			if r.Chain == c {
				rules = append(rules, r.Exprs)
			}
		}
		for i, exprs := range rules {
			var logs int
			for _, e := range exprs {
				switch e := e.(type) {
				case *expr.Numgen:
					if len(prefixes) > 0 {
						t.Errorf("%s: sampling after a log rule", c.Name)
					}
					sampled = true
				case *expr.Verdict:
					if e.Kind == expr.VerdictGoto && !sampled {
						t.Errorf("%s: goto %s before the sampling rule", c.Name, e.Chain)
					}
				case *expr.Log:
					logs++
					prefixes = append(prefixes, string(e.Data))
					if !sampled {
						t.Errorf("%s: log rule %d before the sampling rule", c.Name, i)
					}
					if e.Group != cfg.Group || e.Snaplen != cfg.SnapLen || e.QThreshold != cfg.QueueThreshold {
						t.Errorf("%s: log rule %d = %+v, want the configured group, snaplen and threshold", c.Name, i, e)
					}
				}
			}
			if logs == 0 {
				continue
			}
			last := i == len(rules)-1 && c.Name != chainDNAT
			v, ends := exprs[len(exprs)-1].(*expr.Verdict)
			switch {
			case logs != 1:
				t.Errorf("%s: rule %d logs %d times", c.Name, i, logs)
			case last && (len(exprs) != 1):
				t.Errorf("%s: the last log rule has a match: %v", c.Name, exprs)
			case !last && (!ends || v.Kind != expr.VerdictReturn):
				t.Errorf("%s: log rule %d does not end in return", c.Name, i)
			}
		}
		want := []string{PrefixNew, PrefixOriginal, PrefixReply, PrefixUntracked}
		if c.Name == chainDNAT {
			want = []string{PrefixNew + FlagDNAT, PrefixOriginal + FlagDNAT, PrefixReply + FlagDNAT}
		}
		if strings.Join(prefixes, ",") != strings.Join(want, ",") {
			t.Errorf("%s: log prefixes %q, want %q", c.Name, prefixes, want)
		}
	}
}
