//go:build tools

// Package kube pins the control-plane binaries the e2e harness builds:
// kube-apiserver from k8s.io/kubernetes and etcd from its server module.
package kube

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
