package flow

import "testing"

// TestLabelProjectionIsExact checks the invariant of Key: two values
// project to the same key field exactly when they show the same label.
func TestLabelProjectionIsExact(t *testing.T) {
	for a := range 256 {
		for b := range 256 {
			pa, pb := Protocol(a), Protocol(b)
			if same, equal := pa.String() == pb.String(), pa.Label() == pb.Label(); same != equal {
				t.Fatalf("protocols %d and %d: labels %q and %q, keys %d and %d", a, b, pa, pb, pa.Label(), pb.Label())
			}
			ka, kb := Kind(a), Kind(b)
			if same, equal := ka.String() == kb.String(), ka.Label() == kb.Label(); same != equal {
				t.Fatalf("kinds %d and %d: labels %q and %q, keys %d and %d", a, b, ka, kb, ka.Label(), kb.Label())
			}
		}
		if p := Protocol(a); p.Label().String() != p.String() || p.Label().HasPorts() != p.HasPorts() {
			t.Fatalf("protocol %d: label %q projects to %q", a, p, p.Label())
		}
	}
}
