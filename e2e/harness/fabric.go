package harness

import (
	"fmt"
	"net/netip"
)

// Outside addresses live on the fabric namespace, which routes for the
// cluster like an upstream router would (routed, never NATed). They are
// documentation ranges, reachable only inside the sandbox.
var (
	OutsideCorpV4     = netip.MustParseAddr("198.51.100.10")
	OutsideCorpV6     = netip.MustParseAddr("2001:db8:100::10")
	OutsideDenyV4     = netip.MustParseAddr("203.0.113.66")
	OutsideDenyV6     = netip.MustParseAddr("2001:db8:666::66")
	OutsideInternetV4 = netip.MustParseAddr("192.0.2.80")
)

// NetworksFile is the --networks.file every podflow of the sandbox reads.
const NetworksFile = `# Named networks outside the e2e cluster.
networks:
  corp:
    - 198.51.100.0/24
    - 2001:db8:100::/48
  denylist-tor:
    - 203.0.113.0/24
    - 2001:db8:666::/48
  customers:
    - 198.18.0.0/24
    - 2001:db8:18::/64
`

func (e *Env) setupFabric() error {
	fab, err := e.newNetNS("fab")
	if err != nil {
		return err
	}
	e.Fabric = fab
	for _, kv := range [][2]string{
		{"net.ipv4.ip_forward", "1"},
		{"net.ipv6.conf.all.forwarding", "1"},
		{"net.ipv6.conf.all.accept_dad", "0"},
		{"net.ipv6.conf.default.accept_dad", "0"},
		{"net.ipv4.conf.all.send_redirects", "0"},
		{"net.ipv4.conf.default.send_redirects", "0"},
	} {
		if err := fab.Sysctl(kv[0], kv[1]); err != nil {
			return err
		}
	}
	steps := [][]string{
		{"link", "add", "br0", "type", "bridge"},
		{"link", "set", "br0", "up"},
		{"addr", "add", fabricV4 + "/24", "dev", "br0"},
		{"addr", "add", fabricV6 + "/64", "dev", "br0", "nodad"},
	}
	for _, a := range []netip.Addr{OutsideCorpV4, OutsideDenyV4, OutsideInternetV4} {
		steps = append(steps, []string{"addr", "add", a.String() + "/32", "dev", "lo"})
	}
	for _, a := range []netip.Addr{OutsideCorpV6, OutsideDenyV6} {
		steps = append(steps, []string{"addr", "add", a.String() + "/128", "dev", "lo", "nodad"})
	}
	for _, s := range steps {
		if err := fab.IP(s...); err != nil {
			return err
		}
	}
	cp, err := e.newNetNS("cp")
	if err != nil {
		return err
	}
	e.CPNS = cp
	return e.attach(cp, "vcp", cpV4, cpV6)
}

// attach links ns to the fabric bridge with eth0 at v4/v6 and a default route
// through the fabric.
func (e *Env) attach(ns *NetNS, port, v4, v6 string) error {
	for _, kv := range [][2]string{
		{"net.ipv6.conf.all.accept_dad", "0"},
		{"net.ipv6.conf.default.accept_dad", "0"},
	} {
		if err := ns.Sysctl(kv[0], kv[1]); err != nil {
			return err
		}
	}
	if err := e.Fabric.IP("link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns.Name); err != nil {
		return err
	}
	steps := [][]string{
		{"link", "set", port, "master", "br0"},
		{"link", "set", port, "up"},
	}
	for _, s := range steps {
		if err := e.Fabric.IP(s...); err != nil {
			return err
		}
	}
	steps = [][]string{
		{"addr", "add", v4 + "/24", "dev", "eth0"},
		{"addr", "add", v6 + "/64", "dev", "eth0", "nodad"},
		{"link", "set", "eth0", "up"},
		{"route", "add", "default", "via", fabricV4},
		{"-6", "route", "add", "default", "via", fabricV6},
	}
	for _, s := range steps {
		if err := ns.IP(s...); err != nil {
			return fmt.Errorf("attach %s: %w", ns.Name, err)
		}
	}
	if err := e.wireOnly(ns); err != nil {
		return err
	}
	return nil
}
