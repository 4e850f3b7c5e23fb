package prom

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"
)

// fakeProm answers /api/v1/query from a table of PromQL to result vectors and
// records the requests it saw.
type fakeProm struct {
	t        *testing.T
	results  map[string]string // query -> JSON array of vector samples
	warnings []string
	mu       sync.Mutex
	queries  []string
	auth     []string
}

func (f *fakeProm) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		f.t.Errorf("parse form: %v", err)
	}
	q := r.Form.Get("query")
	f.mu.Lock()
	f.queries = append(f.queries, q)
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	f.mu.Unlock()
	res, ok := f.results[q]
	if !ok {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"status":"error","errorType":"bad_data","error":"unexpected query %s"}`, strings.ReplaceAll(q, `"`, `'`))
		return
	}
	warn, _ := json.Marshal(f.warnings)
	fmt.Fprintf(w, `{"status":"success","warnings":%s,"data":{"resultType":"vector","result":%s}}`, warn, res)
}

func sample(value string, labels ...string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		m[labels[i]] = labels[i+1]
	}
	b, _ := json.Marshal(m)
	return fmt.Sprintf(`{"metric":%s,"value":[1700000000,%q]}`, b, value)
}

func pairSample(value, src, dst, port, proto string) string {
	s := strings.Split(src, "/")
	d := strings.Split(dst, "/")
	l := []string{
		"source_namespace", s[0], "source_workload", s[1], "source_kind", s[2],
		"destination_namespace", d[0], "destination_workload", d[1], "destination_kind", d[2],
	}
	if port != "" {
		l = append(l, "destination_port", port, "protocol", proto)
	}
	return sample(value, l...)
}

func newFake(t *testing.T, results map[string]string) (*fakeProm, Config) {
	f := &fakeProm{t: t, results: results}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, Config{URL: srv.URL}
}

