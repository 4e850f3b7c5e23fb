package main

import (
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/podflow/podflow/exporter/internal/attribute"
	"github.com/podflow/podflow/exporter/internal/capture"
	"github.com/podflow/podflow/exporter/internal/nft"
	"github.com/podflow/podflow/exporter/internal/pipeline"
)

func TestDefaults(t *testing.T) {
	t.Setenv("NODE_NAME", "node-a")
	cfg, err := parseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"listen", (*cfg.Web.WebListenAddresses)[0], ":9810"},
		{"group", cfg.Capture.Group, uint16(100)},
		{"nft group", cfg.Nftables.Group, uint16(100)},
		{"snaplen", cfg.Capture.SnapLen, uint32(128)},
		{"queue threshold", cfg.Capture.QueueThreshold, uint32(16)},
		{"nft queue threshold", cfg.Nftables.QueueThreshold, uint16(16)},
		{"buffer size", cfg.Capture.BufferSize, uint32(128 << 10)},
		{"flush timeout", cfg.Capture.FlushTimeout, 100 * time.Millisecond},
		{"read buffer", cfg.Capture.ReadBuffer, 8 << 20},
		{"sample rate", cfg.Nftables.SampleRate, uint32(1)},
		{"overlays", len(cfg.Nftables.Overlays), 6},
		{"queue size", cfg.QueueSize, 256},
		{"resync", cfg.ResyncInterval, 30 * time.Second},
		{"max series", cfg.MaxSeries, 100000},
		{"idle", cfg.IdleTimeout, 10 * time.Minute},
		{"grace", cfg.DeletionGrace, time.Minute},
		{"labels", cfg.Labels, attribute.Labels{}},
		{"node", cfg.Kube.NodeName, "node-a"},
		{"mode", cfg.Mode, "packet"},
		{"dump interval", cfg.DumpInterval, 10 * time.Second},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

// TestDefaultsComeFromThePackages checks that the flags take their
// defaults from the packages that use the settings, so that a default is
// written once.
func TestDefaultsComeFromThePackages(t *testing.T) {
	t.Setenv("NODE_NAME", "node-a")
	cfg, err := parseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	nflog := capture.DefaultConfig()
	nflog.MaxBackoff, nflog.BindTimeout = 0, 0 // not flags
	got := cfg.Capture
	got.MaxBackoff, got.BindTimeout = 0, 0
	if got != nflog {
		t.Errorf("capture config from the flags' defaults = %+v, want capture.DefaultConfig() %+v", got, nflog)
	}
	if table := nft.DefaultConfig(); !reflect.DeepEqual(cfg.Nftables, table) {
		t.Errorf("nftables config from the flags' defaults = %+v, want nft.DefaultConfig() %+v", cfg.Nftables, table)
	}
	if cfg.ResyncInterval != nft.DefaultResyncInterval || cfg.QueueSize != pipeline.DefaultQueueSize {
		t.Errorf("resync %v, queue size %d: want the packages' defaults", cfg.ResyncInterval, cfg.QueueSize)
	}
}

// TestReadmeListsTheDefaults checks the configuration table of README.md
// against the flags: every flag is listed, with the default it has.
func TestReadmeListsTheDefaults(t *testing.T) {
	readme, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{} // flag name to its default cell
	for _, m := range regexp.MustCompile("(?m)^\\| `--([a-z.-]+)` \\|([^|]*)\\|").FindAllStringSubmatch(string(readme), -1) {
		rows[m[1]] = strings.TrimSpace(m[2])
	}
	app := newApp(&Config{})
	for _, f := range app.Model().Flags {
		if f.Hidden || f.Name == "help" {
			continue
		}
		cell, ok := rows[f.Name]
		if !ok {
			t.Errorf("README.md does not list --%s", f.Name)
			continue
		}
		if len(f.Default) == 0 || f.Envar != "" {
			continue // documented in words ("nodes' spec.podCIDRs", "$NODE_NAME")
		}
		if got, want := strings.ReplaceAll(cell, "`", ""), strings.Join(f.Default, ", "); got != want {
			t.Errorf("README.md gives --%s the default %q, the flag has %q", f.Name, got, want)
		}
	}
}

