package main

import (
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// genResult is what the generator prints when it is done.
type genResult struct {
	Sent    uint64  `json:"sent"`
	Seconds float64 `json:"seconds"`
	// CPU is the generator process's user and system time, filled in by
	// the parent from its rusage: sending, and the router's forwarding
	// that runs in the softirq of its sends.
	CPU time.Duration `json:"-"`
}

type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// gen sends small UDP datagrams (18-byte payload, 46-byte IP packets) to
// 64 destination ports with sendmmsg batches of 32, paced to -rate packets
// per second (0: as fast as possible) until -count packets or -duration.
func gen(args []string) int {
	fs := flag.NewFlagSet("gen", flag.ContinueOnError)
	dst := fs.String("dst", "10.245.2.2", "destination address")
	rate := fs.Int("rate", 0, "packets per second; 0 sends as fast as possible")
	count := fs.Uint64("count", 0, "packets to send; 0 sends for -duration")
	duration := fs.Duration("duration", 5*time.Second, "how long to send when -count is 0")
	newConns := fs.Bool("newconns", false, "send each datagram from a new socket (a new connection each) to port 9000")
	sport := fs.Int("sport", 10000, "with -newconns or -shape: the first source port; each connection takes the next")
	shape := fs.String("shape", "spread", "spread: 64 flows from one socket; long: one connection; short: a new connection every -per-conn packets (long and short are sent from a raw socket)")
	perConn := fs.Uint64("per-conn", 10, "with -shape short: packets per connection")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	addr, err := netip.ParseAddr(*dst)
	if err != nil || !addr.Is4() {
		fmt.Fprintln(os.Stderr, "gen: -dst must be an IPv4 address")
		return 2
	}
	if *newConns {
		return genConns(addr, *rate, *count, *duration, *sport)
	}
	switch *shape {
	case "spread":
	case "long":
		return genRaw(addr, *rate, *count, *duration, *sport, 0)
	case "short":
		if *perConn == 0 {
			fmt.Fprintln(os.Stderr, "gen: -per-conn must be at least 1")
			return 2
		}
		return genRaw(addr, *rate, *count, *duration, *sport, *perConn)
	default:
		fmt.Fprintln(os.Stderr, "gen: -shape must be spread, long or short")
		return 2
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		return 1
	}
	defer unix.Close(fd)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)

	const batch, flows = 32, 64
	payload := make([]byte, 18)
	names := make([]unix.RawSockaddrInet4, flows)
	for i := range names {
		names[i] = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: addr.As4()}
		p := uint16(9000 + i)
		names[i].Port = p>>8 | p<<8 // network byte order
	}
	iov := unix.Iovec{Base: &payload[0]}
	iov.SetLen(len(payload))
	msgs := make([]mmsghdr, batch)

	return pace(*rate, *count, *duration, batch, func(sent, n uint64) (uint64, error) {
		for i := range n {
			m := &msgs[i].hdr
			m.Name = (*byte)(unsafe.Pointer(&names[(sent+i)%flows]))
			m.Namelen = unix.SizeofSockaddrInet4
			m.Iov = &iov
			m.Iovlen = 1
		}
		return sendmmsg(fd, msgs[:n])
	})
}

// pace calls send with batches of at most batch packets, paced to rate
// packets per second (0: as fast as possible), until count packets are
// sent or, when count is 0, for duration; send is told how many went
// before and returns how many it sent. It prints the genResult.
func pace(rate int, count uint64, duration time.Duration, batch uint64, send func(sent, n uint64) (uint64, error)) int {
	var sent uint64
	start := time.Now()
	deadline := start.Add(duration)
	for {
		now := time.Now()
		if count > 0 && sent >= count || count == 0 && now.After(deadline) {
			break
		}
		n := batch
		if rate > 0 {
			due := uint64(now.Sub(start).Seconds() * float64(rate))
			if due <= sent {
				time.Sleep(time.Millisecond)
				continue
			}
			n = min(n, due-sent)
		}
		if count > 0 {
			n = min(n, count-sent)
		}
		r, err := send(sent, n)
		if err != nil {
			fmt.Fprintln(os.Stderr, "gen:", err)
			return 1
		}
		sent += r
	}
	_ = json.NewEncoder(os.Stdout).Encode(genResult{Sent: sent, Seconds: time.Since(start).Seconds()})
	return 0
}

// sendmmsg sends msgs in one system call and returns how many went; a
// full queue (ENOBUFS, EAGAIN) sends none and is no error.
func sendmmsg(fd int, msgs []mmsghdr) (uint64, error) {
	r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), 0, 0, 0)
	switch e {
	case 0:
		return uint64(r), nil
	case unix.ENOBUFS, unix.EAGAIN:
		return 0, nil
	}
	return 0, fmt.Errorf("sendmmsg: %w", e)
}

