# End-to-end tests and the local sandbox: a real kube-apiserver and etcd,
# nodes and pods in network namespaces, podflow on every node, Prometheus
# with the shipped rules and Alertmanager with the shipped routes.
#
# The control-plane binaries are built once per pinned version from
# e2e/tools/kube/go.mod into $(PODFLOW_CACHE)/bin and reused afterwards.

KUBE_VERSION  := v1.37.2
ETCD_VERSION  := v3.7.0
KUBE_APISERVER          := $(TOOLS_BIN)/kube-apiserver-$(KUBE_VERSION)
KUBE_CONTROLLER_MANAGER := $(TOOLS_BIN)/kube-controller-manager-$(KUBE_VERSION)
KUBE_PROXY              := $(TOOLS_BIN)/kube-proxy-$(KUBE_VERSION)
ETCD                    := $(TOOLS_BIN)/etcd-$(ETCD_VERSION)
export KUBE_APISERVER KUBE_CONTROLLER_MANAGER KUBE_PROXY ETCD

KUBE_LDFLAGS := -s -w \
	-X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) \
	-X k8s.io/component-base/version.gitMajor=$(word 2,$(subst ., ,$(subst v,v ,$(KUBE_VERSION)))) \
	-X k8s.io/component-base/version.gitMinor=$(word 3,$(subst ., ,$(subst v,v ,$(KUBE_VERSION)))) \
	-X k8s.io/component-base/version.gitTreeState=clean \
	-X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z

# kube-apiserver, kube-controller-manager and kube-proxy, each from
# k8s.io/kubernetes/cmd/<name> of the pinned module.
$(TOOLS_BIN)/kube-%-$(KUBE_VERSION):
	@echo ">> building kube-$* $(KUBE_VERSION) (once, several minutes; cached in $(TOOLS_BIN))"
	@mkdir -p $(TOOLS_BIN)
	cd e2e/tools/kube && $(GO) build -trimpath -ldflags '$(KUBE_LDFLAGS)' -o $@.tmp k8s.io/kubernetes/cmd/kube-$*
	@mv $@.tmp $@
	@echo ">> kube-$* $(KUBE_VERSION) ready: $@"

$(ETCD):
	@echo ">> building etcd $(ETCD_VERSION) (once; cached in $(TOOLS_BIN))"
	@mkdir -p $(TOOLS_BIN)
	cd e2e/tools/kube && $(GO) build -trimpath -ldflags '-s -w' -o $@.tmp ./cmd/etcd
	@mv $@.tmp $@
	@echo ">> etcd $(ETCD_VERSION) ready: $@"

# Alertmanager with its new web UI, built by tools/tools.mk.
E2E_ALERTMANAGER := $(ALERTMANAGER)

.PHONY: e2e-tools
e2e-tools: $(KUBE_APISERVER) $(KUBE_CONTROLLER_MANAGER) $(KUBE_PROXY) $(ETCD) $(PROMETHEUS) $(E2E_ALERTMANAGER) $(PROMTOOL) $(AMTOOL) ## Build the pinned kube-apiserver, kube-controller-manager, kube-proxy, etcd, Prometheus, Alertmanager, promtool and amtool (cached by version).

# E2E_RUN narrows a run to some scenarios (go test -run), e.g.
# make e2e E2E_RUN='TestDataPath|TestPolicyFromBaseline'; empty runs all.
E2E_RUN ?=

PODFLOW_BIN   ?= $(BIN_DIR)/podflow
E2E_RULES_DIR ?= $(CURDIR)/e2e/.cache/rules
export PODFLOW_BIN E2E_RULES_DIR