func TestFlags(t *testing.T) {
	cfg, err := parseConfig([]string{
		"--identity.file=ids.yml", "--metrics.labels=source_pod", "--metrics.labels=destination_service",
		"--kube.pod-cidr=10.244.0.0/16", "--kube.pod-cidr=fd00:10:244::/56", "--kube.service-cidr=10.96.0.1/12",
		"--capture.overlay=udp:4789", "--capture.overlay=vpn=udp:1194", "--nflog.read-buffer=16MiB",
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Labels != (attribute.Labels{SourcePod: true, DestinationService: true}) {
		t.Errorf("labels = %+v", cfg.Labels)
	}
	if len(cfg.Kube.PodCIDRs) != 2 || cfg.Kube.ServiceCIDRs[0] != netip.MustParsePrefix("10.96.0.0/12") {
		t.Errorf("cidrs = %v %v", cfg.Kube.PodCIDRs, cfg.Kube.ServiceCIDRs)
	}
	if len(cfg.Nftables.Overlays) != 2 || cfg.Nftables.Overlays[1].Name != "vpn" {
		t.Errorf("overlays = %v", cfg.Nftables.Overlays)
	}
	if cfg.Capture.ReadBuffer != 16<<20 {
		t.Errorf("read buffer = %d", cfg.Capture.ReadBuffer)
	}
}

func TestCaptureModes(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		mode       string
		connection bool
	}{
		{nil, ModePacket, false},
		{[]string{"--capture.mode=packet"}, ModePacket, false},
		{[]string{"--capture.mode=connection"}, ModeConnection, true},
		// A short idle timeout is fine in packet mode, and with a
		// dump interval short enough.
		{[]string{"--metrics.idle-timeout=15s"}, ModePacket, false},
		{[]string{"--capture.mode=connection", "--metrics.idle-timeout=15s", "--conntrack.dump-interval=5s"}, ModeConnection, true},
		{[]string{"--capture.mode=connection", "--metrics.idle-timeout=0s", "--conntrack.dump-interval=1h", "--metrics.deletion-grace=3h"}, ModeConnection, true},
		// A short deletion grace is fine in packet mode.
		{[]string{"--metrics.deletion-grace=0s"}, ModePacket, false},
	} {
		cfg, err := parseConfig(append(tc.args, "--identity.file=ids.yml"))
		if err != nil {
			t.Errorf("%v: %v", tc.args, err)
			continue
		}
		if cfg.Mode != tc.mode || cfg.Nftables.Connection != tc.connection {
			t.Errorf("%v: mode %q, table in connection mode %v; want %q, %v", tc.args, cfg.Mode, cfg.Nftables.Connection, tc.mode, tc.connection)
		}
	}
}

func TestBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--nflog.group=x"}, `--nflog.group="x"`},
		{[]string{"--nflog.group=70000"}, `--nflog.group="70000"`},
		{[]string{"--metrics.idle-timeout=5"}, `--metrics.idle-timeout="5"`},
		{[]string{"--metrics.labels=source_ip"}, `unknown opt-in label "source_ip"`},
		{[]string{"--capture.sample-rate=0"}, "--capture.sample-rate must be at least 1"},
		{[]string{"--capture.overlay=udp:x"}, `--capture.overlay "udp:x"`},
		{[]string{"--capture.queue-size=0"}, "--capture.queue-size 0"},
		{[]string{"--metrics.max-series=-1"}, "--metrics.max-series -1"},
		{[]string{"--kube.pod-cidr=10.0.0.0"}, `--kube.pod-cidr "10.0.0.0"`},
		{[]string{"--nflog.buffer-size=1MiB"}, "nflog buffer size"},
		{[]string{"--nope"}, "unknown long flag '--nope'"},
		{[]string{"--capture.mode=flow"}, `--capture.mode="flow"`},
		{[]string{"--conntrack.dump-interval=0s"}, "--conntrack.dump-interval 0s: must be positive"},
		{[]string{"--capture.mode=connection", "--conntrack.dump-interval=1m", "--metrics.idle-timeout=2m"},
			"--metrics.idle-timeout 2m0s with --capture.mode=connection: must be more than twice --conntrack.dump-interval"},
		{[]string{"--capture.mode=connection", "--conntrack.dump-interval=30s", "--metrics.deletion-grace=1m"},
			"--metrics.deletion-grace 1m0s with --capture.mode=connection: must be more than twice --conntrack.dump-interval"},
		{nil, "--kube.node-name (or NODE_NAME) is required"},
	}
	t.Setenv("NODE_NAME", "")
	for _, tt := range tests {
		args := tt.args
		if !strings.Contains(tt.want, "node-name") {
			args = append(args, "--identity.file=ids.yml")
		}
		_, err := parseConfig(args)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: error %v, want it to contain %q", tt.args, err, tt.want)
		}
	}
}

func TestRunRejectsBadInputBeforeInstalling(t *testing.T) {
	// Both fail before anything touches the kernel, so this runs without
	// root; the integration tests check that no table is left.
	if code := run([]string{"--nflog.group=x"}); code == 0 {
		t.Error("bad flag: exit code 0")
	}
	if code := run([]string{"--identity.file=/nonexistent/ids.yml", "--web.config.file=/nonexistent/web.yml"}); code == 0 {
		t.Error("unreadable web config: exit code 0")
	}
}
