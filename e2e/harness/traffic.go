package harness

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Sink is a UDP or TCP server in a namespace that reads and discards (UDP)
// or reads and echoes what it reads (TCP, when Echo is set).
type Sink struct {
	pc   net.PacketConn
	l    net.Listener
	wg   sync.WaitGroup
	Echo bool
}

// Close stops the sink.
func (s *Sink) Close() {
	if s.pc != nil {
		s.pc.Close()
	}
	if s.l != nil {
		s.l.Close()
	}
	s.wg.Wait()
}

// UDPSink listens on port (every address of ns, both families) and drops
// what it receives. With echo, every datagram is sent back.
func (e *Env) UDPSink(ns *NetNS, port int, echo bool) (*Sink, error) {
	return e.UDPSinkAt(ns, ":"+strconv.Itoa(port), echo)
}

// UDPSinkAt is UDPSink bound to one address: a host with several addresses
// must answer from the one that was asked (the fabric's outside networks).
func (e *Env) UDPSinkAt(ns *NetNS, addr string, echo bool) (*Sink, error) {
	pc, err := ns.ListenPacket("udp", addr)
	if err != nil {
		return nil, err
	}
	s := &Sink{pc: pc, Echo: echo}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if echo {
				_, _ = pc.WriteTo(buf[:n], from)
			}
		}
	}()
	e.AddCleanup(s.Close)
	return s, nil
}

// TCPSink accepts connections on port; with echo it writes back what it
// reads, else it discards.
func (e *Env) TCPSink(ns *NetNS, port int, echo bool) (*Sink, error) {
	l, err := ns.Listen("tcp", ":"+strconv.Itoa(port))
	if err != nil {
		return nil, err
	}
	s := &Sink{l: l, Echo: echo}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(time.Minute))
				if echo {
					_, _ = io.Copy(c, c)
				} else {
					_, _ = io.Copy(io.Discard, c)
				}
			}()
		}
	}()
	e.AddCleanup(s.Close)
	return s, nil
}

// SendUDP sends count datagrams of payload bytes from ns to dst, from one
// socket (one connection), pausing between datagrams so that nothing is
// lost on the way. With echo, it also reads each reply.
func SendUDP(ctx context.Context, ns *NetNS, dst netip.AddrPort, count, payload int, echo bool) error {
	c, err := ns.Dial(ctx, "udp", dst.String())
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, payload)
	rbuf := make([]byte, 65536)
	for i := 0; i < count; i++ {
		if _, err := c.Write(buf); err != nil {
			return err
		}
		if echo {
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(rbuf); err != nil {
				return fmt.Errorf("udp echo %d from %s: %w", i, dst, err)
			}
		} else {
			time.Sleep(2 * time.Millisecond)
		}
	}
	return nil
}

// TCPExchange opens one connection from ns to dst, writes payload bytes in
// chunks, reads the echo when echo is set, and closes.
func TCPExchange(ctx context.Context, ns *NetNS, dst netip.AddrPort, payload int, echo bool) error {
	c, err := ns.Dial(ctx, "tcp", dst.String())
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, payload)
	if _, err := c.Write(buf); err != nil {
		return err
	}
	if echo {
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	_, _ = io.Copy(io.Discard, c)
	return nil
}

// Ping sends count echo requests of size payload bytes from ns to dst and
// requires every reply.
func Ping(ns *NetNS, dst netip.Addr, count, payload int) error {
	out, err := ns.Exec("ping", "-n", "-q", "-c", strconv.Itoa(count), "-i", "0.05", "-W", "2", "-s", strconv.Itoa(payload), dst.String())
	if err != nil {
		return err
	}
	if !strings.Contains(out, fmt.Sprintf("%d received", count)) {
		return fmt.Errorf("ping %s: %s", dst, out)
	}
	return nil
}

// L3 sizes of what the senders above put on the wire.
func UDPBytes(dst netip.Addr, payload int) int {
	if dst.Is4() {
		return payload + 8 + 20
	}
	return payload + 8 + 40
}

// ICMPBytes is the L3 size of one echo request or reply.
func ICMPBytes(dst netip.Addr, payload int) int { return UDPBytes(dst, payload) }

