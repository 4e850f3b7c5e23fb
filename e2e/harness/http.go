package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// httpClient reaches the sandbox from inside ns.
func httpClient(ns *NetNS) *http.Client {
	return &http.Client{
		Timeout: 15 * time.Second,
		Transport: &http.Transport{
			DialContext:       ns.Dial,
			DisableKeepAlives: true,
		},
	}
}

// HTTPGet fetches url from inside ns.
func (e *Env) HTTPGet(ctx context.Context, ns *NetNS, u string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := httpClient(ns).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// Sample is one element of an instant vector.
type Sample struct {
	Metric map[string]string
	Value  float64
}

type apiResponse struct {
	Status    string          `json:"status"`
	Error     string          `json:"error"`
	ErrorType string          `json:"errorType"`
	Data      json.RawMessage `json:"data"`
}

// Query runs an instant PromQL query against the sandbox's Prometheus.
func (e *Env) Query(ctx context.Context, q string) ([]Sample, error) {
	if e.Prom == nil {
		return nil, fmt.Errorf("prometheus not started")
	}
	u := "http://" + e.Prom.Addr + "/api/v1/query?query=" + url.QueryEscape(q)
	code, body, err := e.HTTPGet(ctx, e.CPNS, u)
	if err != nil {
		return nil, err
	}
	var r apiResponse
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		return nil, fmt.Errorf("query %q: %d %s", q, code, body)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %q: %s: %s", q, r.ErrorType, r.Error)
	}
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}
	if err := json.Unmarshal(r.Data, &data); err != nil {
		return nil, err
	}
	if data.ResultType == "scalar" {
		var v [2]any
		if err := json.Unmarshal(mustField(r.Data, "result"), &v); err != nil {
			return nil, err
		}
		f, err := strconv.ParseFloat(fmt.Sprint(v[1]), 64)
		return []Sample{{Value: f}}, err
	}
	out := make([]Sample, 0, len(data.Result))
	for _, s := range data.Result {
		f, err := strconv.ParseFloat(fmt.Sprint(s.Value[1]), 64)
		if err != nil {
			return nil, err
		}
		out = append(out, Sample{Metric: s.Metric, Value: f})
	}
	return out, nil
}

func mustField(raw json.RawMessage, name string) json.RawMessage {
	var m map[string]json.RawMessage
	_ = json.Unmarshal(raw, &m)
	return m[name]
}

// QueryValue runs q and returns the single value; ok is false when the
// result is empty.
func (e *Env) QueryValue(ctx context.Context, q string) (v float64, ok bool, err error) {
	s, err := e.Query(ctx, q)
	if err != nil || len(s) == 0 {
		return 0, false, err
	}
	if len(s) > 1 {
		return 0, false, fmt.Errorf("query %q: %d series, want one", q, len(s))
	}
	return s[0].Value, true, nil
}

// WaitValue polls q until it returns want, up to timeout, and returns the
// last value seen.
func (e *Env) WaitValue(ctx context.Context, q string, want float64, timeout time.Duration) (float64, error) {
	deadline := time.Now().Add(timeout)
	var last float64
	var lastErr error
	seen := false
	for {
		v, ok, err := e.QueryValue(ctx, q)
		if err == nil && ok {
			last, seen = v, true
			if v == want {
				return v, nil
			}
		}
		lastErr = err
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(time.Second):
		}
	}
	if lastErr != nil {
		return last, fmt.Errorf("%s: %w", q, lastErr)
	}
	if !seen {
		return 0, fmt.Errorf("%s: no result after %v (want %v)", q, timeout, want)
	}
	return last, fmt.Errorf("%s = %v after %v, want %v", q, last, timeout, want)
}

// QueryRangeSeries runs a range query and returns how many series it
// produced.
func (e *Env) QueryRangeSeries(ctx context.Context, q string, start, end time.Time, step time.Duration) (int, error) {
	v := url.Values{}
	v.Set("query", q)
	v.Set("start", strconv.FormatInt(start.Unix(), 10))
	v.Set("end", strconv.FormatInt(end.Unix(), 10))
	v.Set("step", strconv.Itoa(int(step.Seconds())))
	code, body, err := e.HTTPGet(ctx, e.CPNS, "http://"+e.Prom.Addr+"/api/v1/query_range?"+v.Encode())
	if err != nil {
		return 0, err
	}
	var r apiResponse
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		return 0, fmt.Errorf("query_range %q: %d %s", q, code, body)
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("query_range %q: %s: %s", q, r.ErrorType, r.Error)
	}
	var data struct {
		Result []json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(r.Data, &data); err != nil {
		return 0, err
	}
	return len(data.Result), nil
}
