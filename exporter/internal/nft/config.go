package nft

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The defaults of the flags that shape the table, and the snaplen's
// bounds: the one source that the command's flags and the capture
// package's defaults take them from.
const (
	DefaultGroup          = 100
	DefaultSnapLen        = 128 // headers only
	DefaultQueueThreshold = 16
	DefaultResyncInterval = 30 * time.Second
	MinSnapLen            = 48 // an IPv6 header and the ports behind it
	MaxSnapLen            = 65535
)

// DefaultOverlaySpecs returns the defaults of --capture.overlay: the
// encapsulations CNIs use between nodes, VXLAN (IANA port and flannel's),
// Geneve, WireGuard, IP-in-IP and ESP.
func DefaultOverlaySpecs() []string {
	return []string{"udp:4789", "udp:8472", "udp:6081", "udp:51820", "ipip", "esp"}
}

// IP protocol numbers of the encapsulations podflow knows by name.
const (
	protoIPIP  = 4
	protoTCP   = 6
	protoUDP   = 17
	protoIPv6  = 41
	protoGRE   = 47
	protoESP   = 50
	maxNameLen = 32
)

// Config is what the table logs and what it leaves out.
type Config struct {
	// Group is the NFLOG group the log rules send to.
	Group uint16
	// SnapLen is how many bytes of each packet the kernel copies, from the
	// start of the L3 header.
	SnapLen uint32
	// QueueThreshold is how many packets the kernel batches into one
	// netlink message before it wakes the reader.
	QueueThreshold uint16
	// SampleRate logs one packet in SampleRate, chosen at random in the
	// kernel; 1 logs every packet.
	SampleRate uint32
	// Overlays are encapsulations between nodes: counted, never logged.
	Overlays []Overlay
	// NetNS is a file descriptor of the network namespace to install the
	// table in; 0 means the namespace of the calling process.
	NetNS int
	// PreDNAT adds the chains that log the first packet of each
	// connection before destination NAT (prefix PrefixPreDNAT), so that
	// the Service a client dialled can be named on kernels whose NFLOG
	// carries no conntrack tuple.
	PreDNAT bool
	// Connection builds the table of connection mode: it logs only the
	// packets that start something (the one packet that creates a
	// connection's conntrack entry, prefix PrefixNew) and the packets
	// conntrack does not count (untracked or invalid, PrefixUntracked).
	// Tracked traffic is counted from conntrack's accounting instead, so
	// every packet of a confirmed connection leaves the table at its
	// first rule.
	Connection bool
}

// Overlay is one encapsulation that is excluded from logging: packets of IP
// protocol Proto (and, when Port is not zero, that destination port) are
// counted under Name.
type Overlay struct {
	Name  string
	Proto uint8
	Port  uint16
}

// String returns the overlay in the syntax ParseOverlay reads.
func (o Overlay) String() string {
	var spec string
	switch {
	case o.Proto == protoUDP && o.Port != 0:
		spec = "udp:" + strconv.Itoa(int(o.Port))
	case o.Proto == protoTCP && o.Port != 0:
		spec = "tcp:" + strconv.Itoa(int(o.Port))
	default:
		spec = "proto:" + strconv.Itoa(int(o.Proto))
	}
	return o.Name + "=" + spec
}

// DefaultOverlays returns DefaultOverlaySpecs parsed.
func DefaultOverlays() []Overlay {
	specs := DefaultOverlaySpecs()
	out := make([]Overlay, len(specs))
	for i, s := range specs {
		o, err := ParseOverlay(s)
		if err != nil {
			panic(err) // the literals above are valid
		}
		out[i] = o
	}
	return out
}

// DefaultConfig returns the defaults of the flags.
func DefaultConfig() Config {
	return Config{
		Group:          DefaultGroup,
		SnapLen:        DefaultSnapLen,
		QueueThreshold: DefaultQueueThreshold,
		SampleRate:     1,
		Overlays:       DefaultOverlays(),
	}
}

var udpPortNames = map[uint16]string{
	4789:  "vxlan",
	8472:  "vxlan", // flannel's and Cilium's VXLAN port
	6081:  "geneve",
	51820: "wireguard",
	4500:  "esp", // IPsec NAT traversal
}

var protoNames = map[uint8]string{
	protoIPIP: "ipip",
	protoIPv6: "sit",
	protoGRE:  "gre",
	protoESP:  "esp",
}

var keywords = map[string]Overlay{
	"vxlan":     {Name: "vxlan", Proto: protoUDP, Port: 4789},
	"geneve":    {Name: "geneve", Proto: protoUDP, Port: 6081},
	"wireguard": {Name: "wireguard", Proto: protoUDP, Port: 51820},
	"ipip":      {Name: "ipip", Proto: protoIPIP},
	"sit":       {Name: "sit", Proto: protoIPv6},
	"gre":       {Name: "gre", Proto: protoGRE},
	"esp":       {Name: "esp", Proto: protoESP},
}

