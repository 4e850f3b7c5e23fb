package harness

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// Owner is what a pod's ownerReference points at.
type Owner struct {
	Kind, Name string
	UID        string
	APIVersion string
}

// Workload is a controller the harness created in the API server, with the
// owner its pods carry (a ReplicaSet for a Deployment, a Job for a CronJob).
type Workload struct {
	Namespace string
	Name      string // the workload label podflow should report
	Kind      string // the kind label podflow should report
	PodOwner  *Owner // nil for a bare pod
	Labels    map[string]string
	pods      int
}

// Pod is a pod: a namespace behind its node, and its API object.
type Pod struct {
	Name      string
	Namespace string
	Workload  *Workload
	Node      *Node
	NS        *NetNS
	IPv4      netip.Addr
	IPv6      netip.Addr
	UID       string
	ifname    string
}

func (e *Env) ensureNamespace(ctx context.Context, name string) error {
	_, err := e.CP.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

func podTemplate(labels map[string]string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/e2e:1"}}},
	}
}

// Deployment creates a Deployment and its ReplicaSet.
func (e *Env) Deployment(ctx context.Context, ns, name string) (*Workload, error) {
	if err := e.ensureNamespace(ctx, ns); err != nil {
		return nil, err
	}
	labels := map[string]string{"app": name}
	d, err := e.CP.Client.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: podTemplate(labels),
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("deployment %s/%s: %w", ns, name, err)
	}
	return e.replicaSet(ctx, d, "5d8f7c9b6")
}

// replicaSet creates the ReplicaSet of Deployment d with a pod-template
// hash, as the Deployment controller names and labels it.
func (e *Env) replicaSet(ctx context.Context, d *appsv1.Deployment, hash string) (*Workload, error) {
	labels := map[string]string{"app": d.Name, "pod-template-hash": hash}
	rs, err := e.CP.Client.AppsV1().ReplicaSets(d.Namespace).Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name:   d.Name + "-" + hash,
			Labels: labels,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name, UID: d.UID, Controller: ptr.To(true),
			}},
		},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: podTemplate(labels),
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("replicaset %s/%s-%s: %w", d.Namespace, d.Name, hash, err)
	}
	return &Workload{Namespace: d.Namespace, Name: d.Name, Kind: "Deployment", Labels: labels,
		PodOwner: &Owner{Kind: "ReplicaSet", Name: rs.Name, UID: string(rs.UID), APIVersion: "apps/v1"}}, nil
}

// StatefulSet creates a StatefulSet.
func (e *Env) StatefulSet(ctx context.Context, ns, name string) (*Workload, error) {
	if err := e.ensureNamespace(ctx, ns); err != nil {
		return nil, err
	}
	labels := map[string]string{"app": name}
	s, err := e.CP.Client.AppsV1().StatefulSets(ns).Create(ctx, &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    ptr.To[int32](1),
			ServiceName: name,
			Selector:    &metav1.LabelSelector{MatchLabels: labels},
			Template:    podTemplate(labels),
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("statefulset %s/%s: %w", ns, name, err)
	}
	return &Workload{Namespace: ns, Name: name, Kind: "StatefulSet", Labels: labels,
		PodOwner: &Owner{Kind: "StatefulSet", Name: s.Name, UID: string(s.UID), APIVersion: "apps/v1"}}, nil
}

// DaemonSet creates a DaemonSet.
func (e *Env) DaemonSet(ctx context.Context, ns, name string) (*Workload, error) {
	if err := e.ensureNamespace(ctx, ns); err != nil {
		return nil, err
	}
	labels := map[string]string{"app": name}
	s, err := e.CP.Client.AppsV1().DaemonSets(ns).Create(ctx, &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: podTemplate(labels),
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("daemonset %s/%s: %w", ns, name, err)
	}
	return &Workload{Namespace: ns, Name: name, Kind: "DaemonSet", Labels: labels,
		PodOwner: &Owner{Kind: "DaemonSet", Name: s.Name, UID: string(s.UID), APIVersion: "apps/v1"}}, nil
}

