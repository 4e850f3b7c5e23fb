package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakePrometheus answers the pairs query with two edges and the alerts
// query with a firing PodflowNewCommunication on one of them.
func fakePrometheus(t *testing.T) *httptest.Server {
	const pair = `{"metric":{"source_namespace":"shop","source_workload":"%s","source_kind":"%s","destination_namespace":"shop","destination_workload":"db","destination_kind":"StatefulSet"%s},"value":[1700000000,"%s"]}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.FormValue("query")
		var res []string
		switch {
		case strings.Contains(q, "ALERTS"):
			res = append(res, fmt.Sprintf(pair, "debug", "Pod", `,"alertname":"PodflowNewCommunication","alertstate":"firing"`, "1"))
		case strings.Contains(q, "podflow_bytes_total"):
			res = append(res,
				fmt.Sprintf(pair, "checkout", "Deployment", `,"destination_port":"5432","protocol":"TCP"`, "2048000"),
				fmt.Sprintf(pair, "debug", "Pod", `,"destination_port":"5432","protocol":"TCP"`, "1300"))
		default:
			t.Errorf("unexpected query %s", q)
		}
		fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[%s]}}`, strings.Join(res, ","))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestRunWritesDOT(t *testing.T) {
	srv := fakePrometheus(t)
	var out, errOut bytes.Buffer
	if code := run([]string{"--prometheus.url=" + srv.URL, "--range=15m", "--time=2026-12-07T14:00:00Z"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{`label="namespace shop"`, `id="new_edge_`, "PodflowNewCommunication", "2.0 MiB", "over 15m to 2026-12-07 14:00:00 UTC, 1 new edge"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("DOT lacks %s:\n%s", want, out.String())
		}
	}
	if !strings.Contains(errOut.String(), "2 edges (1 new)") {
		t.Errorf("summary: %q", errOut.String())
	}
}

func TestRunWritesSVGAndHTML(t *testing.T) {
	if _, err := exec.LookPath("dot"); err != nil {
		t.Skip("Graphviz's dot is not installed: run make setup")
	}
	srv := fakePrometheus(t)
	dir := t.TempDir()
	svg, page := filepath.Join(dir, "t.svg"), filepath.Join(dir, "t.html")
	var out, errOut bytes.Buffer
	if code := run([]string{"--prometheus.url=" + srv.URL, "--output.svg=" + svg, "--output.html=" + page}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if out.Len() != 0 {
		t.Errorf("wrote to standard output although files were named: %q", out.String())
	}
	for path, want := range map[string]string{svg: `<g id="new_edge_`, page: `<tr class="new"><td>shop/debug (Pod)`} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %s", path, want)
		}
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--range=10s"},
		{"--time=yesterday"},
		{"--prometheus.url=localhost:9090"},
	} {
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code == 0 || errOut.Len() == 0 {
			t.Errorf("%v: exit %d, %q; want an error", args, code, errOut.String())
		}
	}
}
