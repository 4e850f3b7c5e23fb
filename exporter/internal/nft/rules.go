package nft

import (
	"encoding/binary"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// TableName is the one table podflow owns, in the inet family.
const TableName = "podflow"

// Chain names and their hooks. Both run at priority 99 ("srcnat - 1"):
// after the filter (0) and security (50) chains, so packets a firewall
// drops are not counted, and before source NAT (100), so postrouting still
// sees the pod's own source address. Postrouting sees forwarded and locally
// sent packets after DNAT; input sees packets delivered to the node. Each
// packet crossing the node passes exactly one of them.
const (
	ChainPostrouting = "postrouting"
	ChainInput       = "input"
	chainPriority    = 99
)

// spec is the whole table as nftables objects, ready to be queued on a
// Conn.
type spec struct {
	table    *nftables.Table
	counters []*nftables.NamedObj
	chains   []*nftables.Chain
	rules    []*nftables.Rule
}

func newTableRef() *nftables.Table {
	return &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
}

// buildSpec translates a validated Config into the table's objects.
func buildSpec(cfg *Config) *spec {
	s := &spec{table: newTableRef()}
	seen := map[string]bool{}
	for _, o := range cfg.Overlays {
		if seen[o.Name] {
			continue
		}
		seen[o.Name] = true
		s.counters = append(s.counters, &nftables.NamedObj{
			Table: s.table,
			Name:  o.Name,
			Type:  nftables.ObjTypeCounter,
			Obj:   &expr.Counter{},
		})
	}
	// The chain the base chains go to for a connection this node
	// destination-NATed: the same log rules with the DNAT flag in the
	// prefix. A goto, not a jump: its last rule's return leaves the base
	// chain, so the packet is logged once.
	dnat := &nftables.Chain{Name: chainDNAT, Table: s.table}
	s.chains = append(s.chains, dnat)
	for _, exprs := range stateRules(cfg, FlagDNAT) {
		s.rules = append(s.rules, &nftables.Rule{Table: s.table, Chain: dnat, Exprs: exprs})
	}
	accept := nftables.ChainPolicyAccept
	for _, c := range []struct {
		name   string
		hook   *nftables.ChainHook
		ifname expr.MetaKey
	}{
		{ChainPostrouting, nftables.ChainHookPostrouting, expr.MetaKeyOIFNAME},
		{ChainInput, nftables.ChainHookInput, expr.MetaKeyIIFNAME},
	} {
		chain := &nftables.Chain{
			Name:     c.name,
			Table:    s.table,
			Type:     nftables.ChainTypeFilter,
			Hooknum:  c.hook,
			Priority: nftables.ChainPriorityRef(chainPriority),
			Policy:   &accept,
		}
		s.chains = append(s.chains, chain)
		for _, exprs := range chainRules(cfg, c.ifname) {
			s.rules = append(s.rules, &nftables.Rule{Table: s.table, Chain: chain, Exprs: exprs})
		}
	}
	if cfg.PreDNAT {
		s.addPreDNAT(cfg)
	}
	return s
}

// The chains that see a connection's first packet before destination
// NAT: prerouting for forwarded and delivered traffic, output for the
// node's own, both just before the nat chains (dstnat, -100; kube-proxy's
// and iptables' nat tables are there).
const (
	ChainPreDNATPrerouting = "prerouting"
	ChainPreDNATOutput     = "output"
	preDNATPriority        = -101
)

// addPreDNAT adds one rule to each pre-DNAT chain: log a connection's
// first packet (its conntrack entry is not confirmed yet, which holds for
// exactly one packet per connection) with the prefix PrefixPreDNAT. It is
// never sampled: the connection's later packets may be.
func (s *spec) addPreDNAT(cfg *Config) {
	accept := nftables.ChainPolicyAccept
	for _, c := range []struct {
		name   string
		hook   *nftables.ChainHook
		ifname expr.MetaKey
	}{{ChainPreDNATPrerouting, nftables.ChainHookPrerouting, expr.MetaKeyIIFNAME}, {ChainPreDNATOutput, nftables.ChainHookOutput, expr.MetaKeyOIFNAME}} {
		chain := &nftables.Chain{
			Name: c.name, Table: s.table, Type: nftables.ChainTypeFilter, Hooknum: c.hook,
			Priority: nftables.ChainPriorityRef(preDNATPriority), Policy: &accept,
		}
		s.chains = append(s.chains, chain)
		var rules [][]expr.Any
		if cfg.Connection {
			// As in the base chains: confirmed connections leave first.
			rules = append(rules, append(ctStatus(ipsConfirmed, true), &expr.Verdict{Kind: expr.VerdictReturn}))
		}
		// Loopback traffic is never logged after DNAT either.
		rules = append(rules, loopbackReturn(c.ifname), append(ctStatus(ipsConfirmed, false), logTo(cfg, PrefixPreDNAT)))
		for _, exprs := range rules {
			s.rules = append(s.rules, &nftables.Rule{Table: s.table, Chain: chain, Exprs: exprs})
		}
	}
}

// Log prefixes: the log rules tell capture the packet's conntrack state
// and direction through NFULA_PREFIX, which every kernel delivers, since
// NFULA_CT and NFULA_CT_INFO need CONFIG_NETFILTER_NETLINK_GLUE_CT. A
// prefix is a state letter, then flags.
//
// PrefixNew is not conntrack's state NEW: conntrack keeps every packet of
// the original direction NEW until the first reply, so an unanswered UDP
// socket, a SYN retransmitted to a silent port or a series of echo
// requests would each look like many connections. It marks the one packet
// that created the connection's entry instead: an entry is confirmed (put
// in the connection table) at the last hook the packet passes, postrouting
// or input at priority INT_MAX, after podflow's chains at priority 99, so
// only the packet that made the entry finds it unconfirmed there.
const (
	// FlagDNAT follows the state letter when this node translated the
	// connection's destination (ct status dnat): a Service's ClusterIP,
	// node port or load balancer address. That node is the one that saw
	// the client before any translation (see docs/kubernetes.md).
	FlagDNAT = "d"

	// PrefixNew marks the packet that created its connection's conntrack
	// entry (ct status not yet confirmed): one per connection, answered
	// or not.
	PrefixNew = "n"
	// PrefixOriginal marks any other tracked packet in the original
	// direction (NEW before a reply, ESTABLISHED or RELATED).
	PrefixOriginal = "o"
	// PrefixReply marks a tracked packet in the reply direction.
	PrefixReply = "r"
	// PrefixUntracked marks a packet without a connection: untracked
	// (notrack) or invalid.
	PrefixUntracked = "u"
	// PrefixPreDNAT marks the first packet of a connection logged before
	// destination NAT: not traffic to count, but the destination the
	// client dialled, for the packets of the connection logged after.
	PrefixPreDNAT = "p"
)

// ipsConfirmed is IPS_CONFIRMED of enum ip_conntrack_status
// (linux/netfilter/nf_conntrack_common.h): the entry is in the table.
const ipsConfirmed = 1 << 3

// chainRules returns the rules of one base chain, in order: (in
// connection mode, confirmed connections first), loopback, overlays,
// sampling, the goto for destination-NATed connections, then the log
// rules, one per conntrack state, each ending in return so that a packet
// is logged exactly once. None of them sets a
// verdict other than return, which in a base chain applies the chain's
// policy, accept.
func chainRules(cfg *Config, ifname expr.MetaKey) [][]expr.Any {
	ret := &expr.Verdict{Kind: expr.VerdictReturn}
	var rules [][]expr.Any
	if cfg.Connection {
		// Connection mode: conntrack counts every packet of a confirmed
		// connection, so they leave first, at the cost of one rule. Only
		// a connection's first packet (unconfirmed) and packets without
		// a connection (untracked, invalid: loading their status ends
		// the rule without a match) go on.
		rules = append(rules, append(ctStatus(ipsConfirmed, true), ret))
	}
	rules = append(rules, loopbackReturn(ifname))
	for _, o := range cfg.Overlays {
		r := []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{o.Proto}},
		}
		if o.Port != 0 {
			port := make([]byte, 2)
			binary.BigEndian.PutUint16(port, o.Port)
			r = append(r,
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: port},
			)
		}
		r = append(r, &expr.Objref{Type: int(nftables.ObjTypeCounter), Name: o.Name}, ret)
		rules = append(rules, r)
	}
	if cfg.SampleRate > 1 {
		rules = append(rules, []expr.Any{
			&expr.Numgen{Register: 1, Modulus: cfg.SampleRate, Type: unix.NFT_NG_RANDOM},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
			ret,
		})
	}
	// ct status dnat: one rule here, the log rules in chainDNAT.
	rules = append(rules, append(ctStatus(ipsDstNAT, true), &expr.Verdict{Kind: expr.VerdictGoto, Chain: chainDNAT}))
	rules = append(rules, stateRules(cfg, "")...)
	return append(rules, []expr.Any{logTo(cfg, PrefixUntracked)})
}

