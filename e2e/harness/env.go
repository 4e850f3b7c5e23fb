// Package harness runs podflow end to end: etcd and kube-apiserver, nodes and
// pods in network namespaces, podflow on every node, Prometheus with the
// shipped rules and Alertmanager with the shipped routes. Everything it starts
// is stopped by PID and every namespace it creates is deleted on Close, on a
// failure and on SIGINT/SIGTERM.
package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Bins are the binaries the harness runs. Empty fields are looked up in the
// environment that the Makefile exports.
type Bins struct {
	Podflow               string // PODFLOW_BIN
	KubeAPIServer         string // KUBE_APISERVER
	KubeControllerManager string // KUBE_CONTROLLER_MANAGER
	KubeProxy             string // KUBE_PROXY
	Etcd                  string // ETCD
	Prometheus            string // PROMETHEUS
	Promtool              string // PROMTOOL
	Alertmanager          string // ALERTMANAGER
}

// BinsFromEnv reads the binaries' paths from the environment; missing names
// the variables that are unset.
func BinsFromEnv() (b Bins, missing []string) {
	get := func(name string) string {
		v := os.Getenv(name)
		if v == "" {
			missing = append(missing, name)
		}
		return v
	}
	b = Bins{
		Podflow:               get("PODFLOW_BIN"),
		KubeAPIServer:         get("KUBE_APISERVER"),
		KubeControllerManager: get("KUBE_CONTROLLER_MANAGER"),
		KubeProxy:             get("KUBE_PROXY"),
		Etcd:                  get("ETCD"),
		Prometheus:            get("PROMETHEUS"),
		Promtool:              get("PROMTOOL"),
		Alertmanager:          get("ALERTMANAGER"),
	}
	return b, missing
}

// Options shape an environment.
type Options struct {
	// Prefix of every namespace name (pfe2e-, pfdemo-).
	Prefix string
	// Dir holds logs, certificates and data; created when empty.
	Dir  string
	Bins Bins
	// Logf reports progress; nil is silent.
	Logf func(format string, args ...any)
	// OwnSignals leaves SIGINT/SIGTERM to the caller, who must then call
	// Close; by default the environment tears itself down and exits.
	OwnSignals bool
	// ProxyMode is kube-proxy's mode on every node: ProxyNftables (the
	// default) or ProxyIptables.
	ProxyMode string
	// FabricMode is how nodes reach each other's pods: FabricRouted (the
	// default; the fabric routes every pod CIDR) or FabricOverlay (VXLAN
	// between nodes only).
	FabricMode string
	// CaptureMode is podflow's --capture.mode on every node: CapturePacket,
	// CaptureConnection, or empty for the daemon's default (no flag).
	CaptureMode string
}

// Env is one running sandbox.
type Env struct {
	Options
	ID     string
	Dir    string
	Bins   Bins
	Fabric *NetNS
	CPNS   *NetNS
	CP     *ControlPlane
	Nodes  []*Node
	Prom   *Prometheus
	AM     *Alertmanager
	Hook   *Webhook

	podSeq   int
	lbSeq    int
	outside  *Outside
	services []*Service
	mu       sync.Mutex
	procs    []*Proc
	netns    []*NetNS
	cleanups []func()
	closed   bool
	stopSig  func()

	// scrapePauses counts the PauseScrapes in force (under mu).
	scrapePauses int
}

// New creates the fabric and the control plane. Close undoes everything,
// also after a partial failure.
func New(ctx context.Context, opts Options) (*Env, error) {
	if opts.Prefix == "" {
		opts.Prefix = "pfe2e-"
	}
	switch opts.CaptureMode {
	case "", CapturePacket, CaptureConnection:
	default:
		return nil, fmt.Errorf("capture mode %q: want %s or %s", opts.CaptureMode, CapturePacket, CaptureConnection)
	}
	e := &Env{Options: opts, Bins: opts.Bins}
	e.ID = opts.Prefix + strconv.Itoa(os.Getpid())
	sweepStale(opts.Prefix)
	e.Dir = opts.Dir
	if e.Dir == "" {
		d, err := os.MkdirTemp("", e.ID+"-")
		if err != nil {
			return nil, err
		}
		e.Dir = d
	}
	if err := os.MkdirAll(e.Dir, 0o755); err != nil {
		return nil, err
	}
	if !opts.OwnSignals {
		e.catchSignals()
	}
	if err := e.setupFabric(); err != nil {
		e.Close()
		return nil, err
	}
	if err := e.startControlPlane(ctx); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

func (e *Env) logf(format string, args ...any) {
	if e.Logf != nil {
		e.Logf(format, args...)
	}
}

// catchSignals tears everything down on SIGINT/SIGTERM, then exits: the test
// runner would otherwise die without running any cleanup.
func (e *Env) catchSignals() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-c:
			fmt.Fprintf(os.Stderr, "\n%s: %v: tearing down\n", e.ID, s)
			e.Close()
			os.Exit(130)
		case <-done:
		}
	}()
	e.stopSig = func() { signal.Stop(c); close(done) }
}

// AddCleanup registers fn to run on Close, before processes are stopped.
func (e *Env) AddCleanup(fn func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cleanups = append(e.cleanups, fn)
}

func (e *Env) newNetNS(suffix string) (*NetNS, error) {
	ns, err := newNetNS(e.ID + "-" + suffix)
	if ns != nil {
		e.mu.Lock()
		e.netns = append(e.netns, ns)
		e.mu.Unlock()
	}
	return ns, err
}

// DeleteNetNS removes one namespace early (a deleted pod).
func (e *Env) DeleteNetNS(ns *NetNS) error {
	e.mu.Lock()
	for i, n := range e.netns {
		if n == ns {
			e.netns = append(e.netns[:i], e.netns[i+1:]...)
			break
		}
	}
	e.mu.Unlock()
	return ns.delete()
}

func (e *Env) start(name string, ns *NetNS, bin string, args ...string) (*Proc, error) {
	if bin == "" {
		return nil, fmt.Errorf("no binary for %s", name)
	}
	p, err := startProc(e.Dir, name, ns, bin, args...)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.procs = append(e.procs, p)
	e.mu.Unlock()
	return p, nil
}

// Close stops every process (newest first, SIGTERM then SIGKILL) and deletes
// every namespace. It is safe to call more than once.
func (e *Env) Close() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.closed = true
	cleanups := e.cleanups
	procs := e.procs
	e.mu.Unlock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Stop(5 * time.Second)
	}
	e.mu.Lock()
	nss := e.netns
	e.netns = nil
	e.mu.Unlock()
	for i := len(nss) - 1; i >= 0; i-- {
		if err := nss[i].delete(); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", e.ID, err)
		}
	}
	if e.stopSig != nil {
		e.stopSig()
	}
}

// sweepStale deletes namespaces of earlier runs whose process is gone (a run
// killed with SIGKILL cannot clean up after itself).
func sweepStale(prefix string) {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	for _, ent := range entries {
		name := ent.Name()
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		rest := strings.TrimPrefix(name, prefix)
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil {
			continue
		}
		if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
			continue
		}
		_ = exec.Command("ip", "netns", "del", name).Run()
	}
}

// LogPath names a file in the run directory.
func (e *Env) LogPath(name string) string { return filepath.Join(e.Dir, name) }
