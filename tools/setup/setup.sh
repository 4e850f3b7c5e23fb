#!/usr/bin/env bash
# Installs the Debian packages of tools/setup/packages.txt that are missing
# and loads the kernel modules of tools/setup/modules.txt. Idempotent: when
# everything is there it installs nothing and does not touch apt's lists.
#
#   setup.sh          install what is missing (as root), load the modules
#   setup.sh -n       only print the packages that are missing
set -euo pipefail
dir="$(cd "$(dirname "$0")" && pwd)"

dry=false
[[ "${1:-}" == "-n" ]] && dry=true

# entries FILE: the non-comment lines of FILE, one per line.
entries() { sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e '/^[[:space:]]*$/d' "$1"; }

installed() { [[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" == ii* ]]; }

missing=()
while read -r pkg cmd; do
  if installed "$pkg" || { [[ -n "${cmd:-}" ]] && command -v "$cmd" >/dev/null; }; then
    continue
  fi
  missing+=("$pkg")
done < <(entries "$dir/packages.txt")

if $dry; then
  [[ ${#missing[@]} -eq 0 ]] || printf '%s\n' "${missing[@]}"
  exit 0
fi

if [[ ${#missing[@]} -gt 0 ]]; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing Debian packages: ${missing[*]}; run \`make setup\` as root" >&2
    exit 1
  fi
  echo ">> setup: installing the missing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Loading a module needs root; without it the root-only targets say so.
if [[ $(id -u) -eq 0 ]]; then
  while read -r m; do
    [[ -d /sys/module/$m ]] || modprobe "$m" 2>/dev/null || true
  done < <(entries "$dir/modules.txt")
fi