// loopbackReturn is the rule that leaves loopback traffic alone: the
// input or output interface (ifname) is "lo".
func loopbackReturn(ifname expr.MetaKey) []expr.Any {
	lo := make([]byte, unix.IFNAMSIZ)
	copy(lo, "lo")
	return []expr.Any{
		&expr.Meta{Key: ifname, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: lo},
		&expr.Verdict{Kind: expr.VerdictReturn},
	}
}

// chainDNAT holds the log rules of connections this node
// destination-NATed.
const chainDNAT = "dnat"

// ipsDstNAT is IPS_DST_NAT of enum ip_conntrack_status: this node
// translated the connection's destination ("ct status dnat").
const ipsDstNAT = 1 << 5

// ctStatus matches packets whose conntrack status has bit set (set) or
// clear (!set). The status is a bit mask in host byte order, tested the
// way nft compiles it; loading the status of a packet without a
// connection ends the rule without a match.
func ctStatus(bit uint32, set bool) []expr.Any {
	op := expr.CmpOpEq
	if set {
		op = expr.CmpOpNeq
	}
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATUS, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binary.NativeEndian.AppendUint32(nil, bit), Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: 1, Data: make([]byte, 4)},
	}
}

func logTo(cfg *Config, prefix string) *expr.Log {
	return &expr.Log{
		Key:        1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_SNAPLEN | 1<<unix.NFTA_LOG_QTHRESHOLD | 1<<unix.NFTA_LOG_PREFIX,
		Group:      cfg.Group,
		Snaplen:    cfg.SnapLen,
		QThreshold: cfg.QueueThreshold,
		Data:       []byte(prefix),
	}
}

