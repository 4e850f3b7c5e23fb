package conntrack

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// acctPath is nf_conntrack_acct of the network namespace of the thread
// that opens it: /proc/sys/net follows the opener's namespace, and an
// open file keeps reading that namespace's setting from any thread.
const acctPath = "/proc/sys/net/netfilter/nf_conntrack_acct"

// accounting reads nf_conntrack_acct of one namespace.
type accounting struct {
	f   *os.File
	buf [8]byte
}

// openAccounting opens the setting of the current thread's namespace.
func openAccounting() (*accounting, error) {
	f, err := os.Open(acctPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("conntrack: %s is missing: is nf_conntrack loaded in this network namespace?", acctPath)
	}
	if err != nil {
		return nil, fmt.Errorf("conntrack: read the accounting setting: %w", err)
	}
	return &accounting{f: f}, nil
}

// on reports whether accounting is on now.
func (a *accounting) on() (bool, error) {
	n, err := a.f.ReadAt(a.buf[:], 0)
	if n == 0 && err != nil {
		return false, fmt.Errorf("conntrack: read %s: %w", acctPath, err)
	}
	return string(bytes.TrimSpace(a.buf[:n])) != "0", nil
}

// enable sets nf_conntrack_acct to 1 in the current thread's namespace.
// Only connections created afterwards carry counters. /proc/sys is often
// read-only in a container: something else (an nftables rule that reads
// ct bytes) may then turn it on.
func enableAccounting() error {
	if err := os.WriteFile(acctPath, []byte("1\n"), 0o644); err != nil { //nolint:gosec // a sysctl: its mode is the kernel's
		return fmt.Errorf("conntrack: enable accounting (net.netfilter.nf_conntrack_acct=1): %w", err)
	}
	return nil
}

func (a *accounting) close() error { return a.f.Close() }
