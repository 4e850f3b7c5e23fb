# Pinned tools, built from tools/go.mod into $(PODFLOW_CACHE)/bin/<name>-<version>
# so that a version bump rebuilds and everything else reuses the binary.

PROMETHEUS_VERSION   := v0.316.0
ALERTMANAGER_VERSION := v0.35.0
TOOLS_BIN            := $(PODFLOW_CACHE)/bin

PROMTOOL     := $(TOOLS_BIN)/promtool-$(PROMETHEUS_VERSION)
PROMETHEUS   := $(TOOLS_BIN)/prometheus-$(PROMETHEUS_VERSION)
AMTOOL       := $(TOOLS_BIN)/amtool-$(ALERTMANAGER_VERSION)
ALERTMANAGER := $(TOOLS_BIN)/alertmanager-noui-$(ALERTMANAGER_VERSION)
export PROMTOOL PROMETHEUS AMTOOL ALERTMANAGER

$(PROMTOOL):
	@echo ">> building promtool $(PROMETHEUS_VERSION) (once; cached in $(TOOLS_BIN))"
	@mkdir -p $(TOOLS_BIN)
	cd tools && $(GO) build -o $@ github.com/prometheus/prometheus/cmd/promtool

$(PROMETHEUS):
	@echo ">> building prometheus $(PROMETHEUS_VERSION) (once; cached in $(TOOLS_BIN))"
	@mkdir -p $(TOOLS_BIN)
	cd tools && $(GO) build -o $@ github.com/prometheus/prometheus/cmd/prometheus

$(AMTOOL):
	@echo ">> building amtool $(ALERTMANAGER_VERSION) (once; cached in $(TOOLS_BIN))"
	@mkdir -p $(TOOLS_BIN)
	cd tools && $(GO) build -o $@ github.com/prometheus/alertmanager/cmd/amtool

# Alertmanager as published on the module proxy lacks its compiled web UI
# (ui/app/dist, which ui/web.go embeds), so `go build` of the module fails.
# Build a copy of the module source with a one-page stand-in for the UI;
# the API under /api/v2 is the real one.
$(ALERTMANAGER):
	@echo ">> building alertmanager $(ALERTMANAGER_VERSION) without the web UI (once; cached in $(TOOLS_BIN))"
	@mkdir -p $(TOOLS_BIN)
	@src=$(PODFLOW_CACHE)/src/alertmanager-$(ALERTMANAGER_VERSION) && rm -rf $$src && mkdir -p $(PODFLOW_CACHE)/src && \
		dir=$$(cd tools && $(GO) mod download -json github.com/prometheus/alertmanager@$(ALERTMANAGER_VERSION) | sed -n 's/.*"Dir": "\(.*\)",/\1/p') && \
		cp -r $$dir $$src && chmod -R u+w $$src && \
		for d in elm mantine; do mkdir -p $$src/ui/app/dist/$$d/assets && cp tools/amui/index.html $$src/ui/app/dist/$$d/index.html; done && \
		cd $$src && GOFLAGS=-mod=mod $(GO) build -o $@.tmp ./cmd/alertmanager
	@rm -rf $(PODFLOW_CACHE)/src/alertmanager-$(ALERTMANAGER_VERSION)
	@mv $@.tmp $@

.PHONY: tools
tools: $(PROMTOOL) $(AMTOOL) $(PROMETHEUS) $(ALERTMANAGER) ## Build the pinned promtool, amtool, Prometheus and Alertmanager (cached by version).

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