// stateRules are the log rules of tracked packets, one per conntrack
// state and direction, each ending in return; flags follow the state
// letter of each prefix. In connection mode only the first, for the
// packet that creates a connection's entry.
func stateRules(cfg *Config, flags string) [][]expr.Any {
	ret := &expr.Verdict{Kind: expr.VerdictReturn}
	// ct status ! confirmed: only the packet that created the entry sees
	// it unconfirmed, in the original direction.
	rules := [][]expr.Any{append(ctStatus(ipsConfirmed, false), logTo(cfg, PrefixNew+flags), ret)}
	if cfg.Connection {
		// Every later packet of the connection is conntrack's to count.
		return rules
	}
	// ct direction original / reply: loading the direction of a packet
	// without a connection (untracked, invalid) ends the rule without a
	// match, so such packets reach the last rule.
	for _, d := range []struct {
		dir    byte
		prefix string
	}{{0, PrefixOriginal}, {1, PrefixReply}} {
		rules = append(rules, []expr.Any{
			&expr.Ct{Key: expr.CtKeyDIRECTION, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{d.dir}},
			logTo(cfg, d.prefix+flags), ret,
		})
	}
	return rules
}

// queue adds the table and its objects to conn's batch, after
// Table.flushOwned removed any table of the same name in the same batch.
func (s *spec) queue(conn *nftables.Conn) {
	conn.AddTable(s.table)
	for _, o := range s.counters {
		conn.AddObj(o)
	}
	for _, c := range s.chains {
		conn.AddChain(c)
	}
	for _, r := range s.rules {
		conn.AddRule(r)
	}
}
