package main

import (
	"log/slog"
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

// connMode holds the components of connection mode; nil in packet mode,
// where its methods return nothing.
type connMode struct {
	source *conntrack.Source
	conv   *ctflow.Converter
	local  *localaddr.Set
}

// newConnMode opens the conntrack source in connection mode; in packet
// mode it returns nil.
func newConnMode(cfg *Config, logger *slog.Logger) (*connMode, error) {
	if cfg.Mode != ModeConnection {
		return nil, nil
	}
	src, err := conntrack.New(conntrack.Config{
		DumpInterval:     cfg.DumpInterval,
		EnableAccounting: true,
		Logger:           logger.With("component", "conntrack"),
	})
	if err != nil {
		return nil, err
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
	return &connMode{source: src, conv: conv, local: local}, nil
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
		s := c.source.Stats()
		return collector.ConntrackStats{
			AccountingEnabled: s.AccountingEnabled, EnabledByPodflow: s.EnabledByPodflow,
			Events: s.Events, Overruns: s.LostEvents, MalformedEvents: s.DecodeErrors,
			Dumps: s.Dumps, DumpErrors: s.DumpErrors,
			Tracked: s.Tracked, Lost: s.Lost, CounterResets: s.CounterResets,
			QueueFull: pipe.Stats().ConnsQueueFull,
		}
	}
}
