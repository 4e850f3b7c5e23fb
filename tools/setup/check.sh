#!/usr/bin/env bash
# Checks that tools/setup/packages.txt is the repository's only list of
# Debian packages: no tracked file outside tools/setup installs packages with
# apt itself, and after `make setup` none of the listed packages is missing.
#
#   check.sh          the checkout this script is in, and this machine
#   check.sh REPO     only the first check, on the git checkout REPO
set -euo pipefail
dir="$(cd "$(dirname "$0")" && pwd)"
repo="${1:-$dir/../..}"

fail=0
# An install by apt, apt-get or aptitude on one line, in any file git tracks.
if hits=$(git -C "$repo" grep -n -I -E '\b(apt|apt-get|aptitude)\b[^#]*\binstall\b' -- . ':!tools/setup/'); then
  echo "check-setup: packages installed outside tools/setup/packages.txt (add them there; \`make setup\` installs them):" >&2
  echo "$hits" >&2
  fail=1
fi

if [[ -z "${1:-}" ]]; then
  if missing=$("$dir/setup.sh" -n) && [[ -n "$missing" ]]; then
    echo "check-setup: listed but not installed (run \`make setup\` as root):" $missing >&2
    fail=1
  fi
fi
exit $fail
