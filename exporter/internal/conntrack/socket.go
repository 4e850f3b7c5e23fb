package conntrack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// nlSocket is one NETLINK_NETFILTER socket in Go's poller, in the network
// namespace of the thread that opened it. One goroutine at a time reads
// it; close may come from any.
type nlSocket struct {
	f  *os.File
	rc syscall.RawConn
	fd int

	// readFn is made once so that a read allocates nothing; it leaves
	// its results in n and err.
	readFn func(fd uintptr) bool
	buf    []byte
	n      int
	err    error
}

func openSocket() (*nlSocket, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("netlink bind: %w", err)
	}
	s := &nlSocket{f: os.NewFile(uintptr(fd), "ctnetlink"), fd: fd}
	if s.rc, err = s.f.SyscallConn(); err != nil {
		_ = s.f.Close()
		return nil, err
	}
	s.readFn = func(fd uintptr) bool {
		s.n, _, s.err = unix.Recvfrom(int(fd), s.buf, unix.MSG_TRUNC)
		return !errors.Is(s.err, unix.EAGAIN)
	}
	return s, nil
}

// recv waits for one datagram and reads it into buf. It returns the
// datagram's length, more than len(buf) when it was cut.
func (s *nlSocket) recv(buf []byte) (int, error) {
	s.buf = buf
	if err := s.rc.Read(s.readFn); err != nil {
		return 0, err
	}
	return s.n, s.err
}

// tryRecv reads one datagram if one is waiting; unix.EAGAIN if none.
func (s *nlSocket) tryRecv(buf []byte) (int, error) {
	var n int
	var rerr error
	if err := s.rc.Control(func(fd uintptr) {
		n, _, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_TRUNC|unix.MSG_DONTWAIT)
	}); err != nil {
		return 0, err
	}
	return n, rerr
}

func (s *nlSocket) close() error { return s.f.Close() }

// setReadBuffer asks for n bytes of receive buffer, beyond rmem_max when
// privileged (SO_RCVBUFFORCE), else as much as rmem_max allows.
func (s *nlSocket) setReadBuffer(n int) error {
	if err := unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n); err == nil {
		return nil
	}
	return unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_RCVBUF, n)
}

// join subscribes to a netfilter multicast group (NFNLGRP_*).
func (s *nlSocket) join(group int) error {
	return unix.SetsockoptInt(s.fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, group)
}

// sendDump asks for the whole conntrack table, IPv4 and IPv6.
func (s *nlSocket) sendDump(seq uint32) error {
	var b [nlmsgHdrLen + nfgenHdrLen]byte
	binary.NativeEndian.PutUint32(b[0:4], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:6], subsysCTNetlink<<8|msgCTGet)
	binary.NativeEndian.PutUint16(b[6:8], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(b[8:12], seq)
	b[16] = unix.AF_UNSPEC
	b[17] = unix.NFNETLINK_V0
	return unix.Sendto(s.fd, b[:], 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
}

// nlError reads an NLMSG_ERROR's errno (0 for an acknowledgement).
func nlError(payload []byte) error {
	if len(payload) < 4 {
		return errMalformed
	}
	code := int32(binary.NativeEndian.Uint32(payload[0:4])) //nolint:gosec // the kernel's negative errno
	if code >= 0 {
		return nil
	}
	return unix.Errno(-code) //nolint:gosec // positive after the check
}
