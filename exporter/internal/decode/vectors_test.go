package decode

import (
	"bufio"
	"encoding/hex"
	"os"
	"strings"
	"testing"
)

// vector is one packet of testdata/vectors.txt, which testdata/capture.sh
// captured from real traffic between two network namespaces.
type vector struct {
	name   string
	family uint8
	data   []byte
}

// loadVectors parses testdata/vectors.txt: "## name" starts a vector,
// "#" lines are comments, other lines are hex.
func loadVectors(tb testing.TB) map[string]vector {
	tb.Helper()
	f, err := os.Open("testdata/vectors.txt")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	vs := map[string]vector{}
	var name string
	var hexText strings.Builder
	flush := func() {
		if name == "" {
			return
		}
		data, err := hex.DecodeString(hexText.String())
		if err != nil {
			tb.Fatalf("vector %s: %v", name, err)
		}
		if len(data) == 0 {
			tb.Fatalf("vector %s: no bytes", name)
		}
		family := uint8(afInet)
		if data[0]>>4 == 6 {
			family = afInet6
		}
		vs[name] = vector{name: name, family: family, data: data}
		hexText.Reset()
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "## "):
			flush()
			name = strings.TrimPrefix(line, "## ")
		case line == "", strings.HasPrefix(line, "#"):
		default:
			hexText.WriteString(line)
		}
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	flush()
	return vs
}
