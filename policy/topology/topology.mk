# The topology picture: podflow-topology reads Prometheus and draws the
# workload communication graph (DOT, SVG through Graphviz, HTML).

PODFLOW_TOPOLOGY ?= $(BIN_DIR)/podflow-topology
export PODFLOW_TOPOLOGY

.PHONY: topology
topology: ## Build podflow-topology into bin/: the communication graph from Prometheus as DOT, SVG and HTML.
	cd policy && $(GO) build -o $(PODFLOW_TOPOLOGY) ./cmd/podflow-topology

.PHONY: test-topology
test-topology: setup ## Unit tests of the topology picture and the Prometheus client it shares (Graphviz from make setup).
	cd policy && $(GO) test -race ./prom/... ./topology/... ./cmd/podflow-topology/...

TEST_TARGETS += test-topology