// genConns sends one datagram per new socket (so per connection) to
// addr:9000, from source ports sport, sport+1 and so on, paced to rate
// per second. Ports no earlier run used keep every connection new to
// conntrack.
func genConns(addr netip.Addr, rate int, count uint64, duration time.Duration, sport int) int {
	to := &unix.SockaddrInet4{Addr: addr.As4(), Port: 9000}
	payload := make([]byte, 18)
	var sent uint64
	start := time.Now()
	for (count == 0 || sent < count) && time.Since(start) < duration {
		if rate > 0 && uint64(time.Since(start).Seconds()*float64(rate)) <= sent {
			time.Sleep(100 * time.Microsecond)
			continue
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
		if err != nil {
			fmt.Fprintln(os.Stderr, "gen:", err)
			return 1
		}
		port := sport + int(sent)
		if port > 65535 {
			_ = unix.Close(fd)
			fmt.Fprintln(os.Stderr, "gen: out of source ports")
			return 1
		}
		err = unix.Bind(fd, &unix.SockaddrInet4{Port: port})
		if err == nil {
			err = unix.Sendto(fd, payload, 0, to)
		}
		_ = unix.Close(fd)
		if err != nil && err != unix.ENOBUFS && err != unix.EAGAIN {
			fmt.Fprintln(os.Stderr, "gen: sendto:", err)
			return 1
		}
		if err == nil {
			sent++
		}
	}
	_ = json.NewEncoder(os.Stdout).Encode(genResult{Sent: sent, Seconds: time.Since(start).Seconds()})
	return 0
}

// Ports of the raw sender's connections: source ports from rawPortLo on,
// and when they run out, the next destination port of the sink's range.
const (
	rawPortLo = 1024
	rawPorts  = 65536 - rawPortLo
	rawDPorts = 64 // 9000-9063, the sink's range
)

// rawTuple returns the source and destination ports of connection c of a
// raw sender whose first source port is sport.
func rawTuple(sport int, c uint64) (src, dst uint16) {
	i := uint64(max(sport-rawPortLo, 0)) + c                                     //nolint:gosec // not negative
	return uint16(rawPortLo + i%rawPorts), uint16(9000 + (i/rawPorts)%rawDPorts) //nolint:gosec // in range
}

// genRaw sends 46-byte UDP datagrams from a raw socket (IP_HDRINCL), so
// that each may carry any source port without a socket of its own: with
// perConn 0, all of them on one connection (source port sport, to 9000);
// otherwise a new connection every perConn packets (rawTuple). It paces
// and batches like the socket sender (sendmmsg, 32 at a time). The
// kernel fills in the IP header's source, checksum and ID; the UDP checksum is 0
// (none, allowed over IPv4).
func genRaw(addr netip.Addr, rate int, count uint64, duration time.Duration, sport int, perConn uint64) int {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		return 1
	}
	defer unix.Close(fd)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
	const batch, size = 32, packetSize
	bufs := make([][size]byte, batch)
	iovs := make([]unix.Iovec, batch)
	msgs := make([]mmsghdr, batch)
	to := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: addr.As4()}
	dst := addr.As4()
	for i := range bufs {
		b := bufs[i][:]
		b[0] = 0x45                             // IPv4, 20-byte header
		binary.BigEndian.PutUint16(b[2:], size) // total length
		b[8] = 64                               // TTL
		b[9] = unix.IPPROTO_UDP
		// Source address 0: the kernel fills in the route's.
		copy(b[16:20], dst[:])
		binary.BigEndian.PutUint16(b[24:], size-20) // UDP length
		iovs[i].Base = &b[0]
		iovs[i].SetLen(size)
		m := &msgs[i].hdr
		m.Name = (*byte)(unsafe.Pointer(&to))
		m.Namelen = unix.SizeofSockaddrInet4
		m.Iov = &iovs[i]
		m.Iovlen = 1
	}
	return pace(rate, count, duration, batch, func(sent, n uint64) (uint64, error) {
		for i := range n {
			s, d := uint16(sport), uint16(9000) //nolint:gosec // a port
			if perConn > 0 {
				s, d = rawTuple(sport, (sent+i)/perConn)
			}
			b := bufs[i][:]
			binary.BigEndian.PutUint16(b[20:], s)
			binary.BigEndian.PutUint16(b[22:], d)
		}
		return sendmmsg(fd, msgs[:n])
	})
}
