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
	if cfg.Connection {
		s.addICMPErrors(cfg)
		s.addAccounting()
	}
	return s
}

// ChainAccounting is connection mode's chain that no packet enters.
const ChainAccounting = "accounting"

// addAccounting adds a regular chain that nothing jumps to, whose one
// rule reads conntrack's packet counter. Loading such a rule makes the
// kernel switch conntrack accounting on in the table's network namespace
// (nft_ct_get_init calls nf_ct_set_acct for the bytes, packets and
// average-packet keys), with CAP_NET_ADMIN alone: where /proc/sys is
// read-only, as in a container, net.netfilter.nf_conntrack_acct cannot
// be written. Accounting stays on after the table is gone. No packet
// ever runs the rule.
func (s *spec) addAccounting() {
	chain := &nftables.Chain{Name: ChainAccounting, Table: s.table}
	s.chains = append(s.chains, chain)
	s.rules = append(s.rules, &nftables.Rule{Table: s.table, Chain: chain, Exprs: []expr.Any{
		&expr.Ct{Key: expr.CtKeyPKTS, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: make([]byte, 8)},
	}})
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
		// Connection mode: conntrack counts every packet of a known
		// connection. Those of answered connections (established, both
		// ways: the bulk of the traffic) leave at the first rule. ICMP
		// errors (related to a connection, which conntrack does not
		// account for them) are logged in chainRelated, which returns
		// here. Every other packet of a confirmed connection (one not
		// answered yet) leaves at the third. Only a connection's first
		// packet (unconfirmed) and packets without a connection
		// (untracked, invalid: loading their status ends the rule without
		// a match) go on.
		rules = append(rules,
			append(ctState(ctStateEstablished), ret),
			append(ctState(ctStateRelated), &expr.Verdict{Kind: expr.VerdictJump, Chain: chainRelated}),
			append(ctStatus(ipsConfirmed, true), ret))
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
		rules = append(rules, sampleReturn(cfg))
	}
	// ct status dnat: one rule here, the log rules in chainDNAT.
	rules = append(rules, append(ctStatus(ipsDstNAT, true), &expr.Verdict{Kind: expr.VerdictGoto, Chain: chainDNAT}))
	rules = append(rules, stateRules(cfg, "")...)
	return append(rules, []expr.Any{logTo(cfg, PrefixUntracked)})
}

// sampleReturn is the rule that lets one packet in cfg.SampleRate through.
func sampleReturn(cfg *Config) []expr.Any {
	return []expr.Any{
		&expr.Numgen{Register: 1, Modulus: cfg.SampleRate, Type: unix.NFT_NG_RANDOM},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
		&expr.Verdict{Kind: expr.VerdictReturn},
	}
}

// Connection mode's chains for ICMP errors: chainRelated, jumped to by
// the base chains for packets related to a connection, sends ICMP and
// ICMPv6 ones to chainICMPError and returns the rest (the first packets
// of expected connections, which the base chain logs as new; the later
// ones conntrack counts).
const (
	chainRelated       = "related"
	chainICMPError     = "icmp-error"
	protoICMP          = 1
	protoICMPv6        = 58
	ctStateRelated     = 1 << 2 // NF_CT_STATE_BIT(IP_CT_RELATED)
	ctStateEstablished = 1 << 1 // NF_CT_STATE_BIT(IP_CT_ESTABLISHED)
)

// addICMPErrors adds the chains that log ICMP errors in connection mode:
// conntrack files an ICMP error under the connection it reports on
// (related) but does not count it (nf_conntrack_in returns before
// accounting for it), so the table logs each one, with the prefix
// packet mode gives it (original or reply, and the DNAT flag), and it
// counts as in packet mode. Every rule ends in return or goto: back in
// the base chain, the error's confirmed connection returns at once.
func (s *spec) addICMPErrors(cfg *Config) {
	related := &nftables.Chain{Name: chainRelated, Table: s.table}
	icmpErr := &nftables.Chain{Name: chainICMPError, Table: s.table}
	s.chains = append(s.chains, related, icmpErr)
	for _, proto := range []byte{protoICMP, protoICMPv6} {
		s.rules = append(s.rules, &nftables.Rule{Table: s.table, Chain: related, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
			&expr.Verdict{Kind: expr.VerdictGoto, Chain: chainICMPError},
		}})
	}
	// One chain for both hooks: a packet has no output interface at
	// input and no input interface when sent locally, and loading the
	// missing one ends the rule without a match.
	rules := [][]expr.Any{loopbackReturn(expr.MetaKeyIIFNAME), loopbackReturn(expr.MetaKeyOIFNAME)}
	if cfg.SampleRate > 1 {
		rules = append(rules, sampleReturn(cfg))
	}
	for _, dnat := range []bool{true, false} {
		flags := ""
		if dnat {
			flags = FlagDNAT
		}
		for _, d := range []struct {
			dir    byte
			prefix string
		}{{0, PrefixOriginal}, {1, PrefixReply}} {
			var r []expr.Any
			if dnat {
				r = ctStatus(ipsDstNAT, true)
			}
			rules = append(rules, append(r,
				&expr.Ct{Key: expr.CtKeyDIRECTION, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{d.dir}},
				logTo(cfg, d.prefix+flags), &expr.Verdict{Kind: expr.VerdictReturn}))
		}
	}
	for _, exprs := range rules {
		s.rules = append(s.rules, &nftables.Rule{Table: s.table, Chain: icmpErr, Exprs: exprs})
	}
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
	return ctBits(expr.CtKeySTATUS, bit, set)
}

// ctState matches packets whose conntrack state (ct state: a bit of
// NF_CT_STATE_BIT, host byte order) is bit. Every packet has a state,
// untracked and invalid ones too.
func ctState(bit uint32) []expr.Any {
	return ctBits(expr.CtKeySTATE, bit, true)
}

func ctBits(key expr.CtKey, bit uint32, set bool) []expr.Any {
	op := expr.CmpOpEq
	if set {
		op = expr.CmpOpNeq
	}
	return []expr.Any{
		&expr.Ct{Key: key, Register: 1},
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
