package harness

import "path/filepath"

// startControllerManager runs kube-controller-manager with the one
// controller the sandbox's data path needs: EndpointSlices for the
// Services, from the pods' addresses and readiness that the harness (as
// the kubelet) reports. Every other controller stays off, so that the
// workloads the harness creates stay exactly as it made them (no
// ReplicaSet, Job or garbage collector acting on them).
func (cp *ControlPlane) startControllerManager(e *Env) error {
	proc, err := e.start("kube-controller-manager", cp.NS, e.Bins.KubeControllerManager,
		"--kubeconfig="+filepath.Join(cp.dir, "admin.kubeconfig"),
		"--controllers=endpointslice",
		"--leader-elect=false",
		"--secure-port=0",
		"--concurrent-service-endpoint-syncs=10",
		"--v=1",
	)
	cp.ControllerManager = proc
	return err
}
