package inventory

import (
	"net/netip"
	"reflect"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
)

func template(l map[string]string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: l}}
}

func TestLoad(t *testing.T) {
	yes := true
	client := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}, Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web", "pod-template-hash": "x"}},
			Template: template(map[string]string{"app": "web"}),
		}},
		// A ReplicaSet of a Deployment is the Deployment's, not a workload.
		&appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-x", OwnerReferences: []metav1.OwnerReference{{Kind: "Deployment", Name: "web", Controller: &yes}}},
			Spec: appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}},
		&batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "nightly"}, Spec: batchv1.CronJobSpec{
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: template(map[string]string{"app": "nightly", "batch.kubernetes.io/controller-uid": "u"})}},
		}},
		&batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "nightly-1", OwnerReferences: []metav1.OwnerReference{{Kind: "CronJob", Name: "nightly", Controller: &yes}}}},
		&batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "once"}, Spec: batchv1.JobSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"batch.kubernetes.io/controller-uid": "u2"}},
			Template: template(map[string]string{"job-name": "once", "controller-uid": "u2"}),
		}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "debug", Labels: map[string]string{"run": "debug"}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.9"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "nightly-1-a", OwnerReferences: []metav1.OwnerReference{{Kind: "Job", Name: "nightly-1", Controller: &yes}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.7"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-x-1", Labels: map[string]string{"app": "web", "pod-template-hash": "x"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-x", Controller: &yes}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1"}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.0.1"}, {Type: corev1.NodeHostName, Address: "n1"}}}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "kube-dns"}, Spec: corev1.ServiceSpec{
			Selector: map[string]string{"k8s-app": "kube-dns"},
			Ports:    []corev1.ServicePort{{Protocol: corev1.ProtocolUDP, Port: 53, TargetPort: intstr.FromString("dns")}},
		}},
	)
	inv, err := Load(t.Context(), client, Options{DNSService: "kube-system/kube-dns"})
	if err != nil {
		t.Fatal(err)
	}
	sel := func(kind, name string) *metav1.LabelSelector {
		w, ok := inv.Workloads[Key{"shop", kind, name}]
		if !ok {
			t.Fatalf("no %s %s in %v", kind, name, inv.Workloads)
		}
		return w.Selector
	}
	if got := sel("Deployment", "web"); !reflect.DeepEqual(got.MatchLabels, map[string]string{"app": "web"}) {
		t.Errorf("Deployment selector %v keeps a per-revision label", got)
	}
	if got := sel("CronJob", "nightly"); !reflect.DeepEqual(got.MatchLabels, map[string]string{"app": "nightly"}) {
		t.Errorf("CronJob selector %v", got)
	}
	if got := sel("Job", "once"); got != nil {
		t.Errorf("a Job with only per-run labels got selector %v", got)
	}
	if got := sel("Pod", "debug"); !reflect.DeepEqual(got.MatchLabels, map[string]string{"run": "debug"}) {
		t.Errorf("bare pod selector %v", got)
	}
	for k := range inv.Workloads {
		if k.Kind == "ReplicaSet" || k.Name == "nightly-1" {
			t.Errorf("%v is owned by another workload", k)
		}
	}
	if a, ok := inv.Addr(Key{"shop", "Deployment", "web"}); !ok || a != netip.MustParseAddr("10.0.0.1") {
		t.Errorf("Addr(web) = %v %v", a, ok)
	}
	if a, ok := inv.Addr(Key{"shop", "CronJob", "nightly"}); !ok || a != netip.MustParseAddr("10.0.0.7") {
		t.Errorf("Addr(nightly) = %v %v", a, ok)
	}
	if got := inv.Nodes["n1"]; len(got) != 1 || got[0] != netip.MustParseAddr("192.168.0.1") {
		t.Errorf("node addresses %v", got)
	}
	if inv.DNS == nil || inv.DNS.Namespace != "kube-system" || inv.DNS.Ports[0].TargetPort.StrVal != "dns" {
		t.Errorf("DNS %+v", inv.DNS)
	}
	if _, err := Load(t.Context(), client, Options{DNSService: "kube-system/missing"}); err == nil {
		t.Error("a missing DNS Service was accepted")
	}
}
