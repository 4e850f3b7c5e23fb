package rulegen

import (
	"strings"
	"testing"
)

func TestParseKeepsDefaultsForOmittedKeys(t *testing.T) {
	c, err := Parse([]byte("learning:\n  cluster: 14d\nport_scan:\n  min: 50\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Learning.Cluster.String(); got != "14d" {
		t.Errorf("learning.cluster = %s, want 14d", got)
	}
	if c.Learning.Workload.String() != "1d" || c.PortScan.Min != 50 || c.PortScan.Window.String() != "15m" {
		t.Errorf("defaults lost: %+v %+v", c.Learning, c.PortScan)
	}
	files, err := Render(&c)
	if err != nil {
		t.Fatal(err)
	}
	alerts := string(files[AlertsFile])
	// The scan condition appears in the scan alert and in the three alerts
	// it holds back.
	if n := strings.Count(alerts, "source_workload:podflow_destination_ports:count >= 50"); n != 4 {
		t.Errorf("the port-scan condition appears %d times, want 4", n)
	}
	for _, want := range []string{">= 336)", "source_workload:podflow_destination_ports:count >= 50"} {
		if !strings.Contains(alerts, want) {
			t.Errorf("rendered alerts lack %q", want)
		}
	}
}

func TestParseRejectsBadValues(t *testing.T) {
	for _, tc := range []struct{ values, want string }{
		{"nope: 1\n", "field nope not found"},
		{"learning:\n  cluster: 7days\n", "not a duration"},
		{"job_selector: '{job=\"x\"}'\n", "job_selector"},
		{"baseline:\n  seasonal_weeks: 9\n", "seasonal weeks"},
		{"denylist:\n  prefix: ''\n", "denylist.prefix"},
		{"forbidden_namespace_pairs:\n  - source_namespace: 'a('\n    destination_namespace: b\n", "forbidden_namespace_pairs[0].source_namespace"},
		{"expected_pairs:\n  - {}\n", "expected_pairs[0]"},
		{"alerts:\n  PodflowNope: {severity: info}\n", "alerts.PodflowNope"},
		{"alerts:\n  PodflowFanOut: {severity: page}\n", "alerts.PodflowFanOut.severity"},
		{"health:\n  capture_loss_ratio: 2\n", "capture_loss_ratio"},
		{"egress_anomaly:\n  quantile: 0\n", "egress_anomaly.quantile"},
		{"egress_anomaly:\n  floor_bytes_per_second: -1\n", "egress_anomaly: factors"},
		{"connection_surge:\n  factor: 0\n", "connection_surge"},
		{"unanswered_connections:\n  min_answered_hours: 0\n", "unanswered_connections.min_answered_hours"},
		{"unanswered_connections:\n  min_answered_hours: 900\n", "unanswered_connections.min_answered_hours"},
	} {
		_, err := Parse([]byte(tc.values))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", tc.values, err, tc.want)
		}
	}
}

func TestDurationRoundTrip(t *testing.T) {
	for in, want := range map[string]string{"35d": "35d", "5w": "35d", "166h30m": "6d22h30m", "90m": "1h30m", "0": "0s", "1h": "1h"} {
		d, err := ParseDuration(in)
		if err != nil {
			t.Fatal(err)
		}
		if d.String() != want {
			t.Errorf("%s: got %s, want %s", in, d, want)
		}
	}
}

func TestRenderIsDeterministic(t *testing.T) {
	d := Default()
	a, err := Render(&d)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		b, _ := Render(&d)
		for name := range a {
			if string(a[name]) != string(b[name]) {
				t.Fatalf("%s differs between two renders", name)
			}
		}
	}
}

// The Service naming alert reads the exporters only when they are meant to
// name Services; otherwise every exporter says "none" and it never fires.
func TestServiceNamingFollowsDestinationService(t *testing.T) {
	for _, tc := range []struct {
		values, want, not string
	}{
		{"", "vector(1) < 0", "podflow_service_naming"},
		{"destination_service: true\njob_selector: 'job=\"pf\"'\n", `podflow_service_naming{job="pf", method="none"} == 1`, "vector(1) < 0"},
	} {
		c, err := Parse([]byte(tc.values))
		if err != nil {
			t.Fatal(err)
		}
		files, err := Render(&c)
		if err != nil {
			t.Fatal(err)
		}
		alerts := string(files[AlertsFile])
		_, rule, _ := strings.Cut(alerts, "alert: PodflowServiceNamingUnavailable")
		rule, _, _ = strings.Cut(rule, "annotations:")
		if !strings.Contains(rule, tc.want) || strings.Contains(rule, tc.not) {
			t.Errorf("values %q: the rule is\n%s\nwant %q and no %q", tc.values, rule, tc.want, tc.not)
		}
	}
}
