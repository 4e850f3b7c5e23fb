//go:build tools

// Package kube pins the control-plane and node binaries the e2e harness
// builds: kube-apiserver, kube-controller-manager and kube-proxy from
// k8s.io/kubernetes, and etcd from its server module.
package kube

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
)