// ParseOverlay reads one --capture.overlay value: an optional "name="
// followed by "udp:PORT", "tcp:PORT", "proto:N" (an IP protocol number) or
// one of the keywords vxlan, geneve, wireguard, ipip, sit, gre, esp.
// Without a name, well-known ports and protocols get theirs (udp:4789 and
// udp:8472 are "vxlan", udp:6081 "geneve", udp:51820 "wireguard", proto:4
// "ipip", proto:50 "esp") and others "udp-PORT", "tcp-PORT" or "proto-N".
func ParseOverlay(s string) (Overlay, error) {
	name, spec, named := strings.Cut(s, "=")
	if !named {
		spec, name = s, ""
	}
	o, err := parseSpec(spec)
	if err != nil {
		return Overlay{}, fmt.Errorf("overlay %q: %w", s, err)
	}
	if named {
		if err := validName(name); err != nil {
			return Overlay{}, fmt.Errorf("overlay %q: %w", s, err)
		}
		o.Name = name
	}
	return o, nil
}

func parseSpec(spec string) (Overlay, error) {
	if o, ok := keywords[spec]; ok {
		return o, nil
	}
	kind, arg, ok := strings.Cut(spec, ":")
	if !ok {
		return Overlay{}, errors.New(`want udp:PORT, tcp:PORT, proto:N or one of vxlan, geneve, wireguard, ipip, sit, gre, esp`)
	}
	n, err := strconv.ParseUint(arg, 10, 16)
	switch kind {
	case "udp", "tcp":
		if err != nil || n == 0 {
			return Overlay{}, fmt.Errorf("port %q is not a number from 1 to 65535", arg)
		}
		port := uint16(n)
		if kind == "tcp" {
			return Overlay{Name: "tcp-" + arg, Proto: protoTCP, Port: port}, nil
		}
		name, known := udpPortNames[port]
		if !known {
			name = "udp-" + strconv.Itoa(int(port))
		}
		return Overlay{Name: name, Proto: protoUDP, Port: port}, nil
	case "proto":
		if err != nil || n == 0 || n > 255 {
			return Overlay{}, fmt.Errorf("IP protocol %q is not a number from 1 to 255", arg)
		}
		p := uint8(n)
		if p == protoUDP || p == protoTCP {
			return Overlay{}, errors.New("excluding all of TCP or UDP would log nothing: give a port (udp:PORT)")
		}
		name, known := protoNames[p]
		if !known {
			name = "proto-" + strconv.Itoa(int(p))
		}
		return Overlay{Name: name, Proto: p}, nil
	}
	return Overlay{}, fmt.Errorf("unknown kind %q: want udp, tcp or proto", kind)
}

func validName(name string) error {
	if name == "" || len(name) > maxNameLen {
		return fmt.Errorf("name %q must have 1 to %d characters", name, maxNameLen)
	}
	for _, r := range name {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' && r != '_' {
			return fmt.Errorf("name %q may hold only a-z, 0-9, '-' and '_'", name)
		}
	}
	return nil
}

// Validate reports the first setting the kernel would refuse or that would
// make the table log nothing useful.
func (c *Config) Validate() error {
	if c.SnapLen < MinSnapLen || c.SnapLen > MaxSnapLen {
		return fmt.Errorf("snaplen %d: want %d to %d bytes (an IPv6 header and ports need %d)", c.SnapLen, MinSnapLen, MaxSnapLen, MinSnapLen)
	}
	if c.QueueThreshold == 0 {
		return errors.New("queue threshold must be at least 1")
	}
	if c.SampleRate == 0 {
		return errors.New("sample rate must be at least 1 (1 logs every packet)")
	}
	type match struct {
		proto uint8
		port  uint16
	}
	seen := make(map[match]string, len(c.Overlays))
	for _, o := range c.Overlays {
		if err := validName(o.Name); err != nil {
			return fmt.Errorf("overlay %s: %w", o, err)
		}
		if o.Proto == 0 {
			return fmt.Errorf("overlay %s: IP protocol 0", o.Name)
		}
		if o.Port == 0 && (o.Proto == protoUDP || o.Proto == protoTCP) {
			return fmt.Errorf("overlay %s: TCP or UDP without a port would exclude all of it", o.Name)
		}
		if o.Port != 0 && o.Proto != protoUDP && o.Proto != protoTCP {
			return fmt.Errorf("overlay %s: a port needs UDP or TCP", o.Name)
		}
		m := match{o.Proto, o.Port}
		if prev, dup := seen[m]; dup {
			return fmt.Errorf("overlay %s: same match as %s", o, prev)
		}
		seen[m] = o.String()
	}
	return nil
}
