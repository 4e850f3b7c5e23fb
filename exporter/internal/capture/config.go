package capture

import (
	"fmt"
	"time"

	"github.com/podflow/podflow/exporter/internal/nft"
)

// Config says which group to read and how the kernel should batch it.
// Zero fields other than Group and NetNS take DefaultConfig's values.
type Config struct {
	// Group is the NFLOG group (--nflog.group).
	Group uint16
	// SnapLen caps how many bytes of each packet the kernel copies
	// (the instance's copy range); the log rule's snaplen also applies.
	SnapLen uint32
	// QueueThreshold is how many packets the kernel batches before it
	// wakes the reader (--nflog.queue-threshold).
	QueueThreshold uint32
	// BufferSize is the kernel's batch buffer, NFULNL_CFG_NLBUFSIZ
	// (--nflog.buffer-size); the kernel caps it at 128 KiB.
	BufferSize uint32
	// FlushTimeout is how long the kernel holds a partial batch
	// (--nflog.flush-timeout), in steps of 10ms.
	FlushTimeout time.Duration
	// ReadBuffer is the socket's receive buffer (--nflog.read-buffer).
	ReadBuffer int
	// NetNS is a file descriptor of the network namespace whose group to
	// bind; 0 means the namespace of the process.
	NetNS int
	// MaxBackoff caps the wait between attempts to bind a group that
	// another process owns.
	MaxBackoff time.Duration
	// BindTimeout is how long Bind keeps trying while another process
	// owns the group (a predecessor still shutting down) before it gives
	// up.
	BindTimeout time.Duration
}

const maxNlBufSiz = 128 << 10 // the kernel clamps NFULNL_CFG_NLBUFSIZ to this

// DefaultConfig returns the defaults of the --nflog.* flags. The group,
// snaplen and queue threshold are the table's (nft), which logs to the
// group.
func DefaultConfig() Config {
	return Config{
		Group:          nft.DefaultGroup,
		SnapLen:        nft.DefaultSnapLen,
		QueueThreshold: nft.DefaultQueueThreshold,
		BufferSize:     maxNlBufSiz,
		FlushTimeout:   100 * time.Millisecond,
		ReadBuffer:     8 << 20,
		MaxBackoff:     5 * time.Second,
		BindTimeout:    10 * time.Second,
	}
}

func (c *Config) withDefaults() Config {
	d := DefaultConfig()
	out := *c
	if out.SnapLen == 0 {
		out.SnapLen = d.SnapLen
	}
	if out.QueueThreshold == 0 {
		out.QueueThreshold = d.QueueThreshold
	}
	if out.BufferSize == 0 {
		out.BufferSize = d.BufferSize
	}
	if out.FlushTimeout == 0 {
		out.FlushTimeout = d.FlushTimeout
	}
	if out.ReadBuffer == 0 {
		out.ReadBuffer = d.ReadBuffer
	}
	if out.MaxBackoff == 0 {
		out.MaxBackoff = d.MaxBackoff
	}
	if out.BindTimeout == 0 {
		out.BindTimeout = d.BindTimeout
	}
	return out
}

// Validate reports a setting the kernel would refuse or silently change.
func (c *Config) Validate() error {
	v := c.withDefaults()
	switch {
	case v.SnapLen < nft.MinSnapLen || v.SnapLen > nft.MaxSnapLen:
		return fmt.Errorf("nflog snaplen %d: want %d to %d bytes", v.SnapLen, nft.MinSnapLen, nft.MaxSnapLen)
	case v.BufferSize < 4096 || v.BufferSize > maxNlBufSiz:
		return fmt.Errorf("nflog buffer size %d: want 4096 to %d bytes (the kernel's limit)", v.BufferSize, maxNlBufSiz)
	case v.FlushTimeout < 10*time.Millisecond || v.FlushTimeout > time.Minute:
		return fmt.Errorf("nflog flush timeout %v: want 10ms to 1m", v.FlushTimeout)
	case v.ReadBuffer < 0:
		return fmt.Errorf("nflog read buffer %d: negative", v.ReadBuffer)
	case v.MaxBackoff < 0:
		return fmt.Errorf("bind backoff %v: negative", v.MaxBackoff)
	}
	return nil
}
