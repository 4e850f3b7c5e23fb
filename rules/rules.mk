# Rules: generated recording and alerting rules, their promtool tests,
# Alertmanager routes and the static checks in tools/rulescheck.

RULES_DIR        := rules
RULES_FILES      := $(RULES_DIR)/podflow-recording.rules.yaml $(RULES_DIR)/podflow-alerts.rules.yaml
RULES_TEST_FILES := $(RULES_DIR)/tests/rendered/podflow-recording.rules.yaml $(RULES_DIR)/tests/rendered/podflow-alerts.rules.yaml
ALERTMANAGER_YML := $(RULES_DIR)/alertmanager/alertmanager.yml

.PHONY: rules
rules: ## Regenerate the rule files from rules/config.yaml (the test rendering from rules/tests/values.yaml, and the manifests that carry them).
	$(GO) run ./rules/cmd/rulegen -config $(RULES_DIR)/config.yaml -out $(RULES_DIR)
	$(GO) run ./rules/cmd/rulegen -config $(RULES_DIR)/tests/values.yaml -out $(RULES_DIR)/tests/rendered
	$(GO) run ./kustomize/cmd/manifestgen

# The live inhibition test runs the pinned Alertmanager of tools/tools.mk.
.PHONY: test-rules
test-rules: $(PROMTOOL) $(AMTOOL) $(ALERTMANAGER) ## Rules: drift, promtool check/test, amtool routes, static checks of names, metrics and runbooks.
	$(GO) test -count=1 ./rules/...
	$(PROMTOOL) check rules $(RULES_FILES) $(RULES_TEST_FILES)
	$(PROMTOOL) test rules $(RULES_DIR)/tests/*.test.yaml
	$(AMTOOL) check-config $(ALERTMANAGER_YML)
	cd tools && $(GO) test -count=1 ./rulescheck/...

TEST_TARGETS += test-rules

.PHONY: bench-rules
bench-rules: ## Time each rule group for 1k and 10k workload pairs: the hourly tiers over 35 days of synthetic data, the per-minute tiers over a live hour with churn (slow; not in make test).
	cd tools && $(GO) test -run '^$$' -bench 'BenchmarkHourlyGroups|BenchmarkFastGroups' -benchtime 1x -timeout 90m -v ./rulescheck/...
