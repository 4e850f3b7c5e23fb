package kustomizecheck

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// prometheusOperatorVersion is the operator whose CRDs the custom resources
// are checked against (the e2e applies them to a real API server with the
// same CRDs).
const prometheusOperatorVersion = "v0.94.0"

// schema is the subset of OpenAPI v3 that CRDs use and that the check reads.
type schema struct {
	Type                  string             `json:"type"`
	Properties            map[string]*schema `json:"properties"`
	Items                 *schema            `json:"items"`
	AdditionalProperties  *schema            `json:"additionalProperties"`
	Required              []string           `json:"required"`
	Enum                  []any              `json:"enum"`
	Pattern               string             `json:"pattern"`
	MinLength             *int               `json:"minLength"`
	PreserveUnknownFields bool               `json:"x-kubernetes-preserve-unknown-fields"`
	IntOrString           bool               `json:"x-kubernetes-int-or-string"`
	AnyOf                 []*schema          `json:"anyOf"`
	XValidations          []any              `json:"x-kubernetes-validations"`
}

type crd struct {
	Spec struct {
		Group string `json:"group"`
		Names struct {
			Kind string `json:"kind"`
		} `json:"names"`
		Versions []struct {
			Name   string `json:"name"`
			Served bool   `json:"served"`
			Schema struct {
				OpenAPIV3Schema *schema `json:"openAPIV3Schema"`
			} `json:"schema"`
		} `json:"versions"`
	} `json:"spec"`
}

// operatorSchemas returns the CRD schemas by apiVersion and kind, read
// from the operator's module.
func operatorSchemas(t *testing.T) map[string]*schema {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json",
		"github.com/prometheus-operator/prometheus-operator@"+prometheusOperatorVersion)
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("the Prometheus Operator module %s is not available: %v", prometheusOperatorVersion, err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Fatalf("go mod download: %v\n%s", err, out)
	}
	files, _ := filepath.Glob(filepath.Join(mod.Dir, "example", "prometheus-operator-crd", "*.yaml"))
	if len(files) == 0 {
		t.Fatalf("no CRDs in %s", mod.Dir)
	}
	out2 := map[string]*schema{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var c crd
		if err := yaml.Unmarshal(raw, &c); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, v := range c.Spec.Versions {
			if v.Served && v.Schema.OpenAPIV3Schema != nil {
				out2[c.Spec.Group+"/"+v.Name+" "+c.Spec.Names.Kind] = v.Schema.OpenAPIV3Schema
			}
		}
	}
	return out2
}

// TestCustomResourcesMatchCRDs checks every custom resource of every build
// against the operator's CRD schema: known fields, types, enums, patterns,
// required fields.
func TestCustomResourcesMatchCRDs(t *testing.T) {
	schemas := operatorSchemas(t)
	checked := 0
	for _, b := range allBuilds(t) {
		for _, o := range b.Objects {
			if !strings.HasPrefix(o.APIVersion, "monitoring.coreos.com/") {
				continue
			}
			s, ok := schemas[o.APIVersion+" "+o.Kind]
			if !ok {
				t.Errorf("%s: %s: no served CRD version %s", b.Name, o, o.APIVersion)
				continue
			}
			obj := map[string]any{}
			for k, v := range o.Map {
				if k != "metadata" && k != "apiVersion" && k != "kind" {
					obj[k] = v
				}
			}
			for _, p := range validate(s, obj, "") {
				t.Errorf("%s: %s: %s", b.Name, o, p)
			}
			checked++
		}
	}
	if checked == 0 {
		t.Fatal("no custom resources checked")
	}

	// The check itself: a wrong enum, an unknown field and a wrong type.
	bad := map[string]any{"spec": map[string]any{
		"route": map[string]any{
			"receiver": "x",
			"matchers": []any{map[string]any{"name": "a", "value": "b", "matchType": "=="}},
			"groupBy":  "cluster",
		},
		"receiverz": []any{},
	}}
	got := strings.Join(validate(schemas["monitoring.coreos.com/v1alpha1 AlertmanagerConfig"], bad, ""), "\n")
	for _, want := range []string{"matchType: == is not one of", "groupBy: want an array", `unknown field "receiverz"`} {
		if !strings.Contains(got, want) {
			t.Errorf("the schema check misses %q; it reported:\n%s", want, got)
		}
	}
}

// validate lists the violations of v against s, under path.
func validate(s *schema, v any, path string) []string {
	if s == nil || s.PreserveUnknownFields && s.Properties == nil {
		return nil
	}
	var out []string
	bad := func(format string, args ...any) {
		out = append(out, fmt.Sprintf("%s: %s", orRoot(path), fmt.Sprintf(format, args...)))
	}
	if s.IntOrString {
		switch v.(type) {
		case string, int, int64, float64:
		default:
			bad("want an integer or a string, got %T", v)
		}
		return out
	}
	if len(s.AnyOf) > 0 && s.Type == "" {
		return nil
	}
	switch s.Type {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			bad("want an object, got %T", v)
			return out
		}
		for _, r := range s.Required {
			if _, ok := m[r]; !ok {
				bad("required field %q is missing", r)
			}
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			switch {
			case s.Properties[k] != nil:
				out = append(out, validate(s.Properties[k], m[k], path+"."+k)...)
			case s.AdditionalProperties != nil:
				out = append(out, validate(s.AdditionalProperties, m[k], path+"."+k)...)
			case s.PreserveUnknownFields:
			default:
				bad("unknown field %q", k)
			}
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			bad("want an array, got %T", v)
			return out
		}
		for i, e := range a {
			out = append(out, validate(s.Items, e, fmt.Sprintf("%s[%d]", path, i))...)
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			bad("want a string, got %T (%v)", v, v)
			return out
		}
		if s.MinLength != nil && len(str) < *s.MinLength {
			bad("%q is shorter than %d", str, *s.MinLength)
		}
		if s.Pattern != "" {
			re, err := regexp.Compile(s.Pattern)
			if err == nil && !re.MatchString(str) {
				bad("%q does not match %s", str, s.Pattern)
			}
		}
	case "integer":
		switch n := v.(type) {
		case int, int64:
		case float64:
			if n != float64(int64(n)) {
				bad("want an integer, got %v", v)
			}
		default:
			bad("want an integer, got %T", v)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			bad("want a boolean, got %T", v)
		}
	}
	if len(s.Enum) > 0 {
		found := false
		for _, e := range s.Enum {
			if fmt.Sprint(e) == fmt.Sprint(v) {
				found = true
			}
		}
		if !found {
			bad("%v is not one of %v", v, s.Enum)
		}
	}
	return out
}

func orRoot(p string) string {
	if p == "" {
		return "."
	}
	return p
}
