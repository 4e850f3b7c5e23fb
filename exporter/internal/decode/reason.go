package decode

// Reason says why a record could not be decoded; OK when it could. The
// strings are the values of the reason label of
// podflow_decode_errors_total and must stay stable.
type Reason uint8

// Reasons a record is not counted in the pair counters.
const (
	// OK: the packet was decoded.
	OK Reason = iota
	// Truncated: the captured bytes end before a header podflow must read.
	Truncated
	// BadVersion: the IP version nibble is neither 4 nor 6, or it does not
	// match the protocol family NFLOG reported.
	BadVersion
	// BadHeaderLength: a header length field is below its protocol's
	// minimum (IPv4 IHL < 5, TCP data offset < 5).
	BadHeaderLength
	// BadLength: the IP length field is smaller than the headers it must
	// hold, or a transport header lies past the end of the IP packet.
	BadLength
	// Jumbo: the IP length field is zero (IPv4 total length 0, or IPv6
	// payload length 0 without a Jumbo Payload option) on a packet that
	// is not TCP. The kernel zeroes it only for GSO packets above 64 KiB
	// of TCP (BIG TCP), which are decoded.
	Jumbo
	// Fragment: a non-first fragment, which carries no transport header.
	// With conntrack loaded (always on a Kubernetes node) netfilter
	// reassembles before podflow's chains, so these are rare.
	Fragment
	numReasons
)

var reasonNames = [numReasons]string{
	OK:              "ok",
	Truncated:       "truncated",
	BadVersion:      "bad_version",
	BadHeaderLength: "bad_header_length",
	BadLength:       "bad_length",
	Jumbo:           "jumbo",
	Fragment:        "fragment",
}

// String returns the label value of the reason.
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Reasons returns every failure reason (all but OK), so that the error
// counter can be exposed at zero for each before the first error.
func Reasons() []Reason {
	rs := make([]Reason, 0, numReasons-1)
	for r := OK + 1; r < numReasons; r++ {
		rs = append(rs, r)
	}
	return rs
}
