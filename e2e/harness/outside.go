package harness

import (
	"fmt"
	"net/netip"
)

// Outside is a client outside the cluster: its own namespace behind the
// fabric, in the network the sandbox's networks file names "customers".
type Outside struct {
	NS   *NetNS
	IPv4 netip.Addr
	IPv6 netip.Addr
}

// OutsideNetwork is the name podflow gives the outside client's addresses.
const OutsideNetwork = "customers"

// Addr of the given family (4 or 6).
func (o *Outside) Addr(family int) netip.Addr {
	if family == 6 {
		return o.IPv6
	}
	return o.IPv4
}

// AddOutsideClient creates the outside client (once; later calls return
// the same one): a namespace linked to the fabric by its own routed link,
// reaching nodes, NodePorts and load balancer addresses as the internet
// would.
func (e *Env) AddOutsideClient() (*Outside, error) {
	if e.outside != nil {
		return e.outside, nil
	}
	ns, err := e.newNetNS("out")
	if err != nil {
		return nil, err
	}
	o := &Outside{NS: ns, IPv4: netip.MustParseAddr("198.18.0.10"), IPv6: netip.MustParseAddr("2001:db8:18::10")}
	for _, kv := range [][2]string{{"net.ipv6.conf.all.accept_dad", "0"}, {"net.ipv6.conf.default.accept_dad", "0"}} {
		if err := ns.Sysctl(kv[0], kv[1]); err != nil {
			return nil, err
		}
	}
	if err := e.Fabric.IP("link", "add", "vout", "type", "veth", "peer", "name", "eth0", "netns", ns.Name); err != nil {
		return nil, err
	}
	for _, s := range [][]string{
		{"addr", "add", "198.18.0.1/24", "dev", "vout"},
		{"addr", "add", "2001:db8:18::1/64", "dev", "vout", "nodad"},
		{"link", "set", "vout", "up"},
	} {
		if err := e.Fabric.IP(s...); err != nil {
			return nil, err
		}
	}
	for _, s := range [][]string{
		{"addr", "add", o.IPv4.String() + "/24", "dev", "eth0"},
		{"addr", "add", o.IPv6.String() + "/64", "dev", "eth0", "nodad"},
		{"link", "set", "eth0", "up"},
		{"route", "add", "default", "via", "198.18.0.1"},
		{"-6", "route", "add", "default", "via", "2001:db8:18::1"},
	} {
		if err := ns.IP(s...); err != nil {
			return nil, fmt.Errorf("outside client: %w", err)
		}
	}
	e.outside = o
	return o, nil
}
