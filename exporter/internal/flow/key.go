package flow

// Key is one series' label set, projected from a flow and its endpoints.
// Every field holds its label's value and nothing more: kinds and the
// protocol as their Label method projects them, the port zero for a
// protocol without ports, and fields for opt-in labels empty unless their
// label is enabled. Two flows with the same labels therefore always share
// one key, and two keys never expose the same labels.
type Key struct {
	SrcNamespace, SrcWorkload string
	SrcKind                   Kind
	DstNamespace, DstWorkload string
	DstKind                   Kind
	DstPort                   uint16
	Proto                     Protocol
	// Opt-in labels.
	SrcPod, DstPod, DstService string
}
