package decode

import (
	"testing"

	"github.com/podflow/podflow/exporter/internal/flow"
)

// FuzzDecode feeds arbitrary bytes and families to Decode. The seed
// corpus is every captured vector under both families. Decode must not
// panic, and a packet it accepts must be self-consistent.
func FuzzDecode(f *testing.F) {
	for _, v := range loadVectors(f) {
		f.Add(v.data, uint8(afInet))
		f.Add(v.data, uint8(afInet6))
	}
	f.Add([]byte{}, uint8(afInet))
	f.Add([]byte{0x60}, uint8(afInet6))
	f.Fuzz(func(t *testing.T, data []byte, family uint8) {
		var p flow.Packet
		r := Decode(&flow.Record{Payload: data, Family: family}, &p)
		if r >= numReasons {
			t.Fatalf("reason %d out of range", r)
		}
		if r != OK {
			return
		}
		switch {
		case !p.Src.IsValid() || !p.Dst.IsValid():
			t.Fatalf("accepted without addresses: %+v", p)
		case family == afInet && (!p.Src.Is4() || p.Length < ipv4MinHeader):
			t.Fatalf("bad IPv4 result: %+v", p)
		case family == afInet6 && (!p.Src.Is6() || p.Length < ipv6Header):
			t.Fatalf("bad IPv6 result: %+v", p)
		case family != afInet && family != afInet6:
			t.Fatalf("accepted family %d", family)
		case !p.Proto.HasPorts() && (p.SrcPort != 0 || p.DstPort != 0):
			t.Fatalf("ports on %v: %+v", p.Proto, p)
		case uint32(p.HeaderLen) > p.Length || p.HeaderLen < ipv4MinHeader:
			t.Fatalf("header length %d of a %d-byte packet", p.HeaderLen, p.Length)
		case p.BigTCP && p.Proto != flow.ProtoTCP:
			t.Fatalf("BIG TCP on %v", p.Proto)
		}
	})
}
