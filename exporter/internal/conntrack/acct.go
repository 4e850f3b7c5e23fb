package conntrack

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// acctPath is nf_conntrack_acct of the network namespace of the thread
// that opens it: /proc/sys/net follows the opener's namespace.
const acctPath = "/proc/sys/net/netfilter/nf_conntrack_acct"

// ensureAccounting reads nf_conntrack_acct and, when enable is set and it
// is 0, sets it to 1. Only connections created afterwards carry
// counters. It reports whether accounting is on and whether it turned it
// on.
func ensureAccounting(enable bool) (on, enabled bool, err error) {
	b, err := os.ReadFile(acctPath)
	if errors.Is(err, fs.ErrNotExist) {
		return false, false, fmt.Errorf("conntrack: %s is missing: is nf_conntrack loaded in this network namespace?", acctPath)
	}
	if err != nil {
		return false, false, fmt.Errorf("conntrack: read accounting setting: %w", err)
	}
	if string(bytes.TrimSpace(b)) != "0" {
		return true, false, nil
	}
	if !enable {
		return false, false, nil
	}
	if err := os.WriteFile(acctPath, []byte("1\n"), 0o644); err != nil { //nolint:gosec // a sysctl: its mode is the kernel's
		return false, false, fmt.Errorf("conntrack: enable accounting (net.netfilter.nf_conntrack_acct=1): %w", err)
	}
	return true, true, nil
}
