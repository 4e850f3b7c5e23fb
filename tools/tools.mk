# Pinned tools, built from tools/go.mod into $(PODFLOW_CACHE)/bin/<name>-<version>
# so that a version bump rebuilds and everything else reuses the binary.

PROMETHEUS_VERSION   := v0.316.0
ALERTMANAGER_VERSION := v0.35.0
TOOLS_BIN            := $(PODFLOW_CACHE)/bin

PROMTOOL     := $(TOOLS_BIN)/promtool-$(PROMETHEUS_VERSION)
PROMETHEUS   := $(TOOLS_BIN)/prometheus-ui-$(PROMETHEUS_VERSION)
AMTOOL       := $(TOOLS_BIN)/amtool-$(ALERTMANAGER_VERSION)
ALERTMANAGER := $(TOOLS_BIN)/alertmanager-ui-$(ALERTMANAGER_VERSION)
export PROMTOOL PROMETHEUS AMTOOL ALERTMANAGER

$(PROMTOOL):
	@echo ">> building promtool $(PROMETHEUS_VERSION) (once; cached in $(TOOLS_BIN))"
	@mkdir -p $(TOOLS_BIN)
	cd tools && $(GO) build -o $@ github.com/prometheus/prometheus/cmd/promtool

# Prometheus with its web UI, built from the module's own source the way its
# release build does: Node.js and pnpm from the npm registry, web/ui's build,
# then go build -tags builtinassets (tools/webui/prometheus.sh says how).
$(PROMETHEUS): | setup
	@echo ">> building prometheus $(PROMETHEUS_VERSION) with its web UI (once, several minutes; cached in $(TOOLS_BIN))"
	@mkdir -p $(TOOLS_BIN)
	GO=$(GO) PROMETHEUS_VERSION=$(PROMETHEUS_VERSION) tools/webui/prometheus.sh $@

$(AMTOOL):
	@echo ">> building amtool $(ALERTMANAGER_VERSION) (once; cached in $(TOOLS_BIN))"
	@mkdir -p $(TOOLS_BIN)
	cd tools && $(GO) build -o $@ github.com/prometheus/alertmanager/cmd/amtool

# Alertmanager as published on the module proxy lacks its compiled web UI
# (ui/app/dist, which ui/web.go embeds), so `go build` of the module fails.
# tools/webui/alertmanager.sh builds the new (React) UI from the module's
# source and puts a one-page stand-in where the classic (Elm) UI goes: Elm's
# packages come from outside the registries (the script says more).
$(ALERTMANAGER): | setup
	@echo ">> building alertmanager $(ALERTMANAGER_VERSION) with its web UI (once; cached in $(TOOLS_BIN))"
	@mkdir -p $(TOOLS_BIN)
	GO=$(GO) ALERTMANAGER_VERSION=$(ALERTMANAGER_VERSION) tools/webui/alertmanager.sh $@

.PHONY: tools
tools: $(PROMTOOL) $(AMTOOL) $(PROMETHEUS) $(ALERTMANAGER) ## Build the pinned promtool, amtool, and Prometheus and Alertmanager with their web UIs (cached by version).

GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT         := $(TOOLS_BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)

$(GOLANGCI_LINT):
	@echo ">> building golangci-lint $(GOLANGCI_LINT_VERSION) (once; cached in $(TOOLS_BIN))"
	@mkdir -p $(TOOLS_BIN)
	cd tools/lint && $(GO) build -o $@ github.com/golangci/golangci-lint/v2/cmd/golangci-lint

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Lint the root module (and the modules other fragments add, such as dashboards/) with the pinned golangci-lint and .golangci.yml; check go.mod is tidy.
	$(GOLANGCI_LINT) run ./...
	$(GO) mod tidy -diff

TEST_TARGETS += lint
