package harness

import (
	"fmt"
	"net/netip"
)

// Fabrics: how nodes reach each other's pods.
const (
	// FabricRouted: the fabric and every node route every pod CIDR to its
	// node (host-gw, as Calico without encapsulation or a cloud route
	// table does).
	FabricRouted = "routed"
	// FabricOverlay: pods are reachable between nodes only through a VXLAN
	// device on every node, as flannel's vxlan backend builds it; the
	// fabric knows no pod CIDR, and pod traffic leaving the cluster is
	// masqueraded to the node's address.
	FabricOverlay = "overlay"
)

// The overlay device, as flannel names and numbers it.
const (
	vxlanDev  = "flannel.1"
	vxlanVNI  = "1"
	vxlanPort = "8472"
	vxlanMTU  = 1450
	// overlayNATTable is the harness' stand-in for flannel's masquerade
	// rules (families ip and ip6, on every node).
	overlayNATTable = "pfe2e-flannel"
)

func (e *Env) overlay() bool { return e.FabricMode == FabricOverlay }

// connectNode makes node n and its pods reachable from the other nodes and
// the fabric.
func (e *Env) connectNode(n *Node) error {
	if e.overlay() {
		return e.connectOverlay(n)
	}
	if err := e.Fabric.IP("route", "add", n.PodCIDR4.String(), "via", n.IPv4.String()); err != nil {
		return err
	}
	if err := e.Fabric.IP("-6", "route", "add", n.PodCIDR6.String(), "via", n.IPv6.String()); err != nil {
		return err
	}
	for _, o := range e.Nodes {
		for _, pair := range [][2]*Node{{o, n}, {n, o}} {
			at, to := pair[0], pair[1]
			if err := at.NS.IP("route", "add", to.PodCIDR4.String(), "via", to.IPv4.String()); err != nil {
				return err
			}
			if err := at.NS.IP("-6", "route", "add", to.PodCIDR6.String(), "via", to.IPv6.String()); err != nil {
				return err
			}
		}
	}
	return nil
}

// vtep is a node's end of the overlay: the device's MAC and its addresses
// (the first address of each pod CIDR, as flannel assigns them).
func vtep(n *Node) (mac string, v4, v6 netip.Addr) {
	return fmt.Sprintf("02:50:46:00:00:%02x", n.Index), n.PodCIDR4.Addr(), n.PodCIDR6.Addr()
}

// connectOverlay gives n a VXLAN device and wires it to every other node's:
// a route per remote pod CIDR through the remote device's address, a
// permanent neighbour entry for that address, and a forwarding entry
// sending the remote MAC to the remote node's address (no learning, no
// multicast).
func (e *Env) connectOverlay(n *Node) error {
	mac, v4, v6 := vtep(n)
	for _, s := range [][]string{
		{"link", "add", vxlanDev, "address", mac, "mtu", fmt.Sprint(vxlanMTU), "type", "vxlan", "id", vxlanVNI,
			"local", n.IPv4.String(), "dev", "eth0", "dstport", vxlanPort, "nolearning"},
		{"addr", "add", v4.String() + "/32", "dev", vxlanDev},
		{"addr", "add", v6.String() + "/128", "dev", vxlanDev, "nodad"},
		{"link", "set", vxlanDev, "up"},
	} {
		if err := n.NS.IP(s...); err != nil {
			return err
		}
	}
	for _, o := range e.Nodes {
		for _, pair := range [][2]*Node{{o, n}, {n, o}} {
			at, to := pair[0], pair[1]
			tmac, t4, t6 := vtep(to)
			for _, s := range [][]string{
				{"route", "add", to.PodCIDR4.String(), "via", t4.String(), "dev", vxlanDev, "onlink"},
				{"-6", "route", "add", to.PodCIDR6.String(), "via", t6.String(), "dev", vxlanDev, "onlink"},
				{"neigh", "add", t4.String(), "lladdr", tmac, "dev", vxlanDev, "nud", "permanent"},
				{"-6", "neigh", "add", t6.String(), "lladdr", tmac, "dev", vxlanDev, "nud", "permanent"},
			} {
				if err := at.NS.IP(s...); err != nil {
					return err
				}
			}
			if _, err := at.NS.Exec("bridge", "fdb", "append", tmac, "dev", vxlanDev, "dst", to.IPv4.String(), "self", "permanent"); err != nil {
				return err
			}
		}
	}
	// Pod traffic to anywhere outside the cluster leaves with the node's
	// address (flannel's ip-masq): the fabric cannot route replies to pods.
	// One table per family, as flannel's iptables and ip6tables rules are,
	// removed on teardown like the rest of the node.
	e.AddCleanup(func() {
		for _, family := range []string{"ip", "ip6"} {
			_, _ = n.NS.Exec("nft", "delete", "table", family, overlayNATTable)
		}
	})
	return n.NS.Nft(fmt.Sprintf(`table ip %[1]s {
  chain postrouting {
    type nat hook postrouting priority srcnat + 10; policy accept;
    ip saddr %[2]s ip daddr != %[2]s oifname "eth0" masquerade
  }
}
table ip6 %[1]s {
  chain postrouting {
    type nat hook postrouting priority srcnat + 10; policy accept;
    ip6 saddr %[3]s ip6 daddr != %[3]s oifname "eth0" masquerade
  }
}
`, overlayNATTable, clusterCIDR4, clusterCIDR6))
}

// podMTU is the MTU of a pod's interface: the overlay's encapsulation takes
// its share, as a CNI configures it.
func (e *Env) podMTU() string {
	if e.overlay() {
		return fmt.Sprint(vxlanMTU)
	}
	return "1500"
}
