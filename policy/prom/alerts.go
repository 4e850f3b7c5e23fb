package prom

import (
	"cmp"
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// API is the client of Prometheus' HTTP API that the queries run on
// (NewAPI), so that its users need not import the client library.
type API = v1.API

// PairAlert is an alert about one source and destination, as Prometheus'
// ALERTS series carries it.
type PairAlert struct {
	Name        string
	Source      Endpoint
	Destination Endpoint
	// Firing is false for an alert that was only pending in the window.
	Firing bool
}

// PairAlertsQuery returns the PromQL that PairAlerts runs: the named alerts
// active (pending or firing) at any time in the window, by alert, pair and
// state.
func PairAlertsQuery(names []string, window time.Duration, matchers string) string {
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = regexp.QuoteMeta(n)
	}
	by := strings.Join(append([]string{"alertname", "alertstate"}, pairLabels...), ", ")
	return fmt.Sprintf("max by (%s) (max_over_time(ALERTS%s[%s]))", by,
		selector(`alertname=~"`+strings.Join(quoted, "|")+`"`, matchers), model.Duration(window))
}

// PairAlerts returns the named alerts that were active in the window ending
// at end, one per alert and pair, sorted. Alerts that name no destination
// (fan-out, port scans, the exporter's health) are left out: they mark no
// pair.
func PairAlerts(ctx context.Context, api v1.API, names []string, window time.Duration, end time.Time, matchers string) ([]PairAlert, error) {
	if len(names) == 0 {
		return nil, nil
	}
	if window < time.Minute {
		return nil, fmt.Errorf("window %s: want at least a minute", window)
	}
	if strings.ContainsAny(matchers, "{}") {
		return nil, fmt.Errorf("matchers %q: want label matchers without braces", matchers)
	}
	if end.IsZero() {
		end = time.Now()
	}
	v, err := vector(ctx, api, PairAlertsQuery(names, window, matchers), end)
	if err != nil {
		return nil, err
	}
	type key struct {
		name string
		pair pairKey
	}
	firing := map[key]bool{}
	for _, s := range v {
		k := key{string(s.Metric["alertname"]), endpoints(s.Metric)}
		if k.pair.dst.Workload == "" {
			continue
		}
		firing[k] = firing[k] || s.Metric["alertstate"] == "firing"
	}
	out := make([]PairAlert, 0, len(firing))
	for k, f := range firing {
		out = append(out, PairAlert{Name: k.name, Source: k.pair.src, Destination: k.pair.dst, Firing: f})
	}
	slices.SortFunc(out, func(a, b PairAlert) int {
		return cmp.Or(compareEndpoints(a.Source, b.Source), compareEndpoints(a.Destination, b.Destination), cmp.Compare(a.Name, b.Name))
	})
	return out, nil
}
