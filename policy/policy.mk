# The policy tool (its own module, policy/go.mod): NetworkPolicies and
# AdminNetworkPolicies from the traffic podflow recorded, and the diff of a
# cluster's policies against it, judged by kube-network-policies.

.PHONY: build-policy
build-policy: ## Build bin/podflow-policy (generate and diff policies from the recorded baseline).
	cd policy && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(GO_LDFLAGS)' -o $(BIN_DIR)/podflow-policy ./cmd/podflow-policy

.PHONY: test-policy
test-policy: ## Unit tests of the policy module under -race, with kube-network-policies as the judge of the generated policies.
	cd policy && $(GO) test -race -count=1 ./...

TEST_TARGETS += test-policy

.PHONY: lint-policy
lint-policy: $(GOLANGCI_LINT) ## Lint the policy module (policy/.golangci.yml); check its go.mod is tidy.
	cd policy && $(GOLANGCI_LINT) run ./...
	cd policy && $(GO) mod tidy -diff

TEST_TARGETS += lint-policy

# The e2e scenario and the demo run the binary against the sandbox.
PODFLOW_POLICY_BIN ?= $(BIN_DIR)/podflow-policy
export PODFLOW_POLICY_BIN
e2e demo: build-policy

BENCH_POLICY_PAIRS ?= 10000
BENCH_POLICY_ADDR  ?= 127.0.0.1:19190

.PHONY: bench-policy
bench-policy: $(PROMETHEUS) ## Time policy generation for BENCH_POLICY_PAIRS (10k) pairs over 35 days of a synthetic baseline served by a real Prometheus (slow; not in make test).
	@dir=$$(mktemp -d); pid=; \
	trap 'if [ -n "$$pid" ]; then kill $$pid; wait $$pid || true; fi; rm -rf $$dir' EXIT; \
	(cd tools && $(GO) run ./synthbaseline -pairs $(BENCH_POLICY_PAIRS) -out $$dir/data); \
	printf 'global: {}\n' > $$dir/prometheus.yml; \
	$(PROMETHEUS) --config.file=$$dir/prometheus.yml --storage.tsdb.path=$$dir/data --storage.tsdb.retention.time=10y \
		--web.listen-address=$(BENCH_POLICY_ADDR) --log.level=warn & pid=$$!; \
	for i in $$(seq 1 120); do curl -sf http://$(BENCH_POLICY_ADDR)/-/ready >/dev/null && break; sleep 1; done; \
	cd policy && PODFLOW_BENCH_PROMETHEUS=http://$(BENCH_POLICY_ADDR) $(GO) test -run '^$$' -bench BenchmarkGenerateFromPrometheus -benchtime 3x -timeout 30m ./internal/generate/
