// Package conntrack reads per-connection accounting from the kernel's
// connection tracking through ctnetlink and turns it into deltas, each
// byte and packet counted exactly once. It is the only package that talks
// to ctnetlink (github.com/ti-mo/conntrack).
//
// # What the kernel gives
//
// With net.netfilter.nf_conntrack_acct=1 (per network namespace; New sets
// it when asked) every connection created from then on carries, for each
// direction, a packet count and an L3 byte count (IP header included)
// since it began. Connections created while accounting was off carry no
// counters for their whole life: they read as zero. podflow reads the
// totals two ways, both for IPv4 and IPv6 and with no other filter:
//
//   - destroy events (NFNLGRP_CONNTRACK_DESTROY): when a connection ends
//     (timeout, TCP close, flush) the kernel multicasts it with its final
//     totals;
//   - a periodic dump of the whole table (every DumpInterval), so that
//     connections living longer than that are counted while they live.
//
// # How each packet is counted once
//
// The Source remembers, per connection (its kernel ID plus protocol, zone
// and original tuple: IDs are reused), the totals already reported. A dump
// reports totals minus remembered (connections that did not move report
// nothing) and remembers the new totals; a destroy reports final totals
// minus remembered with Final set, and forgets the connection. The first
// dump after Run starts only takes a baseline: what connections sent
// before podflow ran is not counted, as a packet-mode podflow would not
// have seen it. Connections first seen later count from zero.
//
// Dump and destroy race: a dump is not atomic and the kernel announces a
// destroy just before it unlinks the entry. Destroys that arrive while a
// dump is in flight (or before the first dump succeeded) wait for its
// end, and a dump entry for a connection destroyed in the second or two
// before the dump began is skipped, so a dump never brings back an ended
// connection to count it again. Dumps are read one datagram (about a
// hundred connections) at a time and applied as they come: the kernel
// waits while podflow applies a chunk, and podflow never holds a copy of
// the table, only what it has counted per connection.
//
// A connection that ends while the first dump runs, before the dump
// reached it, cannot be told from one that began after podflow: it counts
// from zero, its whole life.
//
// # What is lost, and when
//
//   - Events the socket could not hold (ENOBUFS at tens of thousands of
//     ends per second past the read buffer): counted in Stats.LostEvents
//     and logged. A connection that is then absent from two dumps in a
//     row ended unseen; it is counted in Stats.Lost and forgotten, and
//     what it sent since the last dump is missing.
//   - Connections that start and end between two dumps and whose destroy
//     is lost: missing entirely (they never reach Tracked or Lost).
//   - Connections created before the event socket subscribed, when
//     net.netfilter.nf_conntrack_events is 2 (the default: events only
//     while someone listens), carry no event extension and end without a
//     destroy event: they end in Lost, and their last dump interval is
//     missing.
//   - A failed dump is counted (DumpErrors) and logged; the next one
//     retries and reports the whole difference then.
//   - Counters zeroed by someone else (conntrack -L -z) make totals go
//     backwards: the new total is counted whole (CounterResets).
//
// Counters advance at a connection's end or at the next dump: a rate over
// a window shorter than DumpInterval under-reads long connections.
package conntrack
