package main

import (
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
	sport := fs.Int("sport", 10000, "with -newconns: the first source port; each connection takes the next")
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

	var sent, flow uint64
	start := time.Now()
	deadline := start.Add(*duration)
	for {
		now := time.Now()
		if *count > 0 && sent >= *count || *count == 0 && now.After(deadline) {
			break
		}
		n := uint64(batch)
		if *rate > 0 {
			due := uint64(now.Sub(start).Seconds() * float64(*rate))
			if due <= sent {
				time.Sleep(time.Millisecond)
				continue
			}
			n = min(n, due-sent)
		}
		if *count > 0 {
			n = min(n, *count-sent)
		}
		for i := range n {
			m := &msgs[i].hdr
			m.Name = (*byte)(unsafe.Pointer(&names[(flow+i)%flows]))
			m.Namelen = unix.SizeofSockaddrInet4
			m.Iov = &iov
			m.Iovlen = 1
		}
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(n), 0, 0, 0)
		if e != 0 {
			if e == unix.ENOBUFS || e == unix.EAGAIN {
				continue
			}
			fmt.Fprintln(os.Stderr, "gen: sendmmsg:", e)
			return 1
		}
		sent += uint64(r)
		flow += uint64(r)
	}
	_ = json.NewEncoder(os.Stdout).Encode(genResult{Sent: sent, Seconds: time.Since(start).Seconds()})
	return 0
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
