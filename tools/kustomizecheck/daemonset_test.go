package kustomizecheck

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

const (
	imageRepo   = "ghcr.io/podflow/podflow"
	metricsPort = 9810
)

// daemonSet decodes the single DaemonSet of a build and its podflow container.
func daemonSet(t *testing.T, b build) (*appsv1.DaemonSet, *corev1.Container) {
	t.Helper()
	var ds appsv1.DaemonSet
	decode(t, b.one(t, "DaemonSet"), &ds)
	cs := ds.Spec.Template.Spec.Containers
	if len(cs) != 1 || cs[0].Name != "podflow" {
		t.Fatalf("%s: want one container named podflow, got %d", b.Name, len(cs))
	}
	return &ds, &cs[0]
}

func TestDaemonSetSecurity(t *testing.T) {
	for _, b := range allBuilds(t) {
		for _, p := range securityProblems(t, b) {
			t.Errorf("%s: %s", b.Name, p)
		}
	}
}

// TestSecurityChecksBite: a user overlay that widens the privileges must
// fail the checks above, or they check nothing.
func TestSecurityChecksBite(t *testing.T) {
	dir := t.TempDir()
	rel, err := filepath.Rel(dir, filepath.Join(kustomizeDir(t), "base"))
	if err != nil {
		t.Fatal(err)
	}
	k := `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ` + rel + `
patches:
  - target: {kind: DaemonSet, name: podflow}
    patch: |-
      - op: add
        path: /spec/template/spec/containers/0/securityContext/capabilities/add/-
        value: SYS_ADMIN
      - op: replace
        path: /spec/template/spec/containers/0/securityContext/readOnlyRootFilesystem
        value: false
      - op: replace
        path: /spec/template/spec/containers/0/securityContext/allowPrivilegeEscalation
        value: true
      - op: remove
        path: /spec/template/spec/containers/0/securityContext/seccompProfile
      - op: add
        path: /spec/template/spec/volumes/-
        value: {name: root, hostPath: {path: /}}
`
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o600); err != nil {
		t.Fatal(err)
	}
	b := build{Name: "widened", Objects: runKustomize(t, dir)}
	got := strings.Join(securityProblems(t, b), "\n")
	for _, want := range []string{"capabilities.add", "readOnlyRootFilesystem", "allowPrivilegeEscalation", "container seccompProfile", "hostPath"} {
		if !strings.Contains(got, want) {
			t.Errorf("the checks miss %s; they reported:\n%s", want, got)
		}
	}
}

// securityProblems lists what is wrong with the privileges of a build's
// DaemonSet.
func securityProblems(t *testing.T, b build) []string {
	t.Helper()
	var problems []string
	errorf := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf(format, args...))
	}
	ds, c := daemonSet(t, b)
	pod := ds.Spec.Template.Spec
	if !pod.HostNetwork {
		errorf("hostNetwork must be true")
	}
	if pod.HostPID || pod.HostIPC {
		errorf("hostPID and hostIPC must stay off")
	}
	if pod.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		errorf("dnsPolicy %q, want ClusterFirstWithHostNet", pod.DNSPolicy)
	}
	if pod.PriorityClassName != "system-node-critical" {
		errorf("priorityClassName %q", pod.PriorityClassName)
	}
	if pod.ServiceAccountName != "podflow" {
		errorf("serviceAccountName %q", pod.ServiceAccountName)
	}
	if pod.SecurityContext == nil || pod.SecurityContext.SeccompProfile == nil ||
		pod.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		errorf("pod seccompProfile must be RuntimeDefault")
	}
	if len(pod.InitContainers) > 0 || len(pod.EphemeralContainers) > 0 {
		errorf("unexpected extra containers")
	}

	sc := c.SecurityContext
	if sc == nil {
		errorf("container has no securityContext")
		return problems
	}
	if sc.Privileged != nil && *sc.Privileged {
		errorf("container must not be privileged")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		errorf("allowPrivilegeEscalation must be false")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		errorf("readOnlyRootFilesystem must be true")
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		errorf("container seccompProfile must be RuntimeDefault")
	}
	if sc.Capabilities == nil {
		errorf("no capabilities")
		return problems
	}
	if got := caps(sc.Capabilities.Drop); !slices.Equal(got, []string{"ALL"}) {
		errorf("capabilities.drop %v, want [ALL]", got)
	}
	if got := caps(sc.Capabilities.Add); !slices.Equal(got, []string{"NET_ADMIN"}) {
		errorf("capabilities.add %v, want exactly [NET_ADMIN]", got)
	}
	// Kubernetes grants added capabilities to uid 0 only (no ambient
	// set), so the uid is pinned rather than left to the image.
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		errorf("runAsUser must be 0 (see docs/security.md)")
	}
	if sc.ProcMount != nil && *sc.ProcMount != corev1.DefaultProcMount {
		errorf("procMount must stay Default")
	}
	for _, p := range c.Ports {
		if p.HostPort != 0 && p.HostPort != p.ContainerPort {
			errorf("hostPort %d differs from containerPort %d", p.HostPort, p.ContainerPort)
		}
	}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			errorf("hostPath volume %q: the exporter needs none", v.Name)
		}
	}
	for _, m := range c.VolumeMounts {
		if !m.ReadOnly {
			errorf("volume mount %s must be read-only", m.MountPath)
		}
	}
	return problems
}

