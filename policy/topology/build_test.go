package topology

import (
	"reflect"
	"testing"

	"github.com/podflow/podflow/policy/prom"
)

func TestBuild(t *testing.T) {
	pairs := []prom.Pair{
		{Source: checkout, Destination: db, Port: 5432, Protocol: "TCP", Bytes: 100},
		{Source: checkout, Destination: db, Port: 443, Protocol: "TCP", Bytes: 10},
		{Source: checkout, Destination: db, Port: 80, Protocol: "TCP", Bytes: 1},
		{Source: checkout, Destination: db, Port: 0, Protocol: "ICMP", Bytes: 5},
		{Source: debug, Destination: db, Port: 5432, Protocol: "TCP", Bytes: 300},
		{Source: report, Destination: db, Port: 5432, Protocol: "TCP", Bytes: 7},
		{Source: frontend, Destination: corp, Port: 443, Protocol: "TCP", Bytes: 9},
	}
	alerts := []prom.PairAlert{
		{Name: "PodflowNewCommunication", Source: debug, Destination: db, Firing: true},
		{Name: "PodflowNewDestinationPort", Source: debug, Destination: db},
		// An alert whose pair moved nothing in the window still shows.
		{Name: "PodflowNewExternalNetwork", Source: frontend, Destination: ep("", "internet", KindNetwork), Firing: true},
	}
	got := Build(pairs, alerts, Filter{})
	want := []Edge{
		{Source: checkout, Destination: db, Bytes: 116, Ports: []string{"ICMP", "TCP/80", "TCP/443", "TCP/5432"}},
		{Source: debug, Destination: db, Bytes: 300, Ports: []string{"TCP/5432"}, Alerts: []string{"PodflowNewCommunication", "PodflowNewDestinationPort (pending)"}},
		{Source: report, Destination: db, Bytes: 7, Ports: []string{"TCP/5432"}},
		{Source: frontend, Destination: corp, Bytes: 9, Ports: []string{"TCP/443"}},
		{Source: frontend, Destination: ep("", "internet", KindNetwork), Alerts: []string{"PodflowNewExternalNetwork"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("edges:\n got %+v\nwant %+v", got, want)
	}

	batch := Build(pairs, alerts, Filter{Namespaces: []string{"batch"}})
	if len(batch) != 1 || batch[0].Source != report {
		t.Errorf("namespace batch: %+v, want only report -> db", batch)
	}
	if n := len(Build(pairs, alerts, Filter{Namespaces: []string{"none"}})); n != 0 {
		t.Errorf("an unknown namespace kept %d edges", n)
	}
}
