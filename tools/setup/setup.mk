# One setup for every target that needs the machine prepared: the Debian
# packages of tools/setup/packages.txt and the kernel modules of
# tools/setup/modules.txt. Idempotent and quick when nothing is missing.

.PHONY: setup
setup: ## Install the missing Debian packages of tools/setup/packages.txt (root; says what it installs) and load the kernel modules.
	@tools/setup/setup.sh

# The check must be able to fail: it runs once on a scratch repository that
# installs a package on its own, and must reject it.
.PHONY: check-setup
check-setup: setup ## Check that tools/setup/packages.txt is the only package list and that every package on it is installed.
	@tools/setup/check.sh
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
		git -C $$tmp init -q && printf 'apt-get install -y jq\n' >$$tmp/install.sh && git -C $$tmp add install.sh && \
		if tools/setup/check.sh $$tmp 2>/dev/null; then echo "check-setup: accepted a stray apt-get install" >&2; exit 1; fi
	@echo "check-setup: tools/setup/packages.txt is the only package list, and it is installed"

TEST_TARGETS += check-setup
