# Grafana dashboards: generated from dashboards/cmd/dashgen, checked by
# tools/dashcheck and by promtool over synthetic series.

.PHONY: dashboards
dashboards: ## Regenerate the Grafana dashboards (dashboards/*.json) from dashboards/cmd/dashgen.
	$(GO) run ./dashboards/cmd/dashgen -out dashboards