# Test-speed rules: the shipped templates rendered with e2e/testdata/rules-values.yaml.
.PHONY: e2e-rules
e2e-rules: ## Render the shipped rule templates at test speed (e2e/testdata/rules-values.yaml) for the e2e run and the demo.
	@mkdir -p $(E2E_RULES_DIR)
	@rm -f $(E2E_RULES_DIR)/*.rules.yaml
	@if [ -d rules/cmd/rulegen ]; then $(GO) run ./rules/cmd/rulegen -config e2e/testdata/rules-values.yaml -out $(E2E_RULES_DIR) >/dev/null; fi

# The Prometheus Operator CRDs the manifests need, from the operator's module
# (example/prometheus-operator-crd) in the Go module cache.
PROMETHEUS_OPERATOR_VERSION := v0.94.0
E2E_CRDS = $$($(GO) mod download -json github.com/prometheus-operator/prometheus-operator@$(PROMETHEUS_OPERATOR_VERSION) | sed -n 's/.*"Dir": "\(.*\)",/\1/p')/example/prometheus-operator-crd

.PHONY: e2e
e2e: setup build topology e2e-tools e2e-rules ## End-to-end scenarios on a real kube-apiserver, nodes in network namespaces, Prometheus and Alertmanager, pages checked in headless Chromium (root).
	@echo ">> e2e: running the scenarios (logs of a failed run are kept; see the last lines)"
	cd e2e && $(GO) test -count=1 ./harness/
	cd e2e && E2E_CAPTURE_MODE=packet ALERTMANAGER=$(E2E_ALERTMANAGER) PROMETHEUS_OPERATOR_CRDS=$(E2E_CRDS) $(GO) test -count=1 -timeout 35m -v -run '$(E2E_RUN)' .

TEST_TARGETS += e2e

# The data-path scenarios (Services through kube-proxy, NodePorts, load
# balancers, hairpin, hostNetwork, rollout, exact counts) a second time on
# the other kube-proxy mode and the other fabric: make e2e runs nftables on
# the routed fabric, this runs iptables (iptables-nft) on the VXLAN overlay;
# both with podflow in packet mode.
# Prometheus only scrapes here: no baseline, rules or Alertmanager.
E2E_DATAPATH_TESTS := TestExact|TestDestinations|TestHostNetworkPod|TestDataPath|TestRollout

.PHONY: e2e-datapath
e2e-datapath: build e2e-tools ## The data-path e2e scenarios again: kube-proxy in iptables mode, nodes joined by a VXLAN overlay (root).
	@echo ">> e2e-datapath: kube-proxy iptables mode, overlay fabric"
	cd e2e && E2E_CAPTURE_MODE=packet E2E_PROXY_MODE=iptables E2E_FABRIC=overlay E2E_SCRAPE_ONLY=1 ALERTMANAGER=$(E2E_ALERTMANAGER) \
		$(GO) test -count=1 -timeout 15m -v -run '^($(E2E_DATAPATH_TESTS))' .

TEST_TARGETS += e2e-datapath

# The exact-count scenarios once more with podflow in connection mode
# (--capture.mode=connection: the table logs what starts a connection,
# conntrack's accounting brings the bytes and packets), on the routed fabric
# with kube-proxy in nftables mode; e2e-datapath covers the other kube-proxy
# mode and fabric. Prometheus only scrapes.
E2E_CONNECTION_TESTS := $(E2E_DATAPATH_TESTS)|TestRecurringFlowIsCountedInFull

.PHONY: e2e-connection
e2e-connection: build e2e-tools ## The exact-count e2e scenarios with podflow in connection mode (conntrack accounting), kube-proxy nftables, routed fabric (root).
	@echo ">> e2e-connection: podflow in connection mode, kube-proxy nftables mode, routed fabric"
	cd e2e && E2E_CAPTURE_MODE=connection E2E_PROXY_MODE=nftables E2E_FABRIC=routed E2E_SCRAPE_ONLY=1 ALERTMANAGER=$(E2E_ALERTMANAGER) \
		$(GO) test -count=1 -timeout 15m -v -run '^($(E2E_CONNECTION_TESTS))' .

TEST_TARGETS += e2e-connection

DEMO_FLAGS ?=

.PHONY: demo
demo: setup build topology e2e-tools e2e-rules ## Run the local sandbox: nodes, pods, podflow, Prometheus, Alertmanager, traffic and a live alert (root; Ctrl-C cleans up).
	@echo ">> demo: starting the sandbox (Ctrl-C stops it and removes everything)"
	cd e2e && $(GO) build -o $(BIN_DIR)/podflow-demo ./cmd/demo
	cd e2e && ALERTMANAGER=$(E2E_ALERTMANAGER) $(BIN_DIR)/podflow-demo -repo $(CURDIR) $(DEMO_FLAGS)
