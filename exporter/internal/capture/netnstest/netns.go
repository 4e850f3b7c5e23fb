// Package netnstest creates throwaway network namespaces for podflow's
// kernel tests and benchmarks, so that NFLOG groups and nftables tables
// never touch the host's namespace. Namespaces are made and removed with
// ip(8), like an operator would.
package netnstest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// NS is one named network namespace.
type NS struct {
	Name string
	// FD refers to the namespace, for APIs that take a namespace fd.
	FD int
}

// Create adds a namespace called prefix plus a random suffix, with its
// loopback up.
func Create(prefix string) (*NS, error) {
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := prefix + hex.EncodeToString(b[:])
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil { //nolint:gosec // a name of our own making
		return nil, fmt.Errorf("ip netns add %s: %w: %s", name, err, out)
	}
	fd, err := unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		_ = exec.Command("ip", "netns", "del", name).Run()
		return nil, err
	}
	ns := &NS{Name: name, FD: fd}
	if _, err := ns.Run("ip", "link", "set", "lo", "up"); err != nil {
		ns.Close()
		return nil, err
	}
	return ns, nil
}

// Close removes the namespace; processes still inside keep it alive until
// they exit.
func (n *NS) Close() {
	if n.FD > 0 {
		_ = unix.Close(n.FD)
		n.FD = -1
	}
	_ = exec.Command("ip", "netns", "del", n.Name).Run() //nolint:gosec // a name of our own making
}

// Run runs a command inside the namespace and returns its combined output.
func (n *NS) Run(args ...string) (string, error) {
	out, err := n.Command(args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("in %s: %s: %w: %s", n.Name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Command returns a command that runs inside the namespace.
func (n *NS) Command(args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name}, args...)...) //nolint:gosec // tests and benchmarks run their own commands in their own namespaces
}

// RequireRoot skips the test unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root to create network namespaces, NFLOG groups and nftables tables (run as root, e.g. in CI)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipped: ip(8) from iproute2 is not installed")
	}
}

// New creates a namespace for the test and removes it when the test ends,
// failed or not. It skips the test when not root.
func New(t testing.TB, prefix string) *NS {
	t.Helper()
	RequireRoot(t)
	ns, err := Create(prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Close)
	return ns
}

// MustRun runs a command in the namespace and fails the test on error.
func (n *NS) MustRun(t testing.TB, args ...string) string {
	t.Helper()
	out, err := n.Run(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Link connects two namespaces with a veth pair named a and b, gives them
// the addresses (CIDR notation, IPv4 or IPv6, any number) and brings them
// up.
func Link(a *NS, aIf string, aAddrs []string, b *NS, bIf string, bAddrs []string) error {
	if out, err := exec.Command("ip", "link", "add", aIf, "netns", a.Name, "type", "veth", "peer", "name", bIf, "netns", b.Name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip link add %s: %w: %s", aIf, err, out)
	}
	for _, side := range []struct {
		ns    *NS
		ifc   string
		addrs []string
	}{{a, aIf, aAddrs}, {b, bIf, bAddrs}} {
		for _, addr := range side.addrs {
			args := []string{"ip", "addr", "add", addr, "dev", side.ifc}
			if strings.Contains(addr, ":") {
				args = append(args, "nodad")
			}
			if _, err := side.ns.Run(args...); err != nil {
				return err
			}
		}
		if _, err := side.ns.Run("ip", "link", "set", side.ifc, "up"); err != nil {
			return err
		}
	}
	return nil
}

// Do runs fn on an OS thread that has entered the namespace; sockets fn
// opens belong to the namespace and keep working afterwards. If the thread
// cannot return to its namespace it is retired.
func (n *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(n.FD, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", n.Name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns back from %s: %w", n.Name, err)
			return // the thread stays locked and exits with the goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
