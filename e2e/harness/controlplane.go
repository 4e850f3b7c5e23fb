package harness

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Fixed addresses of the fabric: every address lives inside namespaces the
// harness creates.
const (
	fabricV4     = "10.250.0.1"
	fabricV6     = "fd00:250::1"
	cpV4         = "10.250.0.2"
	cpV6         = "fd00:250::2"
	serviceCIDR4 = "10.96.0.0/16"
	serviceCIDR6 = "fd00:96::/112"
	apiPort      = "6443"
)

// ControlPlane is etcd and kube-apiserver, running in the control-plane
// namespace.
type ControlPlane struct {
	NS                *NetNS
	Etcd              *Proc
	APIServer         *Proc
	ControllerManager *Proc
	pki               *pki
	dir               string
	// Client is an admin (system:masters) client reaching the API server
	// through the control-plane namespace.
	Client     kubernetes.Interface
	RESTConfig *rest.Config
}

// Server is the API server's URL as seen from the fabric.
func (cp *ControlPlane) Server() string { return "https://" + net.JoinHostPort(cpV4, apiPort) }

func (e *Env) startControlPlane(ctx context.Context) error {
	dir := filepath.Join(e.Dir, "controlplane")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	p, err := newPKI(dir)
	if err != nil {
		return err
	}
	if err := p.issue("apiserver", "kube-apiserver", nil,
		[]net.IP{net.ParseIP(cpV4), net.ParseIP(cpV6), net.ParseIP("10.96.0.1"), net.ParseIP("127.0.0.1")},
		[]string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "localhost"}); err != nil {
		return err
	}
	if err := p.issue("admin", "e2e-admin", []string{"system:masters"}, nil, nil); err != nil {
		return err
	}
	if err := p.issue("podflow", "system:serviceaccount:podflow:podflow", nil, nil, nil); err != nil {
		return err
	}
	// The user the API server's bootstrap policy binds to
	// system:node-proxier.
	if err := p.issue("kube-proxy", "system:kube-proxy", nil, nil, nil); err != nil {
		return err
	}
	if err := p.serviceAccountKey(); err != nil {
		return err
	}
	cp := &ControlPlane{NS: e.CPNS, pki: p, dir: dir}
	e.CP = cp
	if err := cp.startEtcd(e); err != nil {
		return err
	}
	if err := cp.startAPIServer(ctx, e); err != nil {
		return err
	}
	if err := cp.connect(ctx, e); err != nil {
		return err
	}
	return cp.startControllerManager(e)
}

func (cp *ControlPlane) startEtcd(e *Env) error {
	data := filepath.Join(cp.dir, "etcd")
	proc, err := e.start("etcd", cp.NS, e.Bins.Etcd,
		"--name=e2e",
		"--data-dir="+data,
		"--listen-client-urls=http://127.0.0.1:2379",
		"--advertise-client-urls=http://127.0.0.1:2379",
		"--listen-peer-urls=http://127.0.0.1:2380",
		"--initial-advertise-peer-urls=http://127.0.0.1:2380",
		"--initial-cluster=e2e=http://127.0.0.1:2380",
		"--unsafe-no-fsync",
		"--log-level=warn",
	)
	cp.Etcd = proc
	return err
}

func (cp *ControlPlane) apiserverArgs() []string {
	p := cp.pki
	return []string{
		"--etcd-servers=http://127.0.0.1:2379",
		"--bind-address=0.0.0.0",
		"--advertise-address=" + cpV4,
		"--secure-port=" + apiPort,
		"--tls-cert-file=" + p.path("apiserver.crt"),
		"--tls-private-key-file=" + p.path("apiserver.key"),
		"--client-ca-file=" + p.path("ca.crt"),
		"--service-account-key-file=" + p.path("sa.pub"),
		"--service-account-signing-key-file=" + p.path("sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-cluster-ip-range=" + serviceCIDR4 + "," + serviceCIDR6,
		"--authorization-mode=RBAC",
		"--allow-privileged=true",
		// The controller-manager runs no service account controller, so
		// nothing creates the default service accounts that this plugin
		// insists on.
		"--disable-admission-plugins=ServiceAccount",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--v=1",
	}
}

func (cp *ControlPlane) startAPIServer(ctx context.Context, e *Env) error {
	proc, err := e.start("kube-apiserver", cp.NS, e.Bins.KubeAPIServer, cp.apiserverArgs()...)
	cp.APIServer = proc
	return err
}

// RestartAPIServer stops kube-apiserver (SIGKILL when hard) and starts it
// again, waiting until it is ready.
func (cp *ControlPlane) RestartAPIServer(ctx context.Context, e *Env, down time.Duration) error {
	cp.APIServer.Stop(10 * time.Second)
	time.Sleep(down)
	if err := cp.startAPIServer(ctx, e); err != nil {
		return err
	}
	return cp.waitReady(ctx, e)
}

// StopAPIServer stops kube-apiserver.
func (cp *ControlPlane) StopAPIServer() { cp.APIServer.Stop(10 * time.Second) }

// StartAPIServer starts kube-apiserver again and waits until it is ready.
func (cp *ControlPlane) StartAPIServer(ctx context.Context, e *Env) error {
	if err := cp.startAPIServer(ctx, e); err != nil {
		return err
	}
	return cp.waitReady(ctx, e)
}

// Kubeconfig writes a kubeconfig for user (admin or podflow) and returns its path.
func (cp *ControlPlane) Kubeconfig(user string) (string, error) {
	path := filepath.Join(cp.dir, user+".kubeconfig")
	return path, os.WriteFile(path, []byte(cp.pki.kubeconfig(user, cp.Server())), 0o600)
}

func (cp *ControlPlane) connect(ctx context.Context, e *Env) error {
	path, err := cp.Kubeconfig("admin")
	if err != nil {
		return err
	}
	for _, user := range []string{"podflow", "kube-proxy"} {
		if _, err := cp.Kubeconfig(user); err != nil {
			return err
		}
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return err
	}
	cfg.Dial = cp.NS.Dial
	cfg.QPS = 200
	cfg.Burst = 400
	cp.RESTConfig = cfg
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	cp.Client = cs
	return cp.waitReady(ctx, e)
}

func (cp *ControlPlane) waitReady(ctx context.Context, e *Env) error {
	e.logf("waiting for kube-apiserver to be ready")
	hc, err := rest.HTTPClientFor(cp.RESTConfig)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(3 * time.Minute)
	var last string
	for time.Now().Before(deadline) {
		if cp.APIServer.Exited() {
			return fmt.Errorf("kube-apiserver exited: %s", cp.APIServer.Tail(3000))
		}
		if cp.Etcd.Exited() {
			return fmt.Errorf("etcd exited: %s", cp.Etcd.Tail(3000))
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, cp.Server()+"/readyz", nil)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				v, err := cp.Client.Discovery().ServerVersion()
				if err == nil {
					e.logf("kube-apiserver %s ready", v.GitVersion)
					return nil
				}
				last = err.Error()
			} else {
				last = resp.Status
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return fmt.Errorf("kube-apiserver not ready after 3m (%s): %s", last, cp.APIServer.Tail(3000))
}
