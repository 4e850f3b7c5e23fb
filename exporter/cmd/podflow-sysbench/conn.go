package main

import (
	"context"
	"errors"
	"time"

	"github.com/podflow/podflow/exporter/internal/conntrack"
	"github.com/podflow/podflow/exporter/internal/ctflow"
	"github.com/podflow/podflow/exporter/internal/localaddr"
	"github.com/podflow/podflow/exporter/internal/nft"
	"github.com/podflow/podflow/exporter/internal/pipeline"
)

// connectionTable makes cfg the table of connection mode.
func connectionTable(cfg *nft.Config) { cfg.Connection = true }

// connectionPipeline makes cfg a pipeline of connection mode, as the
// daemon builds it: conntrack deltas become flows through a converter
// that leaves out the default overlays and this namespace's own traffic.
func connectionPipeline(cfg *pipeline.Config) error {
	local := localaddr.New()
	if err := local.Refresh(); err != nil {
		return err
	}
	defaults := nft.DefaultOverlays()
	overlays := make([]ctflow.Overlay, len(defaults))
	for i, o := range defaults {
		overlays[i] = ctflow.Overlay{Name: o.Name, Proto: o.Proto, Port: o.Port}
	}
	cfg.Conns = ctflow.New(ctflow.Config{Overlays: overlays, Local: local})
	return nil
}

// connMode is a consumer's conntrack source in connection mode.
type connMode struct {
	src  *conntrack.Source
	pipe *pipeline.Pipeline
}

// startConnection starts a conntrack source with podflow's defaults but
// the dump interval, feeding pipe, and returns once its first dump (the
// baseline) is applied, so that every connection of the run counts from
// zero.
func startConnection(ctx context.Context, pipe *pipeline.Pipeline, interval time.Duration) (*connMode, error) {
	src, err := conntrack.New(conntrack.Config{DumpInterval: interval, EnableAccounting: true})
	if err != nil {
		return nil, err
	}
	errc := make(chan error, 1)
	go func() { errc <- src.Run(ctx, pipe.HandleConns) }()
	for deadline := time.Now().Add(10 * time.Second); src.Stats().Dumps == 0; time.Sleep(10 * time.Millisecond) {
		select {
		case err := <-errc:
			return nil, err
		default:
		}
		if time.Now().After(deadline) {
			_ = src.Close()
			return nil, errors.New("the conntrack source's first dump did not complete in 10s")
		}
	}
	return &connMode{src: src, pipe: pipe}, nil
}

// fill adds the source's and the pipeline's conntrack counters to r.
func (m *connMode) fill(r *report) {
	s := m.src.Stats()
	r.CTEvents, r.CTLostEvents, r.CTDumpErrors, r.CTLost = s.Events, s.LostEvents, s.DumpErrors, s.Lost
	r.ConnsQueueFull = m.pipe.Stats().ConnsQueueFull
}
