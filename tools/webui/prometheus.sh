#!/usr/bin/env bash
# Builds Prometheus with its web UI from the pinned module's own source, the
# way Prometheus' release build does (`make assets assets-compress` with
# BUILD_UI=mantine, then `go build -tags netgo,builtinassets`):
#
#   1. Node.js and pnpm (node.sh);
#   2. `pnpm install` of web/ui's workspace from its lockfile, with the
#      overrides of prometheus-overrides.yaml (see there why);
#   3. web/ui's own build_ui.sh --mantine-ui and scripts/compress_assets.sh;
#   4. go build of ./cmd/prometheus in its module with the assets embedded.
#
#   prometheus.sh OUT   OUT is the binary to write
# Environment: PODFLOW_CACHE, GO, PROMETHEUS_VERSION (the module version).
set -euo pipefail
out="$1"
here="$(cd "$(dirname "$0")" && pwd)"
: "${GO:=go}" "${PODFLOW_CACHE:?}" "${PROMETHEUS_VERSION:?}"
# shellcheck source=node.sh
source "$here/node.sh"

src=$(module_src github.com/prometheus/prometheus "$PROMETHEUS_VERSION")
trap 'rm -rf "$src"' EXIT
cat "$here/prometheus-overrides.yaml" >>"$src/web/ui/pnpm-workspace.yaml"

cd "$src/web/ui"
echo ">> webui: pnpm install (Prometheus web/ui workspace)"
# The release-age policy is checked against the registry before resolving;
# it rejects the lockfile's one version the registry no longer serves (see
# prometheus-overrides.yaml), so it is off. Every other entry keeps the
# lockfile's integrity hash.
quiet install.log env npm_config_store_dir="$PODFLOW_CACHE/pnpm-store" \
  pnpm install --no-frozen-lockfile --config.minimum-release-age=0 --reporter=append-only
echo ">> webui: building Prometheus' mantine UI (web/ui/build_ui.sh --mantine-ui)"
quiet build.log env CI="" pnpm run build:mantine-ui
cd "$src"
bash scripts/compress_assets.sh

echo ">> webui: go build -tags netgo,builtinassets ./cmd/prometheus"
# The module's own go.mod and go.sum, not a workspace or tools/go.mod.
GOWORK=off GOFLAGS=-mod=mod "$GO" build -tags netgo,builtinassets -trimpath -o "$out.tmp" \
  -ldflags "-s -w -X github.com/prometheus/common/version.Version=$(cat VERSION) -X github.com/prometheus/common/version.Revision=$PROMETHEUS_VERSION -X github.com/prometheus/common/version.Branch=HEAD -X github.com/prometheus/common/version.BuildUser=podflow" \
  ./cmd/prometheus
mv "$out.tmp" "$out"
