package main

import (
	"bytes"
	"log/slog"
	"os"
	"time"

	"github.com/podflow/podflow/exporter/internal/collector"
	"github.com/podflow/podflow/exporter/internal/conntrack"
	"github.com/podflow/podflow/exporter/internal/ctflow"
	"github.com/podflow/podflow/exporter/internal/localaddr"
	"github.com/podflow/podflow/exporter/internal/pipeline"
)

// localRefresh is how often this node's addresses are read again in case
// an announcement of a change was lost.
const localRefresh = time.Minute

// acctSysctl says whether conntrack accounting is on in podflow's network
// namespace. It is read, never written, here: in a container /proc/sys is
// read-only, and the table switches accounting on (nft.ChainAccounting).
const acctSysctl = "/proc/sys/net/netfilter/nf_conntrack_acct"

// connMode holds the components of connection mode; nil in packet mode,
// where its methods do nothing.
type connMode struct {
	conv  *ctflow.Converter
	local *localaddr.Set
	// source is nil until open.
	source *conntrack.Source
	// acctWasOn: accounting was on before podflow's table was installed.
	acctWasOn    bool
	dumpInterval time.Duration
}

// newConnMode builds the converter of connection mode; in packet mode it
// returns nil.
func newConnMode(cfg *Config, logger *slog.Logger) *connMode {
	if cfg.Mode != ModeConnection {
		return nil
	}
	local := localaddr.New()
	if err := local.Refresh(); err != nil {
		logger.Warn("cannot read this node's addresses; loopback connections count until they can be read", "err", err)
	}
	overlays := make([]ctflow.Overlay, len(cfg.Nftables.Overlays))
	for i, o := range cfg.Nftables.Overlays {
		overlays[i] = ctflow.Overlay{Name: o.Name, Proto: o.Proto, Port: o.Port}
	}
	conv := ctflow.New(ctflow.Config{Overlays: overlays, SampleRate: cfg.Nftables.SampleRate, Local: local})
	return &connMode{conv: conv, local: local}
}

// noteAccounting reads whether accounting is on, before the table can
// switch it on. A missing setting (conntrack not loaded yet) is off.
func (c *connMode) noteAccounting() {
	if c == nil {
		return
	}
	b, err := os.ReadFile(acctSysctl)
	c.acctWasOn = err == nil && string(bytes.TrimSpace(b)) != "0"
}

// open starts reading conntrack, after the table is installed.
func (c *connMode) open(cfg *Config, logger *slog.Logger) error {
	if c == nil {
		return nil
	}
	logger = logger.With("component", "conntrack")
	src, err := conntrack.New(conntrack.Config{
		DumpInterval:     cfg.DumpInterval,
		EnableAccounting: true,
		Logger:           logger,
	})
	if err != nil {
		return err
	}
	c.source, c.dumpInterval = src, cfg.DumpInterval
	if s := src.Stats(); s.AccountingEnabled && !c.acctWasOn && !s.EnabledByPodflow {
		logger.Info("conntrack accounting was off in this network namespace; podflow's table switched it on " +
			"(connections that started before carry no byte or packet counters)")
	}
	return nil
}

// converter returns the pipeline's converter of deltas, nil in packet
// mode (an untyped nil: the pipeline tests it).
func (c *connMode) converter() pipeline.ConnConverter {
	if c == nil {
		return nil
	}
	return c.conv
}

// overlays returns the overlay packets left out of conntrack's counts, by
// encapsulation.
func (c *connMode) overlays() map[string]uint64 {
	if c == nil {
		return nil
	}
	s, names := c.conv.Stats(), c.conv.OverlayNames()
	m := make(map[string]uint64, len(names))
	for i, n := range names {
		m[n] = s.Overlay[i]
	}
	return m
}

// stats reads the conntrack source's counters for the self-metrics.
func (c *connMode) stats(pipe *pipeline.Pipeline) func() collector.ConntrackStats {
	if c == nil {
		return nil
	}
	return func() collector.ConntrackStats {
		out := collector.ConntrackStats{QueueFull: pipe.Stats().ConnsQueueFull}
		if c.source == nil {
			return out
		}
		s := c.source.Stats()
		out.AccountingEnabled = s.AccountingEnabled
		// Switched on by podflow: by its table, or by the source's write.
		out.EnabledByPodflow = s.EnabledByPodflow || (s.AccountingEnabled && !c.acctWasOn)
		out.Events, out.Overruns, out.MalformedEvents = s.Events, s.LostEvents, s.DecodeErrors
		out.Dumps, out.DumpErrors = s.Dumps, s.DumpErrors
		out.Tracked, out.Lost, out.CounterResets = s.Tracked, s.Lost, s.CounterResets
		return out
	}
}

// lastDump waits, at shutdown, for the conntrack source's next dump, so
// that what live connections sent since the last one is counted: a
// successor starts from a baseline of its own and would never count it.
// It waits at most the dump interval and a little more, and never more
// than 20s (the kustomize base gives the pod 30s to stop), while capture
// still runs. With a longer interval the last counts can be lost.
func (c *connMode) lastDump(logger *slog.Logger) {
	if c == nil || c.source == nil {
		return
	}
	start := c.source.Stats().Dumps
	deadline := time.Now().Add(min(c.dumpInterval+lastDumpSlack, lastDumpMax))
	for time.Now().Before(deadline) {
		if c.source.Stats().Dumps > start {
			logger.Info("read the live connections' counters a last time")
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	logger.Warn("no conntrack dump completed before stopping; what live connections sent since the last one is not counted")
}

// lastDumpSlack is how much longer than the dump interval lastDump waits
// for a dump to complete; lastDumpMax is the longest it waits.
const (
	lastDumpSlack = 5 * time.Second
	lastDumpMax   = 20 * time.Second
)

// ready says why connection mode is not ready yet, or "".
func (c *connMode) ready() string {
	switch {
	case c == nil:
		return ""
	case c.source == nil:
		return "conntrack: not opened yet"
	case c.source.Stats().Dumps == 0:
		// Until the first dump, a connection that starts may land in the
		// baseline, which is never counted.
		return "conntrack: the first dump of the connection table has not completed yet"
	}
	return ""
}
