#!/usr/bin/env bash
# Builds Alertmanager from the pinned module's source with the web UI that
# builds from the registries alone:
#
#   - the new UI (ui/mantine-ui, React, served at /ui/) the way
#     Alertmanager's Makefile builds it (npm install, npm run build into
#     ui/app/dist/mantine), with the override described below;
#   - the classic UI (ui/app, Elm, served at /) cannot be built here: the
#     Elm compiler is on the npm registry (@elm_binaries/linux_x64), but it
#     takes the Elm packages the UI depends on (elm/core, elm/browser, ...)
#     only from package.elm-lang.org, which is not a registry this build
#     reaches. The new UI's alerts page is still a placeholder in this
#     version, so a small page of ours (alertmanager-elm.html) takes the
#     classic UI's place: it lists the alerts from /api/v2/alerts.
#
#   alertmanager.sh OUT   OUT is the binary to write
# Environment: PODFLOW_CACHE, GO, ALERTMANAGER_VERSION (the module version).
set -euo pipefail
out="$1"
here="$(cd "$(dirname "$0")" && pwd)"
: "${GO:=go}" "${PODFLOW_CACHE:?}" "${ALERTMANAGER_VERSION:?}"
# shellcheck source=node.sh
source "$here/node.sh"

src=$(module_src github.com/prometheus/alertmanager "$ALERTMANAGER_VERSION")
trap 'rm -rf "$src"' EXIT

cd "$src/ui/mantine-ui"
# The lockfile pins @mantine/code-highlight 9.7.3, which the npm registry no
# longer serves (its versions go from 9.6.2 to 9.8.1); 9.6.2 runs on the
# lockfile's @mantine/core 9.7.3, a minor version ahead of its own peer
# (hence --legacy-peer-deps). npm takes no override of a direct
# dependency, so package.json names 9.6.2 itself.
node -e '
  const fs = require("fs");
  const p = JSON.parse(fs.readFileSync("package.json"));
  p.dependencies["@mantine/code-highlight"] = "9.6.2";
  fs.writeFileSync("package.json", JSON.stringify(p, null, 2));
'
echo ">> webui: npm install (Alertmanager ui/mantine-ui)"
quiet install.log npm install --legacy-peer-deps --no-audit --no-fund --cache "$PODFLOW_CACHE/npm-cache"
echo ">> webui: building Alertmanager's mantine UI (npm run build)"
quiet build.log npm run build
# ui/web.go serves HTML only compressed: brotli to a browser that takes
# it, gzip otherwise, as the UI's own build writes them.
mkdir -p "$src/ui/app/dist/elm/assets"
node -e '
  const fs = require("fs"), zlib = require("zlib");
  const [src, dst] = process.argv.slice(1);
  const html = fs.readFileSync(src);
  fs.writeFileSync(dst + ".gz", zlib.gzipSync(html, { level: 9 }));
  fs.writeFileSync(dst + ".br", zlib.brotliCompressSync(html));
' "$here/alertmanager-elm.html" "$src/ui/app/dist/elm/index.html"

echo ">> webui: go build ./cmd/alertmanager"
cd "$src"
GOWORK=off GOFLAGS=-mod=mod "$GO" build -trimpath -o "$out.tmp" \
  -ldflags "-s -w -X github.com/prometheus/common/version.Version=$(cat VERSION) -X github.com/prometheus/common/version.Revision=$ALERTMANAGER_VERSION -X github.com/prometheus/common/version.Branch=HEAD -X github.com/prometheus/common/version.BuildUser=podflow" \
  ./cmd/alertmanager
mv "$out.tmp" "$out"