func caps(cs []corev1.Capability) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, string(c))
	}
	slices.Sort(out)
	return out
}

func TestDaemonSetScheduling(t *testing.T) {
	for _, b := range allBuilds(t) {
		ds, _ := daemonSet(t, b)
		us := ds.Spec.UpdateStrategy
		if us.Type != appsv1.RollingUpdateDaemonSetStrategyType || us.RollingUpdate == nil {
			t.Fatalf("%s: updateStrategy must be RollingUpdate with parameters", b.Name)
		}
		// One NFLOG group owner per node: never two pods on a node.
		if us.RollingUpdate.MaxSurge == nil || us.RollingUpdate.MaxSurge.IntValue() != 0 ||
			us.RollingUpdate.MaxSurge.Type != intstr.Int {
			t.Errorf("%s: maxSurge must be 0", b.Name)
		}
		if us.RollingUpdate.MaxUnavailable == nil || us.RollingUpdate.MaxUnavailable.IntValue() < 1 &&
			us.RollingUpdate.MaxUnavailable.Type == intstr.Int {
			t.Errorf("%s: maxUnavailable must be at least 1 when maxSurge is 0", b.Name)
		}
		// Every node: one toleration with operator Exists and no key or
		// effect tolerates every taint, NoExecute included.
		everyTaint := false
		for _, tol := range ds.Spec.Template.Spec.Tolerations {
			if tol.Operator == corev1.TolerationOpExists && tol.Key == "" && tol.Effect == "" &&
				tol.TolerationSeconds == nil {
				everyTaint = true
			}
		}
		if !everyTaint {
			t.Errorf("%s: needs a toleration {operator: Exists} that tolerates every taint", b.Name)
		}
		for k := range ds.Spec.Template.Spec.NodeSelector {
			if k != "kubernetes.io/os" {
				t.Errorf("%s: nodeSelector %q would leave nodes unwatched", b.Name, k)
			}
		}
		if ds.Spec.Template.Spec.Affinity != nil {
			t.Errorf("%s: affinity would leave nodes unwatched", b.Name)
		}
	}
}

func TestDaemonSetProbesAndPorts(t *testing.T) {
	for _, b := range allBuilds(t) {
		ds, c := daemonSet(t, b)
		var port *corev1.ContainerPort
		for i := range c.Ports {
			if c.Ports[i].Name == "metrics" {
				port = &c.Ports[i]
			}
		}
		if port == nil || port.ContainerPort != metricsPort || port.Protocol != corev1.ProtocolTCP {
			t.Fatalf("%s: want container port metrics 9810/TCP, got %+v", b.Name, c.Ports)
		}
		wantScheme := corev1.URISchemeHTTP
		if b.has("tls") {
			wantScheme = corev1.URISchemeHTTPS
		}
		for _, p := range []struct {
			name  string
			probe *corev1.Probe
			path  string
		}{
			{"liveness", c.LivenessProbe, "/healthz"},
			{"readiness", c.ReadinessProbe, "/readyz"},
		} {
			if p.probe == nil || p.probe.HTTPGet == nil {
				t.Errorf("%s: %s probe must be an httpGet", b.Name, p.name)
				continue
			}
			g := p.probe.HTTPGet
			if g.Path != p.path {
				t.Errorf("%s: %s probe path %q, want %q", b.Name, p.name, g.Path, p.path)
			}
			byName := g.Port.Type == intstr.String && g.Port.StrVal == "metrics"
			byNumber := g.Port.Type == intstr.Int && g.Port.IntValue() == metricsPort
			if !byName && !byNumber {
				t.Errorf("%s: %s probe port %s, want the metrics port", b.Name, p.name, g.Port.String())
			}
			if g.Scheme != wantScheme {
				t.Errorf("%s: %s probe scheme %q, want %q", b.Name, p.name, g.Scheme, wantScheme)
			}
		}

		// The listen address must agree with the declared port.
		if v, ok := flagValue(c.Args, "--web.listen-address"); ok && !strings.HasSuffix(v, ":9810") {
			t.Errorf("%s: --web.listen-address=%s does not serve the metrics port", b.Name, v)
		}

		// The node name comes from the downward API.
		var nodeEnv *corev1.EnvVar
		for i := range c.Env {
			if c.Env[i].Name == "NODE_NAME" {
				nodeEnv = &c.Env[i]
			}
		}
		if nodeEnv == nil || nodeEnv.ValueFrom == nil || nodeEnv.ValueFrom.FieldRef == nil ||
			nodeEnv.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
			t.Errorf("%s: NODE_NAME must come from fieldRef spec.nodeName", b.Name)
		}
		if v, ok := flagValue(c.Args, "--kube.node-name"); ok && v != "$(NODE_NAME)" {
			t.Errorf("%s: --kube.node-name=%s, want $(NODE_NAME)", b.Name, v)
		}

		// The networks file is mounted from the ConfigMap.
		nf, ok := flagValue(c.Args, "--networks.file")
		if !ok {
			t.Errorf("%s: no --networks.file", b.Name)
		}
		if !mountedFile(&ds.Spec.Template.Spec, c, nf, "networks.yaml", "ConfigMap") {
			t.Errorf("%s: --networks.file=%s is not backed by the networks ConfigMap", b.Name, nf)
		}
		if b.has("tls") {
			wf, ok := flagValue(c.Args, "--web.config.file")
			if !ok || !mountedFile(&ds.Spec.Template.Spec, c, wf, "web-config.yml", "Secret") {
				t.Errorf("%s: --web.config.file=%s is not backed by the web config Secret", b.Name, wf)
			}
		} else if _, ok := flagValue(c.Args, "--web.config.file"); ok {
			t.Errorf("%s: --web.config.file without the tls component", b.Name)
		}

		r := c.Resources
		for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, okReq := r.Requests[res]
			lim, okLim := r.Limits[res]
			if !okReq || !okLim {
				t.Errorf("%s: %s needs a request and a limit", b.Name, res)
				continue
			}
			if req.Cmp(lim) > 0 {
				t.Errorf("%s: %s request %s above limit %s", b.Name, res, req.String(), lim.String())
			}
		}
	}
}

