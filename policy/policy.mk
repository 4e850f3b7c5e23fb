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
