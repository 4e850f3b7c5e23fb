package prom

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestPairAlerts(t *testing.T) {
	names := []string{"PodflowNewCommunication", "PodflowNewExternalNetwork", "PodflowFanOut"}
	q := PairAlertsQuery(names, 15*time.Minute, `cluster="a"`)
	want := `max by (alertname, alertstate, source_namespace, source_workload, source_kind, destination_namespace, destination_workload, destination_kind) ` +
		`(max_over_time(ALERTS{alertname=~"PodflowNewCommunication|PodflowNewExternalNetwork|PodflowFanOut",cluster="a"}[15m]))`
	if q != want {
		t.Fatalf("query:\n got %s\nwant %s", q, want)
	}
	alert := func(name, state, src, dst string) string {
		s := pairSample("1", src, dst, "", "")
		return strings.Replace(s, `{"destination_kind"`, `{"alertname":"`+name+`","alertstate":"`+state+`","destination_kind"`, 1)
	}
	f, cfg := newFake(t, map[string]string{q: "[" + strings.Join([]string{
		// Pending, then firing: one alert that fired.
		alert("PodflowNewCommunication", "pending", "shop/debug/Pod", "shop/db/StatefulSet"),
		alert("PodflowNewCommunication", "firing", "shop/debug/Pod", "shop/db/StatefulSet"),
		alert("PodflowNewExternalNetwork", "pending", "shop/web/Deployment", "/corp/Network"),
		// About a source only: no edge to mark.
		alert("PodflowFanOut", "firing", "shop/web/Deployment", "//"),
	}, ",") + "]"})
	api, err := NewAPI(cfg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := PairAlerts(context.Background(), api, names, 15*time.Minute, time.Unix(1700000000, 0), `cluster="a"`)
	if err != nil {
		t.Fatal(err)
	}
	wantAlerts := []PairAlert{
		{Name: "PodflowNewCommunication", Source: Endpoint{"shop", "debug", "Pod"}, Destination: Endpoint{"shop", "db", "StatefulSet"}, Firing: true},
		{Name: "PodflowNewExternalNetwork", Source: Endpoint{"shop", "web", "Deployment"}, Destination: Endpoint{"", "corp", "Network"}},
	}
	if !reflect.DeepEqual(got, wantAlerts) {
		t.Fatalf("alerts:\n got %+v\nwant %+v", got, wantAlerts)
	}
	if len(f.queries) != 1 {
		t.Fatalf("queries: %q", f.queries)
	}
	if _, err := PairAlerts(context.Background(), api, names, time.Second, time.Time{}, ""); err == nil {
		t.Errorf("a one-second window was accepted")
	}
	if got, err := PairAlerts(context.Background(), api, nil, time.Hour, time.Time{}, ""); err != nil || got != nil {
		t.Errorf("no alert names: %v, %v; want nothing and no query", got, err)
	}
}
