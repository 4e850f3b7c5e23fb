# The exporter: build, unit tests, root integration tests, fuzzing, benchmarks.

GO_LDFLAGS := -s -w \
	-X github.com/prometheus/common/version.Version=$(VERSION) \
	-X github.com/prometheus/common/version.Revision=$(REVISION) \
	-X github.com/prometheus/common/version.Branch=main

.PHONY: build
build: ## Build the static podflow binary into bin/podflow.
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(GO_LDFLAGS)' -o $(BIN_DIR)/podflow ./exporter/cmd/podflow

.PHONY: test-unit
test-unit: ## Unit tests of the root module, under -race (the daemon's root integration tests run in test-integration).
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v '/exporter/integration$$')

TEST_TARGETS += test-unit

.PHONY: fuzz
fuzz: ## Run each fuzz target briefly (FUZZTIME, default 20s).
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(or $(FUZZTIME),20s) ./exporter/internal/decode
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(or $(FUZZTIME),20s) ./exporter/internal/networks
TEST_TARGETS += fuzz

.PHONY: test-integration
test-integration: $(PROMTOOL) ## Root integration tests of the real daemon in network namespaces: exact counts, signals, restarts, loss.
	$(GO) test -race -count=1 ./exporter/integration/...
TEST_TARGETS += test-integration

.PHONY: bench
bench: ## Benchmarks of the exporter's packages: ns/op, allocs/op, bytes per series, scrape CPU time.
	$(GO) test -run '^$$' -bench . -benchmem ./exporter/...

# NFLOG capture and the nftables table (exporter/internal/capture, exporter/internal/nft).
.PHONY: fuzz-capture
fuzz-capture: ## Fuzz the NFLOG batch parser briefly (FUZZTIME, default 20s).
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(or $(FUZZTIME),20s) ./exporter/internal/capture
fuzz: fuzz-capture

# Connection accounting from conntrack (exporter/internal/conntrack).
.PHONY: fuzz-conntrack
fuzz-conntrack: ## Fuzz the ctnetlink decoder against ti-mo/conntrack briefly (FUZZTIME, default 20s).
	$(GO) test -run '^$$' -fuzz '^FuzzParseConn$$' -fuzztime $(or $(FUZZTIME),20s) ./exporter/internal/conntrack
fuzz: fuzz-conntrack

.PHONY: bench-system
bench-system: ## System benchmark of capture (root): packet and connection mode beside the router's baselines, connection setup rate, podflow vs bare go-nflog, Service naming (BENCH_SYSTEM_FLAGS='-parts modes,setup' selects parts).
	mkdir -p $(BIN_DIR)
	$(GO) build -o $(BIN_DIR)/podflow-sysbench ./exporter/cmd/podflow-sysbench
	$(BIN_DIR)/podflow-sysbench $(BENCH_SYSTEM_FLAGS)
