package generate_test

import (
	"testing"

	"github.com/podflow/podflow/rules/rulegen"
)

func guardrailValues(t *testing.T) rulegen.Config {
	cfg, err := rulegen.Parse([]byte("forbidden_namespace_pairs:\n  - source_namespace: shop\n    destination_namespace: 'ops|kube-.*'\n"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