func mustObserve(t *testing.T, cfg Config, q Query) []Pair {
	t.Helper()
	api, err := NewAPI(cfg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ObservedPairs(context.Background(), api, q)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestObservedPairsHourly(t *testing.T) {
	q := Query{Window: 35 * 24 * time.Hour, End: time.Unix(1700000000, 0), Matchers: `cluster="a"`}
	portsQ, bytesQ := PairQueries(q)
	wantPorts := `sum by (source_namespace, source_workload, source_kind, destination_namespace, destination_workload, destination_kind, destination_port, protocol) (count_over_time(workload_pair_port:podflow_packets:present1h{cluster="a"}[5w]))`
	wantBytes := `sum by (source_namespace, source_workload, source_kind, destination_namespace, destination_workload, destination_kind) (sum_over_time(workload_pair:podflow_bytes:rate1h{cluster="a"}[5w])) * 3600`
	if portsQ != wantPorts || bytesQ != wantBytes {
		t.Fatalf("queries:\n%s\n%s", portsQ, bytesQ)
	}
	f, cfg := newFake(t, map[string]string{
		portsQ: "[" + strings.Join([]string{
			pairSample("12", "shop/web/Deployment", "shop/db/StatefulSet", "5432", "TCP"),
			pairSample("3", "shop/web/Deployment", "/internet/Network", "443", "TCP"),
			pairSample("840", "shop/web/Deployment", "shop/db/StatefulSet", "9187", "TCP"),
			pairSample("1", "ops/probe/DaemonSet", "shop/web/Deployment", "0", "ICMP"),
		}, ",") + "]",
		bytesQ: "[" + strings.Join([]string{
			pairSample("1000", "shop/web/Deployment", "shop/db/StatefulSet", "", ""),
			pairSample("7", "shop/web/Deployment", "/internet/Network", "", ""),
		}, ",") + "]",
	})
	got := mustObserve(t, cfg, q)
	web := Endpoint{"shop", "web", "Deployment"}
	db := Endpoint{"shop", "db", "StatefulSet"}
	want := []Pair{
		{Source: Endpoint{"ops", "probe", "DaemonSet"}, Destination: web, Port: 0, Protocol: "ICMP", ActiveHours: 1},
		{Source: web, Destination: Endpoint{"", "internet", "Network"}, Port: 443, Protocol: "TCP", Bytes: 7, ActiveHours: 3},
		{Source: web, Destination: db, Port: 5432, Protocol: "TCP", Bytes: 1000, ActiveHours: 12},
		{Source: web, Destination: db, Port: 9187, Protocol: "TCP", Bytes: 1000, ActiveHours: 840},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("pairs:\n got %+v\nwant %+v", got, want)
	}
	if len(f.queries) != 2 {
		t.Fatalf("queries sent: %q", f.queries)
	}
}

func TestObservedPairsRaw(t *testing.T) {
	q := Query{Window: 15 * time.Minute, Tier: Raw}
	portsQ, bytesQ := PairQueries(q)
	if portsQ != bytesQ || !strings.Contains(portsQ, `increase(podflow_bytes_total{job="podflow"}[15m])`) {
		t.Fatalf("raw query: %s / %s", portsQ, bytesQ)
	}
	f, cfg := newFake(t, map[string]string{
		portsQ: "[" + pairSample("2048", "a/x/Deployment", "b/y/Deployment", "80", "TCP") + "]",
	})
	got := mustObserve(t, cfg, q)
	want := []Pair{{Source: Endpoint{"a", "x", "Deployment"}, Destination: Endpoint{"b", "y", "Deployment"}, Port: 80, Protocol: "TCP", Bytes: 2048}}
	if !reflect.DeepEqual(got, want) || len(f.queries) != 1 {
		t.Fatalf("got %+v after %q", got, f.queries)
	}
	q.JobSelector = `job="pf"`
	if p, _ := PairQueries(q); !strings.Contains(p, `{job="pf"}`) {
		t.Fatalf("job selector not used: %s", p)
	}
}

func TestObservedPairsRejectsBadAnswers(t *testing.T) {
	q := Query{Window: time.Hour, Tier: Raw}
	portsQ, _ := PairQueries(q)
	for name, tc := range map[string]struct {
		result   string
		warnings []string
		want     string
	}{
		"port":    {result: "[" + pairSample("1", "a/x/Pod", "b/y/Pod", "http", "TCP") + "]", want: "is not a port"},
		"warning": {result: "[]", warnings: []string{"partial response"}, want: "partial response"},
	} {
		t.Run(name, func(t *testing.T) {
			f, cfg := newFake(t, map[string]string{portsQ: tc.result})
			f.warnings = tc.warnings
			api, err := NewAPI(cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = ObservedPairs(context.Background(), api, q)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := ObservedPairs(context.Background(), nil, Query{Window: time.Second}); err == nil {
		t.Fatal("a window under a minute was accepted")
	}
	if _, err := ObservedPairs(context.Background(), nil, Query{Window: time.Hour, Matchers: `{a="b"}`}); err == nil {
		t.Fatal("matchers with braces were accepted")
	}
}

func TestLearnedHoursAndBearerToken(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, cfg := newFake(t, map[string]string{
		`max(count_over_time(cluster:podflow_up:present1h[1w]))`: "[" + sample("168") + "]",
	})
	cfg.BearerTokenFile = token
	api, err := NewAPI(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h, err := LearnedHours(context.Background(), api, Query{Window: 7 * 24 * time.Hour})
	if err != nil || h != 168 {
		t.Fatalf("LearnedHours = %d, %v", h, err)
	}
	if f.auth[0] != "Bearer s3cret" {
		t.Fatalf("Authorization = %q", f.auth[0])
	}
}

func TestFlagsAndValidate(t *testing.T) {
	app := kingpin.New("t", "")
	var c Config
	c.RegisterFlags(app)
	if _, err := app.Parse([]string{"--prometheus.url=https://prom:9090", "--prometheus.bearer-token-file=/t"}); err != nil {
		t.Fatal(err)
	}
	if c.URL != "https://prom:9090" || c.BearerTokenFile != "/t" || c.Validate() != nil {
		t.Fatalf("parsed %+v (%v)", c, c.Validate())
	}
	for name, bad := range map[string]Config{
		"scheme":    {URL: "prom:9090"},
		"mixed":     {URL: "http://p", HTTPConfigFile: "f", CAFile: "ca"},
		"half cert": {URL: "http://p", CertFile: "c"},
	} {
		if bad.Validate() == nil {
			t.Errorf("%s: %+v accepted", name, bad)
		}
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "http.yml")
	if err := os.WriteFile(file, []byte("authorization:\n  credentials: abc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hc, err := (&Config{URL: "http://p", HTTPConfigFile: file}).HTTPClientConfig()
	if err != nil || hc.Authorization == nil || string(hc.Authorization.Credentials) != "abc" {
		t.Fatalf("http config file: %+v, %v", hc, err)
	}
}
