// Command rulegen renders podflow's Prometheus rule files from a values
// file.
//
//	go run ./rules/cmd/rulegen -config rules/config.yaml -out rules
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/podflow/podflow/rules/rulegen"
)

func main() { os.Exit(run()) }

func run() int {
	config := flag.String("config", "rules/config.yaml", "values file; keys left out keep their defaults")
	out := flag.String("out", "rules", "directory the rule files are written to")
	flag.Parse()

	c, err := rulegen.Load(*config)
	if err != nil {
		fmt.Fprintf(os.Stderr, "rulegen: %s: %v\n", *config, err)
		return 1
	}
	files, err := rulegen.Render(&c)
	if err != nil {
		fmt.Fprintf(os.Stderr, "rulegen: %v\n", err)
		return 1
	}
	if err := os.MkdirAll(*out, 0o755); err != nil { //nolint:gosec // Prometheus reads the rule files
		fmt.Fprintf(os.Stderr, "rulegen: %v\n", err)
		return 1
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		path := filepath.Join(*out, name)
		if err := os.WriteFile(path, files[name], 0o644); err != nil { //nolint:gosec // Prometheus reads the rule files
			fmt.Fprintf(os.Stderr, "rulegen: %v\n", err)
			return 1
		}
		fmt.Println("wrote", path)
	}
	return 0
}
