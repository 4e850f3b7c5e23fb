package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// nfulnl_msg_config attributes and commands (linux/netfilter/nfnetlink_log.h).
const (
	cfgCmd      = 1
	cfgMode     = 2
	cfgNlBufSiz = 3
	cfgTimeout  = 4
	cfgQThresh  = 5
	cfgFlags    = 6

	cmdBind   = 1
	cmdUnbind = 2

	copyPacket = 2

	flagSeq       = 0x0001
	flagConntrack = 0x0004
)

// conn is one NETLINK_NETFILTER socket in Go's poller. Only one
// goroutine at a time may use it; interrupt may be called from any.
type conn struct {
	f   *os.File
	rc  syscall.RawConn
	fd  int
	seq uint32 // of the last request sent

	// The poller calls readFn, made once so that a read allocates
	// nothing; it leaves its results in n and err for recv to return.
	readFn func(fd uintptr) bool
	buf    []byte
	n      int
	err    error
}

// dial opens a socket in the network namespace netns (0: the current
// one) with a receive buffer of readBuffer bytes (0: the system's).
func dial(netns, readBuffer int) (*conn, error) {
	fd, err := openSocket(netns)
	if err != nil {
		return nil, err
	}
	if err := setReadBuffer(fd, readBuffer); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("socket receive buffer of %d bytes: %w", readBuffer, err)
	}
	c := &conn{f: os.NewFile(uintptr(fd), "nflog"), fd: fd}
	if c.rc, err = c.f.SyscallConn(); err != nil {
		_ = c.f.Close()
		return nil, err
	}
	c.readFn = func(fd uintptr) bool {
		c.n, c.err = recv(int(fd), c.buf)
		return !errors.Is(c.err, unix.EAGAIN)
	}
	return c, nil
}

// recv waits for one datagram and reads it into buf. It returns the
// datagram's full length, which exceeds len(buf) when it was cut.
func (c *conn) recv(buf []byte) (int, error) {
	c.buf = buf
	if err := c.rc.Read(c.readFn); err != nil {
		return 0, err
	}
	return c.n, c.err
}

// request sends one NFULNL_MSG_CONFIG for group and returns its sequence
// number, which the kernel's acknowledgement carries.
func (c *conn) request(group uint16, attrs []byte) (uint32, error) {
	c.seq++
	return c.seq, send(c.fd, configMsg(c.seq, group, attrs))
}

// setDeadline bounds the reads that follow (zero: none).
func (c *conn) setDeadline(t time.Time) { _ = c.f.SetReadDeadline(t) }

// interrupt ends a read in progress and every later one.
func (c *conn) interrupt() { c.setDeadline(time.Unix(1, 0)) }

// close releases the socket, and with it the group if it held one.
func (c *conn) close() { _ = c.f.Close() }

// openSocket opens a NETLINK_NETFILTER socket, non-blocking so that Go's
// poller waits for it, in the network namespace netns (0: the current one).
func openSocket(netns int) (int, error) {
	open := func() (int, error) {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_NETFILTER)
		if err != nil {
			return -1, fmt.Errorf("netlink socket: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			_ = unix.Close(fd)
			return -1, fmt.Errorf("netlink bind: %w", err)
		}
		return fd, nil
	}
	if netns == 0 {
		return open()
	}
	// A socket belongs to the namespace of the thread that creates it.
	// The switch happens on a locked thread of a goroutine of its own: if
	// switching back fails, the thread stays locked and dies with it.
	type result struct {
		fd  int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{-1, err}
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(netns, unix.CLONE_NEWNET); err != nil {
			ch <- result{-1, fmt.Errorf("setns: %w", err)}
			return
		}
		fd, err := open()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			if fd >= 0 {
				_ = unix.Close(fd)
			}
			ch <- result{-1, fmt.Errorf("setns back: %w", err)}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{fd, err}
	}()
	r := <-ch
	return r.fd, r.err
}

// setReadBuffer asks for n bytes of receive buffer, beyond rmem_max when
// privileged (SO_RCVBUFFORCE), else as much as rmem_max allows.
func setReadBuffer(fd, n int) error {
	if n <= 0 {
		return nil
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n); err == nil {
		return nil
	}
	return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, n)
}

// configMsg builds one NFULNL_MSG_CONFIG request for group with the
// attributes in attrs (already encoded), asking for an acknowledgement.
func configMsg(seq uint32, group uint16, attrs []byte) []byte {
	n := nlmsgHdrLen + nfgenHdrLen + len(attrs)
	b := make([]byte, n)
	binary.NativeEndian.PutUint32(b[0:4], uint32(n)) //nolint:gosec // a config request of a few dozen bytes
	binary.NativeEndian.PutUint16(b[4:6], msgConfig)
	binary.NativeEndian.PutUint16(b[6:8], unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	binary.NativeEndian.PutUint32(b[8:12], seq)
	b[16] = unix.AF_UNSPEC
	b[17] = unix.NFNETLINK_V0
	binary.BigEndian.PutUint16(b[18:20], group)
	copy(b[20:], attrs)
	return b
}

// attr appends one netlink attribute, padded to 4 bytes.
func attr(b []byte, typ uint16, v []byte) []byte {
	var h [nlaHdrLen]byte
	binary.NativeEndian.PutUint16(h[0:2], uint16(nlaHdrLen+len(v))) //nolint:gosec // config attributes of a few bytes
	binary.NativeEndian.PutUint16(h[2:4], typ)
	b = append(b, h[:]...)
	b = append(b, v...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// bindAttrs is the configuration podflow binds with: bind, copy mode and
// range, the kernel's batch buffer, flush timeout, queue threshold, flags.
func bindAttrs(cfg *Config, flags uint16) []byte {
	var b []byte
	b = attr(b, cfgCmd, []byte{cmdBind})
	mode := binary.BigEndian.AppendUint32(nil, cfg.SnapLen)
	mode = append(mode, copyPacket, 0)
	b = attr(b, cfgMode, mode)
	b = attr(b, cfgNlBufSiz, be32(cfg.BufferSize))
	b = attr(b, cfgTimeout, be32(uint32(cfg.FlushTimeout.Milliseconds()/10))) //nolint:gosec // Validate caps it at a minute
	b = attr(b, cfgQThresh, be32(uint32(cfg.QueueThreshold)))
	b = attr(b, cfgFlags, binary.BigEndian.AppendUint16(nil, flags))
	return b
}

func unbindAttrs() []byte { return attr(nil, cfgCmd, []byte{cmdUnbind}) }

func send(fd int, msg []byte) error {
	return unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
}

// recv reads one datagram into buf without allocating. It returns the
// datagram's full length, which exceeds len(buf) when it was truncated.
func recv(fd int, buf []byte) (int, error) {
	n, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), unix.MSG_TRUNC|unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

var errAckTimeout = errors.New("no acknowledgement from the kernel")
