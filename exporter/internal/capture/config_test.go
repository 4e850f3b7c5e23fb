package capture

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	var zero Config
	if err := zero.Validate(); err != nil {
		t.Errorf("zero Config (defaults): %v", err)
	}
	if got := zero.withDefaults(); got.SnapLen != 128 || got.QueueThreshold != 16 || got.BufferSize != 128<<10 ||
		got.FlushTimeout != 100*time.Millisecond || got.ReadBuffer != 8<<20 || got.MaxBackoff != 5*time.Second {
		t.Errorf("defaults = %+v", got)
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{SnapLen: 20}, "snaplen 20"},
		{Config{BufferSize: 256 << 10}, "the kernel's limit"},
		{Config{BufferSize: 100}, "nflog buffer size 100"},
		{Config{FlushTimeout: time.Millisecond}, "flush timeout"},
		{Config{FlushTimeout: time.Hour}, "flush timeout"},
		{Config{ReadBuffer: -1}, "negative"},
	} {
		if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want an error containing %q", tc.cfg, err, tc.want)
		}
	}
}

// TestBindRequest pins the bytes of the configuration request to the
// layout of nfnetlink_log.h: one NFULNL_MSG_CONFIG for the group with
// bind, mode, nlbufsiz, timeout, qthresh and flags.
func TestBindRequest(t *testing.T) {
	cfg := DefaultConfig()
	msg := configMsg(7, 100, bindAttrs(&cfg, flagSeq|flagConntrack))
	ne := binary.NativeEndian
	if int(ne.Uint32(msg[0:4])) != len(msg) || ne.Uint16(msg[4:6]) != 0x0401 || ne.Uint16(msg[6:8]) != 0x0005 || ne.Uint32(msg[8:12]) != 7 {
		t.Fatalf("header % x: want length, type 0x0401 (ULOG config), flags request|ack, seq 7", msg[:16])
	}
	if !bytes.Equal(msg[16:20], []byte{0, 0, 0, 100}) {
		t.Errorf("nfgenmsg % x, want AF_UNSPEC, v0, group 100 big-endian", msg[16:20])
	}
	type a struct {
		typ uint16
		val []byte
	}
	var got []a
	if !walk(msg[20:], func(typ uint16, v []byte) bool { got = append(got, a{typ, append([]byte(nil), v...)}); return true }) {
		t.Fatal("attributes do not parse")
	}
	want := []a{
		{cfgCmd, []byte{cmdBind}},
		{cfgMode, []byte{0, 0, 0, 128, copyPacket, 0}},
		{cfgNlBufSiz, []byte{0, 2, 0, 0}},
		{cfgTimeout, []byte{0, 0, 0, 10}},
		{cfgQThresh, []byte{0, 0, 0, 16}},
		{cfgFlags, []byte{0, 5}},
	}
	if len(got) != len(want) {
		t.Fatalf("attributes = %v, want %v", got, want)
	}
	for i := range want {
		if got[i].typ != want[i].typ || !bytes.Equal(got[i].val, want[i].val) {
			t.Errorf("attribute %d = %d % x, want %d % x", i, got[i].typ, got[i].val, want[i].typ, want[i].val)
		}
	}
}