// CronJob creates a CronJob and one Job it spawned.
func (e *Env) CronJob(ctx context.Context, ns, name string) (*Workload, error) {
	if err := e.ensureNamespace(ctx, ns); err != nil {
		return nil, err
	}
	labels := map[string]string{"app": name}
	cj, err := e.CP.Client.BatchV1().CronJobs(ns).Create(ctx, &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: batchv1.CronJobSpec{
			Schedule: "17 3 * * *",
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: func() corev1.PodTemplateSpec {
				t := podTemplate(labels)
				t.Spec.RestartPolicy = corev1.RestartPolicyNever
				return t
			}()}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("cronjob %s/%s: %w", ns, name, err)
	}
	return e.job(ctx, ns, name+"-29170443", labels, &metav1.OwnerReference{
		APIVersion: "batch/v1", Kind: "CronJob", Name: cj.Name, UID: cj.UID, Controller: ptr.To(true),
	}, name, "CronJob")
}

// Job creates a Job of its own (no CronJob).
func (e *Env) Job(ctx context.Context, ns, name string) (*Workload, error) {
	if err := e.ensureNamespace(ctx, ns); err != nil {
		return nil, err
	}
	return e.job(ctx, ns, name, map[string]string{"app": name}, nil, name, "Job")
}

func (e *Env) job(ctx context.Context, ns, name string, labels map[string]string, owner *metav1.OwnerReference, workload, kind string) (*Workload, error) {
	meta := metav1.ObjectMeta{Name: name, Labels: labels}
	if owner != nil {
		meta.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	t := podTemplate(labels)
	t.Spec.RestartPolicy = corev1.RestartPolicyNever
	j, err := e.CP.Client.BatchV1().Jobs(ns).Create(ctx, &batchv1.Job{
		ObjectMeta: meta,
		Spec:       batchv1.JobSpec{Template: t, ManualSelector: ptr.To(true), Selector: &metav1.LabelSelector{MatchLabels: labels}},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("job %s/%s: %w", ns, name, err)
	}
	return &Workload{Namespace: ns, Name: workload, Kind: kind, Labels: labels,
		PodOwner: &Owner{Kind: "Job", Name: j.Name, UID: string(j.UID), APIVersion: "batch/v1"}}, nil
}

// BarePod is a workload of pods without an owner.
func (e *Env) BarePod(ctx context.Context, ns, name string) (*Workload, error) {
	if err := e.ensureNamespace(ctx, ns); err != nil {
		return nil, err
	}
	return &Workload{Namespace: ns, Name: name, Kind: "Pod", Labels: map[string]string{"app": name}}, nil
}

// AddPod creates a pod of w on node n: its namespace with IPv4 and IPv6
// addresses routed from the node, and the Pod object with phase Running and
// status.podIPs set through the status subresource.
func (e *Env) AddPod(ctx context.Context, w *Workload, n *Node) (*Pod, error) {
	n.nextPod++
	k := n.nextPod
	e.podSeq++
	p := &Pod{
		Namespace: w.Namespace,
		Workload:  w,
		Node:      n,
		IPv4:      netip.MustParseAddr(fmt.Sprintf("10.251.%d.%d", n.Index, 10+k)),
		IPv6:      netip.MustParseAddr(fmt.Sprintf("fd00:251:%x::%x", n.Index, 0x10+k)),
		ifname:    "p" + strconv.Itoa(k),
	}
	switch {
	case w.PodOwner == nil:
		p.Name = w.Name
		if w.pods > 0 {
			p.Name = w.Name + "-" + strconv.Itoa(w.pods)
		}
	case w.Kind == "StatefulSet":
		p.Name = w.Name + "-" + strconv.Itoa(w.pods)
	default:
		p.Name = fmt.Sprintf("%s-%05x", w.PodOwner.Name, e.podSeq*7919)
	}
	w.pods++
	ns, err := e.newNetNS("p" + strconv.Itoa(e.podSeq))
	if err != nil {
		return nil, err
	}
	p.NS = ns
	if err := e.wirePod(p); err != nil {
		return nil, err
	}
	if err := e.createPodObject(ctx, p, false); err != nil {
		return nil, err
	}
	return p, nil
}

func (e *Env) wirePod(p *Pod) error {
	n, ns := p.Node, p.NS
	for _, kv := range [][2]string{
		{"net.ipv6.conf.all.accept_dad", "0"},
		{"net.ipv6.conf.default.accept_dad", "0"},
	} {
		if err := ns.Sysctl(kv[0], kv[1]); err != nil {
			return err
		}
	}
	mtu := e.podMTU()
	if err := n.NS.IP("link", "add", p.ifname, "mtu", mtu, "type", "veth", "peer", "name", "eth0", "mtu", mtu, "netns", ns.Name); err != nil {
		return err
	}
	if err := n.NS.Sysctl("net.ipv4.conf."+p.ifname+".proxy_arp", "1"); err != nil {
		return err
	}
	// No segmentation offload towards the pod: the node cuts every
	// super-packet into wire packets before the pod receives them, so
	// that the pod's own counters (CountFlow) see the wire, as a physical
	// link would carry it.
	if out, err := n.NS.Exec("ethtool", "-K", p.ifname, "tso", "off", "gso", "off"); err != nil {
		return fmt.Errorf("ethtool(8), Debian package ethtool, -K %s: %w: %s", p.ifname, err, out)
	}
	for _, s := range [][]string{
		{"addr", "add", "fe80::1/64", "dev", p.ifname, "nodad"},
		{"link", "set", p.ifname, "up"},
		{"route", "add", p.IPv4.String() + "/32", "dev", p.ifname},
		{"-6", "route", "add", p.IPv6.String() + "/128", "dev", p.ifname},
	} {
		if err := n.NS.IP(s...); err != nil {
			return err
		}
	}
	for _, s := range [][]string{
		{"addr", "add", p.IPv4.String() + "/32", "dev", "eth0"},
		{"addr", "add", p.IPv6.String() + "/128", "dev", "eth0", "nodad"},
		{"link", "set", "eth0", "up"},
		{"route", "add", "169.254.1.1", "dev", "eth0", "scope", "link"},
		{"route", "add", "default", "via", "169.254.1.1", "dev", "eth0"},
		{"-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0"},
	} {
		if err := ns.IP(s...); err != nil {
			return err
		}
	}
	return e.wireOnly(ns)
}

// wireOnly turns segmentation offload off on ns's eth0 in connection
// mode. Conntrack's accounting counts the packets the kernel handles, and
// a socket behind a link with TSO or GSO hands it super-packets of up to
// 64 KiB, each one packet there; packet mode counts the wire packets each
// stands for (package offload), connection mode cannot (docs/architecture.md,
// "Connection mode"). With offload off at every sender, the packets
// conntrack counts are the wire's, and the exact sums hold in both modes.
func (e *Env) wireOnly(ns *NetNS) error {
	if !e.ConnectionMode() {
		return nil
	}
	if out, err := ns.Exec("ethtool", "-K", "eth0", "tso", "off", "gso", "off"); err != nil {
		return fmt.Errorf("ethtool(8), Debian package ethtool, -K eth0 in %s: %w: %s", ns.Name, err, out)
	}
	return nil
}

func (e *Env) createPodObject(ctx context.Context, p *Pod, hostNetwork bool) error {
	w := p.Workload
	meta := metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, Labels: w.Labels}
	if w.PodOwner != nil {
		meta.OwnerReferences = []metav1.OwnerReference{{
			APIVersion: w.PodOwner.APIVersion, Kind: w.PodOwner.Kind, Name: w.PodOwner.Name,
			UID: types.UID(w.PodOwner.UID), Controller: ptr.To(true),
		}}
	}
	spec := corev1.PodSpec{
		NodeName:    p.Node.Name,
		HostNetwork: hostNetwork,
		Containers:  []corev1.Container{{Name: "app", Image: "registry.invalid/e2e:1"}},
	}
	if w.Kind == "Job" || w.Kind == "CronJob" {
		spec.RestartPolicy = corev1.RestartPolicyNever
	}
	obj, err := e.CP.Client.CoreV1().Pods(p.Namespace).Create(ctx, &corev1.Pod{ObjectMeta: meta, Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	p.UID = string(obj.UID)
	obj.Status.Phase = corev1.PodRunning
	obj.Status.HostIP = p.Node.IPv4.String()
	obj.Status.HostIPs = []corev1.HostIP{{IP: p.Node.IPv4.String()}, {IP: p.Node.IPv6.String()}}
	obj.Status.PodIP = p.IPv4.String()
	obj.Status.PodIPs = []corev1.PodIP{{IP: p.IPv4.String()}, {IP: p.IPv6.String()}}
	obj.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	if _, err := e.CP.Client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, obj, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("pod %s/%s status: %w", p.Namespace, p.Name, err)
	}
	return nil
}

// AddHostNetworkPod creates a hostNetwork pod of w on n: it shares the node's
// namespace and addresses.
func (e *Env) AddHostNetworkPod(ctx context.Context, w *Workload, n *Node) (*Pod, error) {
	e.podSeq++
	p := &Pod{
		Name:      fmt.Sprintf("%s-%05x", w.Name, e.podSeq*7919),
		Namespace: w.Namespace, Workload: w, Node: n, NS: n.NS, IPv4: n.IPv4, IPv6: n.IPv6,
	}
	w.pods++
	return p, e.createPodObject(ctx, p, true)
}

// DeletePod deletes the Pod object and its namespace. keepAddrs leaves the
// node's routes in place so that ReusePod can hand the same addresses to
// another pod.
func (e *Env) DeletePod(ctx context.Context, p *Pod) error {
	if err := e.CP.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		return err
	}
	if p.NS == p.Node.NS {
		return nil
	}
	return e.DeleteNetNS(p.NS)
}

// ReusePod creates a pod of w on old's node with old's addresses (old must
// be deleted first), as a CNI that hands a freed IP to the next pod does.
func (e *Env) ReusePod(ctx context.Context, old *Pod, w *Workload) (*Pod, error) {
	e.podSeq++
	p := &Pod{
		Namespace: w.Namespace, Workload: w, Node: old.Node,
		IPv4: old.IPv4, IPv6: old.IPv6, ifname: old.ifname,
		Name: fmt.Sprintf("%s-%05x", w.Name, e.podSeq*7919),
	}
	if w.PodOwner != nil && w.PodOwner.Kind == "ReplicaSet" {
		p.Name = fmt.Sprintf("%s-%05x", w.PodOwner.Name, e.podSeq*7919)
	}
	w.pods++
	ns, err := e.newNetNS("p" + strconv.Itoa(e.podSeq))
	if err != nil {
		return nil, err
	}
	p.NS = ns
	if err := e.wirePod(p); err != nil {
		return nil, err
	}
	return p, e.createPodObject(ctx, p, false)
}

// NextReplicaSet starts a rollout of Deployment w: a new ReplicaSet of the
// same Deployment with another pod-template hash, as the Deployment
// controller makes on a template change. Pods added to the returned
// workload belong to the new ReplicaSet; both carry the label app=<name>.
func (e *Env) NextReplicaSet(ctx context.Context, w *Workload, hash string) (*Workload, error) {
	d, err := e.CP.Client.AppsV1().Deployments(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return e.replicaSet(ctx, d, hash)
}

// TerminatePod deletes the pod with a grace period, as a rollout does: the
// API server sets its deletion timestamp and keeps it until the kubelet
// (the harness) confirms the end with FinishPod. Until then the pod's
// namespace keeps serving, and the EndpointSlice lists it as terminating.
func (e *Env) TerminatePod(ctx context.Context, p *Pod, grace time.Duration) error {
	secs := int64(grace / time.Second)
	return e.CP.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &secs})
}

// FinishPod ends a terminating pod: the Pod object goes and its namespace
// with it.
func (e *Env) FinishPod(ctx context.Context, p *Pod) error { return e.DeletePod(ctx, p) }
