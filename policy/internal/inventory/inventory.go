// Package inventory reads from the API server what a policy needs to name a
// workload: its pod selector, the namespaces, the cluster DNS Service and the
// node addresses.
package inventory

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// perRevision are labels whose value changes with each rollout, pod or run:
// a selector that names one would stop matching after the next rollout.
var perRevision = map[string]bool{
	"pod-template-hash":                        true,
	"controller-revision-hash":                 true,
	"pod-template-generation":                  true,
	"statefulset.kubernetes.io/pod-name":       true,
	"apps.kubernetes.io/pod-index":             true,
	"controller-uid":                           true,
	"job-name":                                 true,
	"batch.kubernetes.io/controller-uid":       true,
	"batch.kubernetes.io/job-name":             true,
	"batch.kubernetes.io/job-completion-index": true,
}

// Key names a workload as podflow labels it.
type Key struct {
	Namespace string
	Kind      string
	Name      string
}

// Workload is a workload with the selector of its pods.
type Workload struct {
	Key
	// Selector selects the workload's pods without per-revision labels;
	// nil when nothing stable is left to select by.
	Selector *metav1.LabelSelector
	// Ports are the container ports the pod template names (name to
	// number), so a NetworkPolicy can be checked against them.
	Ports map[string]int32
}

// DNS is the cluster DNS Service's backend: its namespace, pod selector and
// the pod ports it forwards to.
type DNS struct {
	Namespace string
	Selector  *metav1.LabelSelector
	Ports     []corev1.ServicePort
}

// Pod is what evaluation needs of a pod: where it is and what selects it.
type Pod struct {
	Namespace string
	Labels    map[string]string
	IP        netip.Addr
	// Owner is the workload the pod belongs to, by ownerReferences (as
	// podflow names it): a ReplicaSet's Deployment, a Job's CronJob.
	Owner Key
}

// Inventory is what generation reads from the cluster.
type Inventory struct {
	Workloads map[Key]Workload
	// Pods are the running pods with an address of their own.
	Pods       []Pod
	Namespaces []string
	DNS        *DNS
	// Nodes maps a node's name to its addresses.
	Nodes map[string][]netip.Addr
}

// Stable returns a selector without per-revision labels, or nil when none
// of its terms are left.
func Stable(sel *metav1.LabelSelector) *metav1.LabelSelector {
	if sel == nil {
		return nil
	}
	out := &metav1.LabelSelector{}
	for k, v := range sel.MatchLabels {
		if !perRevision[k] {
			if out.MatchLabels == nil {
				out.MatchLabels = map[string]string{}
			}
			out.MatchLabels[k] = v
		}
	}
	for _, e := range sel.MatchExpressions {
		if !perRevision[e.Key] {
			out.MatchExpressions = append(out.MatchExpressions, *e.DeepCopy())
		}
	}
	if len(out.MatchLabels) == 0 && len(out.MatchExpressions) == 0 {
		return nil
	}
	return out
}

func labelsSelector(l map[string]string) *metav1.LabelSelector {
	return Stable(&metav1.LabelSelector{MatchLabels: l})
}

func ports(spec corev1.PodSpec) map[string]int32 {
	out := map[string]int32{}
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		for _, p := range c.Ports {
			if p.Name != "" {
				out[p.Name] = p.ContainerPort
			}
		}
	}
	return out
}

// Options says where the cluster DNS Service is.
type Options struct {
	// DNSService is namespace/name of the cluster DNS Service.
	DNSService string
}

