// Package nft owns podflow's nftables table, inet podflow: it builds the
// table in one atomic netlink batch, re-asserts it while podflow runs,
// reads the overlay counters and deletes the table, and only that table,
// on shutdown. It is the only package that imports google/nftables.
package nft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// counterPoll is how often Run reads the overlay counters, independent of
// the slower re-assert interval, so that the overlay metric stays fresh.
const counterPoll = 5 * time.Second

// Stats are the table's self-metrics.
type Stats struct {
	// SyncsOK counts installs and checks that found the table as built;
	// SyncsReinstall checks that found it missing or changed and rebuilt
	// it; SyncsError installs and checks that failed.
	SyncsOK, SyncsReinstall, SyncsError uint64
	// Installed is true while the table is known to be in place.
	Installed bool
	// LastError is the last sync error, empty after a success.
	LastError string
	// Overlays holds packets excluded per encapsulation name, monotonic
	// across reinstalls of the table.
	Overlays map[string]uint64
}

// Table manages the inet podflow table.
type Table struct {
	cfg    Config
	logger *slog.Logger

	// io serialises netlink work and guards the fields up to mu, which
	// guards stats alone: Stats, called on every scrape and readiness
	// check, never waits for netlink I/O. Take io before mu.
	io        sync.Mutex
	conn      *nftables.Conn    // reads
	own       *owner            // the socket that owns the table; nil before Install and after Delete
	ownerless bool              // the kernel has no owner flag
	mine      bool              // a table this Table installed may be in place: Delete deletes it
	installed *state            // the table as read back after the last install
	lastSeen  map[string]uint64 // counter values at the last read since the last install

	mu    sync.Mutex
	stats Stats
}

// New returns a Table for cfg. Nothing touches the kernel before Install.
func New(cfg Config, logger *slog.Logger) *Table {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	t := &Table{
		cfg:      cfg,
		logger:   logger.With("component", "nftables", "table", "inet "+TableName),
		lastSeen: map[string]uint64{},
	}
	t.stats.Overlays = map[string]uint64{}
	for _, o := range cfg.Overlays {
		t.stats.Overlays[o.Name] = 0
	}
	return t
}

func (t *Table) dial() (*nftables.Conn, error) {
	if t.conn != nil {
		return t.conn, nil
	}
	var opts []nftables.ConnOption
	if t.cfg.NetNS != 0 {
		opts = append(opts, nftables.WithNetNSFd(t.cfg.NetNS))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, err
	}
	t.conn = c
	return c, nil
}

// Install builds the table in one batch, replacing a table of the same
// name left behind by a previous run. The table then belongs to t's
// netlink socket: keep t until Delete, since the kernel removes the
// table when the socket closes, and so when t is garbage collected.
func (t *Table) Install() error {
	t.io.Lock()
	defer t.io.Unlock()
	err := t.installLocked()
	t.recordSync(err, false)
	return err
}

func (t *Table) installLocked() error {
	if err := t.cfg.Validate(); err != nil {
		return err
	}
	conn, err := t.dial()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	if t.installed != nil {
		// Keep what our own counters counted before they are recreated.
		_ = t.readCountersLocked()
	}
	if err := t.flushOwned(conn, buildSpec(&t.cfg).queue); err != nil {
		t.installed = nil
		return fmt.Errorf("install table inet %s: %w", TableName, err)
	}
	t.mine = true
	clear(t.lastSeen)
	st, err := t.readState(conn)
	if err != nil {
		t.installed = nil
		return fmt.Errorf("read back table inet %s: %w", TableName, err)
	}
	t.installed = st
	return nil
}

// recordSync counts one install or check by its result; reinstall says a
// successful one rebuilt a missing or changed table.
func (t *Table) recordSync(err error, reinstall bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case err != nil:
		t.stats.SyncsError++
		t.stats.LastError = err.Error()
		t.stats.Installed = false
		return
	case reinstall:
		t.stats.SyncsReinstall++
	default:
		t.stats.SyncsOK++
	}
	t.stats.LastError = ""
	t.stats.Installed = true
}

