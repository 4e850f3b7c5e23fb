package main

import (
	"context"
	"log/slog"

	"github.com/podflow/podflow/exporter/internal/collector"
	"github.com/podflow/podflow/exporter/internal/flow"
	"github.com/podflow/podflow/exporter/internal/identity"
	"github.com/podflow/podflow/exporter/internal/networks"
)

// newIdentity returns the static identities of --identity.file, or the
// Kubernetes ones.
func newIdentity(ctx context.Context, cfg *Config, logger *slog.Logger, forget func(flow.Endpoint)) (identitySource, error) {
	if cfg.IdentityFile == "" {
		return newKubeIdentity(ctx, cfg, logger, forget)
	}
	nets, err := loadNetworks(cfg)
	if err != nil {
		return nil, err
	}
	s, err := identity.Load(cfg.IdentityFile, nets)
	if err != nil {
		return nil, err
	}
	logger.Info("loaded static identities", "file", cfg.IdentityFile, "entries", s.Len())
	return staticIdentity{s}, nil
}

// loadNetworks reads --networks.file; without it, addresses outside the
// cluster are private or internet.
func loadNetworks(cfg *Config) (*networks.Table, error) {
	if cfg.NetworksFile == "" {
		return nil, nil
	}
	return networks.Load(cfg.NetworksFile)
}

// staticIdentity watches no resource.
type staticIdentity struct{ *identity.Static }

func (staticIdentity) Stats() []collector.ResourceStats { return nil }
