package rulegen

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Duration is a span in milliseconds written in the Prometheus syntax
// (1w2d3h4m5s6ms), so that values round-trip into PromQL unchanged.
type Duration struct{ D int64 }

var (
	durationRE    = regexp.MustCompile(`^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$`)
	durationUnits = []struct {
		name string
		ms   int64
	}{
		{"y", 365 * 24 * 3600 * 1000},
		{"w", 7 * 24 * 3600 * 1000},
		{"d", 24 * 3600 * 1000},
		{"h", 3600 * 1000},
		{"m", 60 * 1000},
		{"s", 1000},
		{"ms", 1},
	}
)

// ParseDuration parses a Prometheus duration such as 35d or 1h30m.
func ParseDuration(s string) (Duration, error) {
	if s == "0" {
		return Duration{}, nil
	}
	m := durationRE.FindStringSubmatch(s)
	if s == "" || m == nil {
		return Duration{}, fmt.Errorf("%q is not a duration such as 90m, 1h or 35d", s)
	}
	var d int64
	for i, u := range durationUnits {
		if m[i+1] == "" {
			continue
		}
		n, err := strconv.ParseInt(m[i+1], 10, 64)
		if err != nil {
			return Duration{}, fmt.Errorf("%q: %w", s, err)
		}
		d += n * u.ms
	}
	return Duration{D: d}, nil
}

func mustDuration(s string) Duration {
	d, err := ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return d
}

// String formats the duration in days, hours, minutes, seconds and
// milliseconds (weeks and years are spelled as days so that names such as
// 35d read as configured).
func (d Duration) String() string {
	if d.D == 0 {
		return "0s"
	}
	var b strings.Builder
	rest := d.D
	for _, u := range durationUnits {
		if u.name == "y" || u.name == "w" {
			continue
		}
		if n := rest / u.ms; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.name)
			rest -= n * u.ms
		}
	}
	return b.String()
}

// Hours is the number of whole hours in the duration.
func (d Duration) Hours() int64 { return d.D / (3600 * 1000) }

// UnmarshalYAML reads a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = v
	return nil
}
