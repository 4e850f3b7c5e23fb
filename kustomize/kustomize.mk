# Deployment: the manifests generated from rules/ and dashboards/, the
# container image, and the checks of both.

IMAGE_REPO    ?= ghcr.io/podflow/podflow
IMAGE_TARBALL := $(BIN_DIR)/podflow-image.tar
IMAGE_LAYOUT  := $(BIN_DIR)/image

.PHONY: manifests
manifests: ## Regenerate kustomize/overlays/*/generated from rules/ and dashboards/.
	$(GO) run ./kustomize/cmd/manifestgen

.PHONY: image
image: build ## Build the OCI image of bin/podflow without a container engine (bin/image/, bin/podflow-image.tar).
	cd tools && $(GO) run ./imagebuild -binary $(BIN_DIR)/podflow -repository $(IMAGE_REPO) \
		-version $(VERSION) -revision $(REVISION) -layout $(IMAGE_LAYOUT) -tarball $(IMAGE_TARBALL)

# The shipped image (and the daemon's real flags) are checked once the daemon
# exists; before that the tests use the contract's flag list and a stand-in
# binary.
KUSTOMIZE_IMAGE_DEPS := $(if $(wildcard exporter/cmd/podflow/main.go),image)
KUSTOMIZE_TEST_ENV   := $(if $(KUSTOMIZE_IMAGE_DEPS),PODFLOW_BINARY=$(BIN_DIR)/podflow PODFLOW_IMAGE=$(IMAGE_TARBALL))

.PHONY: test-kustomize
test-kustomize: $(KUSTOMIZE_IMAGE_DEPS) ## Check generated manifests for drift, every overlay and component build, and the image.
	$(GO) test -count=1 ./kustomize/...
	cd tools && $(KUSTOMIZE_TEST_ENV) $(GO) test -count=1 ./kustomizecheck/ ./imagebuild/

TEST_TARGETS += test-kustomize