// flushOwned deletes the table and then adds what queue adds, in one
// batch sent through the owner socket, with the owner flag on the
// table queue adds. A table with the owner flag is deleted directly: if
// it is this socket's, nothing else can have removed it, and if it is
// another's the kernel refuses the whole batch. Any other table is first
// added, unchanged (adding an existing table is a no-op, and so is the
// update to the same flags), which makes the delete valid whether or not
// the table is there when the batch runs: a leftover without the flag is
// replaced atomically.
func (t *Table) flushOwned(conn *nftables.Conn, queue func(*nftables.Conn)) error {
	if t.own == nil {
		o, err := dialOwner(t.cfg.NetNS)
		if err != nil {
			return err
		}
		t.own = o
	}
	var now uint32
	switch cur, err := conn.ListTableOfFamily(TableName, nftables.TableFamilyINet); {
	case err == nil:
		// google/nftables decodes the big-endian NFTA_TABLE_FLAGS in
		// host byte order; undo that.
		now = binary.BigEndian.Uint32(binary.NativeEndian.AppendUint32(nil, cur.Flags))
	case !errors.Is(err, unix.ENOENT):
		return err
	}
	ref := newTableRef()
	owned := now&tableFlagOwner != 0
	msgs, err := record(func(c *nftables.Conn) {
		if !owned {
			c.AddTable(ref)
		}
		c.DelTable(ref)
		queue(c)
	})
	if err != nil {
		return err
	}
	send := func() error {
		want := uint32(tableFlagOwner)
		if t.ownerless {
			want = 0
		}
		flags := []uint32{want}
		if !owned {
			flags = []uint32{now, want}
		}
		if err := setTableFlags(msgs, flags...); err != nil {
			return err
		}
		return t.own.flush(msgs)
	}
	err = send()
	if errors.Is(err, unix.EOPNOTSUPP) && !t.ownerless && now == 0 {
		t.logger.Warn("this kernel has no owner flag for nftables tables (Linux 5.12 and later have it): the table is not tied to podflow's lifetime, and a killed podflow leaves it behind until the next start")
		t.ownerless = true
		err = send()
	}
	if errors.Is(err, unix.EPERM) && owned {
		return fmt.Errorf("another process owns it (another podflow on this node?): %w", err)
	}
	return err
}

// Delete removes the table this Table installed and releases the socket
// that owns it. A table it did not install (another podflow's) stays;
// one that is already gone is not an error.
func (t *Table) Delete() error {
	t.io.Lock()
	defer t.io.Unlock()
	t.mu.Lock()
	t.stats.Installed = false
	t.mu.Unlock()
	if t.own == nil {
		return nil
	}
	if !t.mine {
		err := t.own.close()
		t.own = nil
		return err
	}
	t.mine = false
	conn, err := t.dial()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	if t.installed != nil {
		_ = t.readCountersLocked()
	}
	t.installed = nil
	err = t.flushOwned(conn, func(*nftables.Conn) {})
	// Closing the owner socket alone would delete an owned table too.
	err = errors.Join(err, t.own.close())
	t.own = nil
	if err != nil {
		return fmt.Errorf("delete table inet %s: %w", TableName, err)
	}
	return nil
}

// Run re-asserts the table every interval until ctx is done: a table that
// is missing or differs from what Install built (another agent deleted or
// edited it) is rebuilt. It also reads the overlay counters. Install is
// expected to have run first; Run does not delete the table on return.
func (t *Table) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultResyncInterval
	}
	resync := time.NewTicker(interval)
	defer resync.Stop()
	poll := time.NewTicker(min(interval, counterPoll))
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-resync.C:
			t.Assert()
		case <-poll.C:
			t.io.Lock()
			if t.installed != nil {
				if err := t.readCountersLocked(); err != nil {
					t.logger.Debug("reading overlay counters failed", "err", err)
				}
			}
			t.io.Unlock()
		}
	}
}

