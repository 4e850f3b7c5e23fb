package harness

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// NetNS is a named network namespace (ip netns) that the harness created and
// deletes on teardown.
type NetNS struct {
	Name string
}

// ip runs `ip args...` in the root namespace; every call names the target
// namespace with -n so that nothing is ever configured in the host's own.
func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func newNetNS(name string) (*NetNS, error) {
	if err := ip("netns", "add", name); err != nil {
		return nil, err
	}
	ns := &NetNS{Name: name}
	if err := ns.IP("link", "set", "lo", "up"); err != nil {
		return ns, err
	}
	return ns, nil
}

// IP runs `ip -n <ns> args...`.
func (ns *NetNS) IP(args ...string) error {
	return ip(append([]string{"-n", ns.Name}, args...)...)
}

// Exec runs a command inside the namespace and returns its combined output.
func (ns *NetNS) Exec(name string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %s %s: %v: %s", ns.Name, name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Sysctl sets a sysctl inside the namespace.
func (ns *NetNS) Sysctl(key, value string) error {
	_, err := ns.Exec("sysctl", "-qw", key+"="+value)
	return err
}

// Nft loads a ruleset file (text) into the namespace's nftables.
func (ns *NetNS) Nft(ruleset string) error {
	cmd := exec.Command("ip", "netns", "exec", ns.Name, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: nft: %v: %s", ns.Name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (ns *NetNS) delete() error {
	return ip("netns", "del", ns.Name)
}

// Do runs fn on an OS thread switched into the namespace. Sockets created by
// fn belong to the namespace for their whole life, so a listener or a
// connection made here keeps working after the thread switches back.
func (ns *NetNS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is not unlocked on failure to switch back: Go then
		// retires it instead of reusing a thread in the wrong namespace.
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + ns.Name)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns.Name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns back: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Dial opens a connection from inside the namespace.
func (ns *NetNS) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Listen opens a listener inside the namespace.
func (ns *NetNS) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := ns.Do(func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// ListenPacket opens a packet socket inside the namespace.
func (ns *NetNS) ListenPacket(network, addr string) (net.PacketConn, error) {
	var l net.PacketConn
	err := ns.Do(func() error {
		var err error
		l, err = net.ListenPacket(network, addr)
		return err
	})
	return l, err
}
