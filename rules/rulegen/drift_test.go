package rulegen

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// The committed rule files must be exactly what the generator renders from
// the committed values; `make rules` fixes a failure here.
func TestCommittedFilesMatchRender(t *testing.T) {
	for _, set := range []struct{ values, dir string }{
		{"../config.yaml", ".."},
		{"../tests/values.yaml", "../tests/rendered"},
	} {
		c, err := Load(set.values)
		if err != nil {
			t.Fatal(err)
		}
		files, err := Render(&c)
		if err != nil {
			t.Fatal(err)
		}
		for name, want := range files {
			path := filepath.Join(set.dir, name)
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run `make rules`)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from a fresh render of %s: run `make rules` and commit the result", path, set.values)
			}
		}
	}
}

// rules/config.yaml documents the defaults: it must spell out exactly what
// Default returns, so that a partial values file means what it says.
func TestConfigFileIsTheDefault(t *testing.T) {
	c, err := Load("../config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if d := Default(); !reflect.DeepEqual(c, d) {
		t.Errorf("rules/config.yaml and Default() differ:\nfile:    %+v\ndefault: %+v", c, d)
	}
}
