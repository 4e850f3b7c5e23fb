package kube

import (
	"fmt"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

// New builds a Source that talks to the API server named by kubeconfig,
// or, when kubeconfig is empty, to the cluster podflow runs in.
func New(cfg *Config, kubeconfig string) (*Source, error) {
	if cfg.Logger != nil {
		// client-go logs through klog; send it where podflow logs.
		klog.SetSlogLogger(cfg.Logger)
	}
	rc, err := restConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	rc.UserAgent = "podflow"
	meta, err := metadata.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kube: metadata client: %w", err)
	}
	// Core objects in protobuf: a fraction of JSON's decoding cost and
	// garbage for the full pod list at start.
	core := rest.CopyConfig(rc)
	core.ContentType = "application/vnd.kubernetes.protobuf"
	core.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	cs, err := kubernetes.NewForConfig(core)
	if err != nil {
		return nil, fmt.Errorf("kube: client: %w", err)
	}
	return NewWithClients(cfg, cs, meta)
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		rc, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("kube: in-cluster config (set --kube.kubeconfig outside a cluster): %w", err)
		}
		return rc, nil
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kube: kubeconfig %s: %w", kubeconfig, err)
	}
	return rc, nil
}
