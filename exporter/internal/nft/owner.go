package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"syscall"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Table ownership. The table carries the kernel's owner flag
// (NFT_TABLE_F_OWNER, Linux 5.12): it belongs to the netlink socket that
// created it, which podflow keeps open for as long as it runs. While the
// flag is set:
//
//   - only that socket can change or delete the table (others get EPERM),
//     so neither a second podflow nor another agent can replace it or
//     delete it from under the first;
//   - the kernel deletes the table when the socket closes, so a podflow
//     that crashes or is killed leaves nothing behind.
//
// google/nftables cannot set table flags, so the table's messages are
// marshalled by a Conn that records them instead of sending them (the
// library's own test dialer), the flag is set in them, and the owner
// socket sends them in one batch. Reads use ordinary connections: the
// flag does not restrict them. On a kernel without the flag the table is
// installed without it, as before (logged once).

// tableFlagOwner is NFT_TABLE_F_OWNER (linux/netfilter/nf_tables.h).
const tableFlagOwner = 0x2

// owner is the socket that owns the table.
type owner struct {
	c   *netlink.Conn
	buf []byte
}

func dialOwner(netns int) (*owner, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netns})
	if err != nil {
		return nil, err
	}
	return &owner{c: c, buf: make([]byte, 64<<10)}, nil
}

func (o *owner) close() error { return o.c.Close() }

// record returns the messages that queue adds to a Conn, batch framing
// included, without sending them anywhere.
func record(queue func(*nftables.Conn)) ([]netlink.Message, error) {
	var msgs []netlink.Message
	c, err := nftables.New(nftables.WithTestDial(func(req []netlink.Message) ([]netlink.Message, error) {
		msgs = append(msgs, req...)
		return nil, nil
	}))
	if err != nil {
		return nil, err
	}
	queue(c)
	if err := c.Flush(); err != nil {
		return nil, err
	}
	return msgs, nil
}

const newTableType = netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWTABLE)

// setTableFlags sets NFTA_TABLE_FLAGS of the i-th NEWTABLE message in
// msgs to flags[i].
func setTableFlags(msgs []netlink.Message, flags ...uint32) error {
	i := 0
	for m := range msgs {
		if msgs[m].Header.Type != newTableType || i >= len(flags) {
			continue
		}
		data := msgs[m].Data
		if len(data) < 4 {
			return errors.New("short NEWTABLE message")
		}
		attrs, err := netlink.UnmarshalAttributes(data[4:])
		if err != nil {
			return err
		}
		for a := range attrs {
			if attrs[a].Type == unix.NFTA_TABLE_FLAGS {
				attrs[a].Data = binary.BigEndian.AppendUint32(nil, flags[i])
			}
		}
		b, err := netlink.MarshalAttributes(attrs)
		if err != nil {
			return err
		}
		msgs[m].Data = slices.Concat(data[:4], b)
		msgs[m].Header.Length = 0
		i++
	}
	return nil
}

// flush sends msgs, one batch, and returns the first error the kernel
// reports for them. The kernel runs a batch inside the send call, so
// every reply is queued on the socket when the send returns: reading
// what is there is enough, without waiting.
func (o *owner) flush(msgs []netlink.Message) error {
	for i := range msgs {
		// Numbered by this socket, so that its replies can be told
		// from replies to an earlier batch.
		msgs[i].Header.Sequence, msgs[i].Header.PID = 0, 0
	}
	sent, err := o.c.SendMessages(msgs)
	if err != nil {
		return err
	}
	pending := map[uint32]int{} // sequence number to index in msgs
	for i, m := range sent {
		if m.Header.Flags&netlink.Acknowledge != 0 {
			pending[m.Header.Sequence] = i
		}
	}
	rc, err := o.c.SyscallConn()
	if err != nil {
		return err
	}
	var first error
	for len(pending) > 0 {
		var n int
		var rerr error
		if err := rc.Read(func(fd uintptr) bool {
			n, rerr = recvNow(int(fd), o.buf)
			return true
		}); err != nil {
			return err
		}
		if errors.Is(rerr, unix.EAGAIN) {
			break
		}
		if rerr != nil {
			return rerr
		}
		walkAcks(o.buf[:min(n, len(o.buf))], func(seq uint32, errno syscall.Errno) {
			i, ok := pending[seq]
			if !ok {
				return
			}
			delete(pending, seq)
			if errno != 0 && first == nil {
				first = fmt.Errorf("%s (message %d of the batch): %w", msgName(sent[i].Header.Type), i, errno)
			}
		})
	}
	if first == nil && len(pending) > 0 {
		first = fmt.Errorf("%d of the batch's messages were not acknowledged", len(pending))
	}
	return first
}

// walkAcks calls fn with the sequence number and errno of every
// NLMSG_ERROR message (an acknowledgement when errno is 0) in b.
func walkAcks(b []byte, fn func(seq uint32, errno syscall.Errno)) {
	const hdr = 16
	for len(b) >= hdr {
		l := int(binary.NativeEndian.Uint32(b[0:4]))
		if l < hdr || l > len(b) {
			return
		}
		if binary.NativeEndian.Uint16(b[4:6]) == unix.NLMSG_ERROR && l >= hdr+4 {
			code := int32(binary.NativeEndian.Uint32(b[hdr : hdr+4]))             //nolint:gosec // the kernel's int error, negative errno
			fn(binary.NativeEndian.Uint32(b[8:12]), syscall.Errno(uint32(-code))) //nolint:gosec // a non-negative errno
		}
		l = (l + 3) &^ 3
		if l >= len(b) {
			return
		}
		b = b[l:]
	}
}

// recvNow reads one datagram without waiting.
func recvNow(fd int, buf []byte) (int, error) {
	n, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
	return n, err
}

// msgName names an nf_tables message type for errors.
func msgName(t netlink.HeaderType) string {
	names := map[int]string{
		unix.NFT_MSG_NEWTABLE: "add table", unix.NFT_MSG_DELTABLE: "delete table",
		unix.NFT_MSG_NEWCHAIN: "add chain", unix.NFT_MSG_NEWRULE: "add rule", unix.NFT_MSG_NEWOBJ: "add object",
	}
	if n, ok := names[int(t)&0xff]; ok {
		return n
	}
	return fmt.Sprintf("message type %#x", int(t))
}
