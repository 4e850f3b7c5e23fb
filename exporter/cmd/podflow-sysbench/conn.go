package main

import (
	"context"
	"errors"
	"time"

	"github.com/podflow/podflow/exporter/internal/nft"
	"github.com/podflow/podflow/exporter/internal/pipeline"
)

// connectionTable makes cfg the table of connection mode.
func connectionTable(cfg *nft.Config) { cfg.Connection = true }

// connectionPipeline makes cfg a pipeline of connection mode.
func connectionPipeline(*pipeline.Config) {}

// connMode is a consumer's conntrack source in connection mode.
type connMode struct{}

// startConnection starts the conntrack source that feeds pipe.
func startConnection(context.Context, *pipeline.Pipeline, time.Duration) (*connMode, error) {
	return nil, errors.New("connection mode needs the conntrack source, not wired into the benchmark yet")
}

// fill adds the source's counters to r.
func (*connMode) fill(*report) {}
