// A stand-in for podflow in the image builder's own test: static, prints a
// version line like the real binary.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "--version" {
		fmt.Println("podflow, version test (branch: test, revision: test)")
		return
	}
	os.Exit(2)
}