// mountedFile reports whether path is a file that a volume mount of c
// projects from key of a ConfigMap or Secret (kind).
func mountedFile(pod *corev1.PodSpec, c *corev1.Container, path, key, kind string) bool {
	for _, m := range c.VolumeMounts {
		prefix := strings.TrimSuffix(m.MountPath, "/") + "/"
		if !strings.HasPrefix(path, prefix) {
			continue
		}
		rel := strings.TrimPrefix(path, prefix)
		for _, v := range pod.Volumes {
			if v.Name != m.Name {
				continue
			}
			switch {
			case v.ConfigMap != nil && kind == "ConfigMap":
				return itemPath(v.ConfigMap.Items, key) == rel
			case v.Secret != nil && kind == "Secret":
				return itemPath(v.Secret.Items, key) == rel
			case v.Projected != nil:
				for _, s := range v.Projected.Sources {
					if s.ConfigMap != nil && kind == "ConfigMap" && itemPath(s.ConfigMap.Items, key) == rel {
						return true
					}
					if s.Secret != nil && kind == "Secret" && itemPath(s.Secret.Items, key) == rel {
						return true
					}
				}
			}
		}
	}
	return false
}

// itemPath is where a key lands in a ConfigMap or Secret volume.
func itemPath(items []corev1.KeyToPath, key string) string {
	if len(items) == 0 {
		return key
	}
	for _, it := range items {
		if it.Key == key {
			return it.Path
		}
	}
	return ""
}

// flagValue returns the value of the last --name=value in args.
func flagValue(args []string, name string) (string, bool) {
	v, ok := "", false
	for _, a := range args {
		if s, found := strings.CutPrefix(a, name+"="); found {
			v, ok = s, true
		}
	}
	return v, ok
}

func TestImageReference(t *testing.T) {
	for _, b := range allBuilds(t) {
		_, c := daemonSet(t, b)
		repo, tag, found := strings.Cut(c.Image, ":")
		if repo != imageRepo || !found || tag == "" || strings.Contains(tag, "latest") {
			t.Errorf("%s: image %q, want %s:<version>", b.Name, c.Image, imageRepo)
		}
		if c.ImagePullPolicy != corev1.PullIfNotPresent {
			t.Errorf("%s: imagePullPolicy %q", b.Name, c.ImagePullPolicy)
		}
	}
}

// TestImageOverride is what `kustomize edit set image` writes: an images
// entry keyed by the repository name must reach the DaemonSet.
func TestImageOverride(t *testing.T) {
	dir := t.TempDir()
	rel, err := filepath.Rel(dir, filepath.Join(kustomizeDir(t), "overlays", "prometheus-operator"))
	if err != nil {
		t.Fatal(err)
	}
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - " + rel +
		"\nimages:\n  - name: " + imageRepo + "\n    newName: registry.example.com/mirror/podflow\n    newTag: v9.9.9\n"
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o600); err != nil {
		t.Fatal(err)
	}
	b := build{Name: "image override", Objects: runKustomize(t, dir)}
	_, c := daemonSet(t, b)
	if c.Image != "registry.example.com/mirror/podflow:v9.9.9" {
		t.Errorf("image %q after an images override", c.Image)
	}
}
