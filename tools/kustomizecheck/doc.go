// Package kustomizecheck builds every kustomize overlay and component
// combination under kustomize/ with the kustomize Go API and checks the
// objects it produces: the DaemonSet's privileges, probes and rollout, the
// RBAC, the image, labels and selectors, the daemon's flags, and that the
// generated manifests match their sources (rules/, dashboards/).
//
// It holds only tests; run them with `make test-kustomize`.
package kustomizecheck
