# podflow: `make help` lists every target.
#
# Each area keeps its targets in a fragment beside its files (exporter/,
# tools/, rules/, dashboards/, kustomize/, e2e/); this file only ties them
# together. Heavy binaries (promtool, amtool, Prometheus, Alertmanager,
# kube-apiserver) are built once per pinned version into $(PODFLOW_CACHE)
# and reused by every later run, CI included.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

GO            ?= go
PODFLOW_CACHE ?= $(HOME)/.cache/podflow
BIN_DIR       ?= $(CURDIR)/bin
export PODFLOW_CACHE

VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)

.PHONY: help
help: ## List the targets with what they do.
	@awk 'BEGIN {FS = ":.*?## "} /^[a-zA-Z0-9_.-]+:.*?## / {printf "  \033[36m%-20s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST) | sort

include tools/setup/setup.mk
include tools/tools.mk
include exporter/exporter.mk
-include rules/rules.mk
-include dashboards/dashboards.mk
-include kustomize/kustomize.mk
-include policy/topology/topology.mk
-include e2e/e2e.mk
-include policy/policy.mk

# TEST_TARGETS grows as each fragment appends its own test target.
.PHONY: test
test: setup $(TEST_TARGETS) ## Run everything CI runs: unit, integration (root), rules, dashboards, kustomize, e2e.
	@echo "make test: all of $(TEST_TARGETS) passed"
