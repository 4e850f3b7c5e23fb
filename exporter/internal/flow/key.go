package flow

// Key is one series' label set, projected from a flow and its endpoints.
// Fields for opt-in labels stay empty unless their label is enabled, so
// that two flows with the same labels always share one key.
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