// Assert checks the table once and rebuilds it when it is missing or
// differs; Run calls it every interval.
func (t *Table) Assert() {
	t.io.Lock()
	defer t.io.Unlock()
	conn, err := t.dial()
	reinstall := false
	if err == nil && t.installed != nil {
		var cur *state
		cur, err = t.readState(conn)
		if err == nil && cur.equal(t.installed) {
			if err := t.readCountersLocked(); err != nil {
				t.logger.Debug("reading overlay counters failed", "err", err)
			}
			t.recordSync(nil, false)
			return
		}
		if err == nil || errors.Is(err, errMissing) {
			reason := "it differs from the one podflow built"
			if err != nil {
				reason = "it is missing"
				if t.own != nil {
					// An owned table goes only with its socket.
					_ = t.own.close()
					t.own = nil
				}
			}
			t.logger.Warn("reinstalling the nftables table: "+reason, "reason", reason)
			reinstall = true
		}
	}
	err = t.installLocked()
	if err != nil {
		t.logger.Error("installing the nftables table failed", "err", err)
	}
	t.recordSync(err, reinstall)
}

// Stats returns a copy of the table's self-metrics. It does no I/O and
// never waits for it.
func (t *Table) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.stats
	s.Overlays = maps.Clone(t.stats.Overlays)
	return s
}

// readCountersLocked adds what each overlay counter counted since the last
// read to the running totals; a counter that went backwards was recreated.
func (t *Table) readCountersLocked() error {
	objs, err := t.conn.GetObjects(newTableRef())
	if err != nil {
		return err
	}
	for _, o := range objs {
		c, ok := o.(*nftables.CounterObj)
		if !ok {
			continue
		}
		last := t.lastSeen[c.Name]
		delta := c.Packets
		if c.Packets >= last {
			delta = c.Packets - last
		}
		t.lastSeen[c.Name] = c.Packets
		t.mu.Lock()
		t.stats.Overlays[c.Name] += delta
		t.mu.Unlock()
	}
	return nil
}

var errMissing = errors.New("table is missing")

// state is the table as the kernel reports it, without handles and
// counter values, so that two reads of an unchanged table are equal.
type state struct {
	chains   []chainState
	counters []string
}

type chainState struct {
	name     string
	hook     nftables.ChainHook
	priority nftables.ChainPriority
	typ      nftables.ChainType
	policy   nftables.ChainPolicy
	rules    [][]expr.Any
}

func (s *state) equal(o *state) bool {
	return reflect.DeepEqual(s, o)
}

func (t *Table) readState(conn *nftables.Conn) (*state, error) {
	ref := newTableRef()
	if _, err := conn.ListTableOfFamily(TableName, nftables.TableFamilyINet); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, errMissing
		}
		return nil, err
	}
	chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, err
	}
	st := &state{}
	for _, c := range chains {
		if c.Table.Name != TableName {
			continue
		}
		cs := chainState{name: c.Name, typ: c.Type}
		if c.Hooknum != nil {
			cs.hook = *c.Hooknum
		}
		if c.Priority != nil {
			cs.priority = *c.Priority
		}
		if c.Policy != nil {
			cs.policy = *c.Policy
		}
		rules, err := conn.GetRules(ref, c)
		if err != nil {
			return nil, err
		}
		for _, r := range rules {
			cs.rules = append(cs.rules, r.Exprs)
		}
		st.chains = append(st.chains, cs)
	}
	slices.SortFunc(st.chains, func(a, b chainState) int {
		if a.name < b.name {
			return -1
		}
		if a.name > b.name {
			return 1
		}
		return 0
	})
	objs, err := conn.GetObjects(ref)
	if err != nil {
		return nil, err
	}
	for _, o := range objs {
		if c, ok := o.(*nftables.CounterObj); ok {
			st.counters = append(st.counters, c.Name)
		}
	}
	slices.Sort(st.counters)
	return st, nil
}
