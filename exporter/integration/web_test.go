//go:build linux

package integration

import (
	"net/http"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// TestWebConfigBasicAuth checks that --web.config.file reaches the
// exporter-toolkit server: without the password /metrics is refused.
func TestWebConfigBasicAuth(t *testing.T) {
	tp := newTopology(t)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webConfig := writeFile(t, "web.yml", "basic_auth_users:\n  prometheus: "+string(hash)+"\n")
	d := startPodflow(t, tp.node, "127.0.0.1:9810", "--web.config.file="+webConfig)

	get := func(user, pass string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+d.addr+"/metrics", nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := httpClient(d.ns).Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	var code int
	for range 100 { // wait for the listener
		if code = get("prometheus", "s3cret"); code != 0 {
			break
		}
		if d.exited() {
			t.Fatalf("podflow exited: %v", d.err)
		}
		waitABit()
	}
	if code != http.StatusOK {
		t.Fatalf("with the password: %d, want 200", code)
	}
	if code := get("", ""); code != http.StatusUnauthorized {
		t.Errorf("without a password: %d, want 401", code)
	}
	if code := get("prometheus", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("with a wrong password: %d, want 401", code)
	}
}