// FlowCounter counts, with the kernel's own nftables counters in tables the
// harness owns, the packets of one pair. CountFlow counts them in the two
// endpoints' namespaces as they arrive: off the link, after the node cut
// any segmentation offload super-packet into wire packets, which is what
// podflow counts. CountFlowOnNode counts them on one node, at input and
// postrouting as podflow's chains do, for pairs whose far end is an
// address (a ClusterIP) rather than a namespace.
type FlowCounter struct {
	nss  []*NetNS
	name string
}

// CountedFlow is what the kernel counted for a pair, per direction.
type CountedFlow struct {
	OrigPackets, OrigBytes   int
	ReplyPackets, ReplyBytes int
}

var counterTableSeq int

func nextCounter(a netip.Addr) (name, fam string) {
	counterTableSeq++
	fam = "ip"
	if a.Is6() {
		fam = "ip6"
	}
	return fmt.Sprintf("pfe2e-count%d", counterTableSeq), fam
}

// CountFlow installs counters for the packets from a (in src) to b (in
// dst) at dst's input, and for the way back at src's input.
func (e *Env) CountFlow(src, dst *NetNS, a, b netip.Addr, proto string) (*FlowCounter, error) {
	name, fam := nextCounter(a)
	table := func(from, to netip.Addr, dir string) string {
		return "table inet " + name + " {\n" +
			"  chain input { type filter hook input priority 0; policy accept; }\n}\n" +
			fmt.Sprintf("add rule inet %s input %s saddr %s %s daddr %s meta l4proto %s counter comment \"%s\"\n", name, fam, from, fam, to, proto, dir)
	}
	if err := dst.Nft(table(a, b, "orig")); err != nil {
		return nil, err
	}
	fc := &FlowCounter{nss: []*NetNS{dst}, name: name}
	e.AddCleanup(func() { _ = fc.Delete() })
	if err := src.Nft(table(b, a, "reply")); err != nil {
		return nil, err
	}
	fc.nss = append(fc.nss, src)
	return fc, nil
}

// CountFlowOnNode installs counters for packets between a and b (either
// direction) on node n, at input and postrouting.
func (e *Env) CountFlowOnNode(n *Node, a, b netip.Addr, proto string) (*FlowCounter, error) {
	name, fam := nextCounter(a)
	rule := func(chain, src, dst, dir string) string {
		return fmt.Sprintf("add rule inet %s %s %s saddr %s %s daddr %s meta l4proto %s counter comment \"%s\"\n", name, chain, fam, src, fam, dst, proto, dir)
	}
	rs := "table inet " + name + " {\n" +
		"  chain input { type filter hook input priority 0; policy accept; }\n" +
		"  chain postrouting { type filter hook postrouting priority 0; policy accept; }\n}\n"
	for _, ch := range []string{"input", "postrouting"} {
		rs += rule(ch, a.String(), b.String(), "orig") + rule(ch, b.String(), a.String(), "reply")
	}
	if err := n.NS.Nft(rs); err != nil {
		return nil, err
	}
	fc := &FlowCounter{nss: []*NetNS{n.NS}, name: name}
	e.AddCleanup(func() { _ = fc.Delete() })
	return fc, nil
}

var counterRE = regexp.MustCompile(`counter packets (\d+) bytes (\d+) comment "(orig|reply)"`)

// Read returns the counts so far.
func (fc *FlowCounter) Read() (CountedFlow, error) {
	var c CountedFlow
	for _, ns := range fc.nss {
		out, err := ns.Exec("nft", "list", "table", "inet", fc.name)
		if err != nil {
			return CountedFlow{}, err
		}
		for _, m := range counterRE.FindAllStringSubmatch(out, -1) {
			p, _ := strconv.Atoi(m[1])
			b, _ := strconv.Atoi(m[2])
			if m[3] == "orig" {
				c.OrigPackets += p
				c.OrigBytes += b
			} else {
				c.ReplyPackets += p
				c.ReplyBytes += b
			}
		}
	}
	return c, nil
}

// Delete removes the counter tables.
func (fc *FlowCounter) Delete() error {
	var err error
	for _, ns := range fc.nss {
		if _, derr := ns.Exec("nft", "delete", "table", "inet", fc.name); err == nil {
			err = derr
		}
	}
	return err
}
