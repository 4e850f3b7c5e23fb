package capture

import (
	"context"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	nflog "github.com/florianl/go-nflog/v2"

	"github.com/podflow/podflow/exporter/internal/capture/netnstest"
	"github.com/podflow/podflow/exporter/internal/flow"
)

func TestBusyGroup(t *testing.T) {
	ns := netnstest.New(t, "pfcap-")
	cfg := DefaultConfig()
	cfg.NetNS = ns.FD
	cfg.MaxBackoff = 200 * time.Millisecond
	first, stopFirst := startReader(t, cfg, HandlerFunc(func(*flow.Record) {}))

	// Bind gives up after BindTimeout and says why.
	cfg.BindTimeout = 300 * time.Millisecond
	if err := New(cfg, nil).Bind(context.Background(), HandlerFunc(func(*flow.Record) {})); err == nil || !strings.Contains(err.Error(), "NFLOG group 100 is in use by another process") {
		t.Errorf("Bind on a busy group = %v, want the conflict", err)
	}

	// Run keeps trying until the group is free.
	second := New(cfg, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = second.Run(ctx, HandlerFunc(func(*flow.Record) {})); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "the second reader to report the conflict", func() bool { return second.Stats().BindError != "" })
	s := second.Stats()
	if s.Bound || !strings.Contains(s.BindError, "NFLOG group 100 is in use by another process") {
		t.Errorf("second reader: Bound = %v, BindError = %q; want unbound with the reason", s.Bound, s.BindError)
	}
	if !first.Stats().Bound {
		t.Error("the first reader lost its group")
	}
	stopFirst()
	if first.Stats().Bound {
		t.Error("the first reader reports the group bound after Run returned")
	}
	waitFor(t, "the second reader to bind once the first stopped", func() bool { return second.Stats().Bound })
	if e := second.Stats().BindError; e != "" {
		t.Errorf("BindError = %q after binding, want empty", e)
	}
}

