package collector

import "github.com/prometheus/client_golang/prometheus"

// NewFlowRegistry returns a registry of the flow series, which serves
// them through the registry's checked and sorted path, for comparison
// with Flows.Gather.
func NewFlowRegistry(flows *Flows) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(flows)
	return reg
}
