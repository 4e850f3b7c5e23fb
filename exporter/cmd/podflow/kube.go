package main

import (
	"context"
	"log/slog"

	"github.com/podflow/podflow/exporter/internal/collector"
	"github.com/podflow/podflow/exporter/internal/flow"
	"github.com/podflow/podflow/exporter/internal/kube"
)

// newKubeIdentity returns the identities of the Kubernetes informers. It
// lists nothing yet: the informers start in Run.
func newKubeIdentity(_ context.Context, cfg *Config, logger *slog.Logger, forget func(flow.Endpoint)) (identitySource, error) {
	nets, err := loadNetworks(cfg)
	if err != nil {
		return nil, err
	}
	src, err := kube.New(&kube.Config{
		PodCIDRs:      cfg.Kube.PodCIDRs,
		ServiceCIDRs:  cfg.Kube.ServiceCIDRs,
		Networks:      nets, // nil without a networks file: private and internet
		Forget:        forget,
		DeletionGrace: cfg.DeletionGrace,
		PodLabels:     cfg.Labels.SourcePod || cfg.Labels.DestinationPod,
		Logger:        logger.With("component", "kubernetes"),
	}, cfg.Kube.Kubeconfig)
	if err != nil {
		return nil, err
	}
	logger.Info("Kubernetes identities", "kubeconfig", cfg.Kube.Kubeconfig, "node", cfg.Kube.NodeName,
		"pod_cidrs", cfg.Kube.PodCIDRs, "service_cidrs", cfg.Kube.ServiceCIDRs)
	return kubeIdentity{src}, nil
}

// kubeIdentity adapts the informers' health to the collector's.
type kubeIdentity struct{ *kube.Source }

func (k kubeIdentity) Stats() []collector.ResourceStats {
	st := k.Source.Stats()
	out := make([]collector.ResourceStats, 0, len(st.Resources))
	for _, r := range st.Resources {
		out = append(out, collector.ResourceStats{Resource: r.Resource, Synced: r.Synced, Errors: r.Errors})
	}
	return out
}