// kernelCount reads a named counter of the test's own table.
func kernelCount(t *testing.T, ns *netnstest.NS, name string) uint64 {
	t.Helper()
	out := ns.MustRun(t, "nft", "list", "counter", "inet", "pfcaptest", name)
	m := regexp.MustCompile(`packets (\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no packet count in %q", out)
	}
	n, _ := strconv.ParseUint(m[1], 10, 64)
	return n
}

func TestOverrunsAreCountedAsLost(t *testing.T) {
	topo := newTopology(t, 100)
	// IPv4 only, so that no multicast listener report is logged besides
	// the flood.
	for _, ns := range []*netnstest.NS{topo.client, topo.node} {
		ns.MustRun(t, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	}
	for _, ifc := range []struct {
		ns   *netnstest.NS
		name string
	}{{topo.client, "c0"}, {topo.node, "n0"}} {
		ifc.ns.MustRun(t, "sysctl", "-q", "-w", "net.ipv6.conf."+ifc.name+".disable_ipv6=1")
	}
	// The kernel's own count of what podflow's input chain logs.
	topo.node.MustRun(t, "nft", "add table inet pfcaptest; add counter inet pfcaptest flood; add chain inet pfcaptest in { type filter hook input priority 0; }; add rule inet pfcaptest in udp dport 9100 counter name flood")
	var sink net.PacketConn
	if err := topo.node.Do(func() (err error) { sink, err = net.ListenPacket("udp4", "10.99.0.2:9100"); return err }); err != nil {
		t.Fatal(err)
	}
	defer sink.Close()

	var (
		once    sync.Once
		release = make(chan struct{})
	)
	cfg := DefaultConfig()
	cfg.NetNS = topo.node.FD
	cfg.QueueThreshold = 1
	cfg.ReadBuffer = 4096 // a few batches at most
	r, stop := startReader(t, cfg, HandlerFunc(func(*flow.Record) {
		once.Do(func() { <-release }) // stall on the first packet
	}))

	var c net.Conn
	if err := topo.client.Do(func() (err error) { c, err = net.Dial("udp4", "10.99.0.2:9100"); return err }); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	payload := make([]byte, 32)
	for range 2000 {
		_, _ = c.Write(payload)
	}
	time.Sleep(200 * time.Millisecond)
	close(release)
	// A packet read after the buffer drained reveals any gap before it;
	// one sent while the buffer is still full is lost with the rest, so
	// send one more until everything the kernel logged is accounted for.
	var logged uint64
	waitFor(t, "every logged packet to be received or counted lost", func() bool {
		logged = kernelCount(t, topo.node, "flood")
		if s := r.Stats(); s.Received+s.Lost >= logged {
			return true
		}
		_, _ = c.Write(payload)
		return false
	})
	stop()
	s := r.Stats()
	if s.Overruns == 0 || s.Lost == 0 {
		t.Errorf("Stats() = %+v; want overruns and lost packets with a 4 KiB buffer", s)
	}
	if s.Received+s.Lost != logged {
		t.Errorf("received %d + lost %d = %d, the kernel logged %d", s.Received, s.Lost, s.Received+s.Lost, logged)
	}
}

// TestParserMatchesGoNflog logs the same packets to two groups and reads
// one with Reader and the other with go-nflog's own receive path.
func TestParserMatchesGoNflog(t *testing.T) {
	topo := newTopology(t, 100)
	topo.node.MustRun(t, "nft", `add table inet pfcaptest; add chain inet pfcaptest in { type filter hook input priority 99; }; add chain inet pfcaptest out { type filter hook postrouting priority 99; }; add rule inet pfcaptest in iifname "n0" log group 101 snaplen 128 queue-threshold 4; add rule inet pfcaptest out oifname "n0" log group 101 snaplen 128 queue-threshold 4`)
	udpEcho(t, topo.node, "udp4", "10.99.0.2:9000")
	udpEcho(t, topo.node, "udp6", "[fd99::2]:9000")

	var ours collected
	cfg := DefaultConfig()
	cfg.NetNS = topo.node.FD
	r, stop := startReader(t, cfg, &ours)
	defer stop()

	type theirRec struct {
		payload []byte
		proto   uint16
	}
	var (
		mu     sync.Mutex
		theirs []theirRec
	)
	nf, err := nflog.Open(&nflog.Config{NetNS: topo.node.FD, Group: 101, Copymode: nflog.CopyPacket, Bufsize: 0xffff, Flags: nflog.FlagSeq, QThresh: 4, Timeout: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer nf.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err = nf.RegisterWithErrorFunc(ctx, func(a nflog.Attribute) int {
		if a.Payload == nil || a.Hook == nil || a.HwProtocol == nil || a.Seq == nil {
			t.Errorf("go-nflog attribute without payload, hook, protocol or seq: %+v", a)
			return 0
		}
		src, dst, _, ok := addrs(*a.Payload)
		if !ok || !testAddr(src) || !testAddr(dst) {
			return 0
		}
		mu.Lock()
		theirs = append(theirs, theirRec{append([]byte(nil), *a.Payload...), *a.HwProtocol})
		mu.Unlock()
		return 0
	}, func(error) int { return 0 })
	if err != nil {
		t.Fatal(err)
	}

	udpPingPong(t, topo.client, "udp4", "10.99.0.2:9000", 4)
	udpPingPong(t, topo.client, "udp6", "[fd99::2]:9000", 4)
	topo.client.MustRun(t, "ping", "-c", "2", "-i", "0.2", "-W", "2", "10.99.0.2")
	const want = 2*8 + 4
	waitFor(t, "both readers to get every packet", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(ours.snapshot()) >= want && len(theirs) >= want
	})
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	got := ours.snapshot()
	if len(got) != want || len(theirs) != want {
		t.Fatalf("records: ours %d, go-nflog's %d; want %d each", len(got), len(theirs), want)
	}
	if s := r.Stats(); s.Lost != 0 || s.Malformed != 0 {
		t.Errorf("Stats() = %+v, want nothing lost or malformed", s)
	}
	for i := range got {
		o, g := got[i], theirs[i]
		fam := uint8(2)
		if g.proto == 0x86dd {
			fam = 10
		}
		if string(o.Payload) != string(g.payload) || o.Family != fam {
			t.Errorf("packet %d: ours family %d payload %x; go-nflog ethertype %#x payload %x", i, o.Family, o.Payload, g.proto, g.payload)
		}
	}
}