// Load lists the cluster's workloads, namespaces, DNS Service and nodes.
func Load(ctx context.Context, c kubernetes.Interface, o Options) (*Inventory, error) {
	inv := &Inventory{Workloads: map[Key]Workload{}, Nodes: map[string][]netip.Addr{}}
	add := func(ns, kind, name string, sel *metav1.LabelSelector, spec corev1.PodSpec) {
		k := Key{ns, kind, name}
		inv.Workloads[k] = Workload{Key: k, Selector: Stable(sel), Ports: ports(spec)}
	}
	lo := metav1.ListOptions{}
	nss, err := c.CoreV1().Namespaces().List(ctx, lo)
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	for _, n := range nss.Items {
		inv.Namespaces = append(inv.Namespaces, n.Name)
	}
	slices.Sort(inv.Namespaces)
	deps, err := c.AppsV1().Deployments("").List(ctx, lo)
	if err != nil {
		return nil, fmt.Errorf("list deployments: %w", err)
	}
	for _, d := range deps.Items {
		add(d.Namespace, "Deployment", d.Name, d.Spec.Selector, d.Spec.Template.Spec)
	}
	sts, err := c.AppsV1().StatefulSets("").List(ctx, lo)
	if err != nil {
		return nil, fmt.Errorf("list statefulsets: %w", err)
	}
	for _, s := range sts.Items {
		add(s.Namespace, "StatefulSet", s.Name, s.Spec.Selector, s.Spec.Template.Spec)
	}
	dss, err := c.AppsV1().DaemonSets("").List(ctx, lo)
	if err != nil {
		return nil, fmt.Errorf("list daemonsets: %w", err)
	}
	for _, d := range dss.Items {
		add(d.Namespace, "DaemonSet", d.Name, d.Spec.Selector, d.Spec.Template.Spec)
	}
	rss, err := c.AppsV1().ReplicaSets("").List(ctx, lo)
	if err != nil {
		return nil, fmt.Errorf("list replicasets: %w", err)
	}
	// parents maps kind/namespace/name of a ReplicaSet or Job to its owner.
	parents := map[Key]Key{}
	for _, r := range rss.Items {
		if o, ok := controller(r.OwnerReferences); ok {
			parents[Key{r.Namespace, "ReplicaSet", r.Name}] = Key{r.Namespace, o.Kind, o.Name}
		}
		if !ownedBy(r.OwnerReferences, "Deployment") {
			add(r.Namespace, "ReplicaSet", r.Name, r.Spec.Selector, r.Spec.Template.Spec)
		}
	}
	jobs, err := c.BatchV1().Jobs("").List(ctx, lo)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	for _, j := range jobs.Items {
		if o, ok := controller(j.OwnerReferences); ok {
			parents[Key{j.Namespace, "Job", j.Name}] = Key{j.Namespace, o.Kind, o.Name}
		}
		// A Job's own selector is its run's controller-uid: select by the
		// template's stable labels instead.
		if !ownedBy(j.OwnerReferences, "CronJob") {
			add(j.Namespace, "Job", j.Name, labelsSelector(j.Spec.Template.Labels), j.Spec.Template.Spec)
		}
	}
	cjs, err := c.BatchV1().CronJobs("").List(ctx, lo)
	if err != nil {
		return nil, fmt.Errorf("list cronjobs: %w", err)
	}
	for _, j := range cjs.Items {
		t := j.Spec.JobTemplate.Spec.Template
		add(j.Namespace, "CronJob", j.Name, labelsSelector(t.Labels), t.Spec)
	}
	pods, err := c.CoreV1().Pods("").List(ctx, lo)
	if err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	for _, p := range pods.Items {
		if p.Spec.HostNetwork {
			continue
		}
		if len(p.OwnerReferences) == 0 {
			add(p.Namespace, "Pod", p.Name, labelsSelector(p.Labels), p.Spec)
		}
		if ip, err := netip.ParseAddr(p.Status.PodIP); err == nil && p.Status.Phase == corev1.PodRunning {
			owner := Key{p.Namespace, "Pod", p.Name}
			if o, ok := controller(p.OwnerReferences); ok {
				owner = Key{p.Namespace, o.Kind, o.Name}
				if parent, ok := parents[owner]; ok {
					owner = parent
				}
			}
			inv.Pods = append(inv.Pods, Pod{Namespace: p.Namespace, Labels: p.Labels, IP: ip, Owner: owner})
		}
	}
	nodes, err := c.CoreV1().Nodes().List(ctx, lo)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	for _, n := range nodes.Items {
		for _, a := range n.Status.Addresses {
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				inv.Nodes[n.Name] = append(inv.Nodes[n.Name], ip)
			}
		}
	}
	if o.DNSService != "" {
		ns, name, ok := strings.Cut(o.DNSService, "/")
		if !ok {
			return nil, fmt.Errorf("DNS Service %q: want namespace/name", o.DNSService)
		}
		svc, err := c.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("cluster DNS Service: %w", err)
		}
		if len(svc.Spec.Selector) == 0 {
			return nil, fmt.Errorf("cluster DNS Service %s has no selector", o.DNSService)
		}
		inv.DNS = &DNS{Namespace: ns, Selector: &metav1.LabelSelector{MatchLabels: maps.Clone(svc.Spec.Selector)}, Ports: svc.Spec.Ports}
	}
	return inv, nil
}

func controller(refs []metav1.OwnerReference) (metav1.OwnerReference, bool) {
	for _, r := range refs {
		if r.Controller != nil && *r.Controller {
			return r, true
		}
	}
	return metav1.OwnerReference{}, false
}

func ownedBy(refs []metav1.OwnerReference, kind string) bool {
	for _, r := range refs {
		if r.Controller != nil && *r.Controller && r.Kind == kind {
			return true
		}
	}
	return false
}

// Addr returns the address of a running pod of the workload, found by its
// owner references as podflow attributes pods.
func (inv *Inventory) Addr(k Key) (netip.Addr, bool) {
	for _, p := range inv.Pods {
		if p.Owner == k {
			return p.IP, true
		}
	}
	return netip.Addr{}, false
}
