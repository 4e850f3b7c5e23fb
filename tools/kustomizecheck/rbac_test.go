package kustomizecheck

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// readVerbs are the only verbs any podflow role may hold.
var readVerbs = []string{"get", "list", "watch"}

// wantResources is what the exporter's informers read
// (docs/kubernetes.md), by API group.
var wantResources = map[string][]string{
	"":      {"nodes", "pods", "services"},
	"apps":  {"replicasets"},
	"batch": {"jobs"},
}

func TestRBAC(t *testing.T) {
	for _, b := range allBuilds(t) {
		var cr rbacv1.ClusterRole
		decode(t, b.one(t, "ClusterRole"), &cr)
		got := map[string][]string{}
		for _, r := range cr.Rules {
			if len(r.NonResourceURLs) > 0 || len(r.ResourceNames) > 0 {
				t.Errorf("%s: unexpected nonResourceURLs or resourceNames in %+v", b.Name, r)
			}
			v := slices.Sorted(slices.Values(r.Verbs))
			if !slices.Equal(v, readVerbs) {
				t.Errorf("%s: verbs %v, want exactly %v", b.Name, r.Verbs, readVerbs)
			}
			for _, g := range r.APIGroups {
				if g == "*" {
					t.Errorf("%s: wildcard API group", b.Name)
				}
				for _, res := range r.Resources {
					if res == "*" || slices.Contains([]string{"secrets", "configmaps"}, res) {
						t.Errorf("%s: resource %q must not be readable", b.Name, res)
					}
					got[g] = append(got[g], res)
				}
			}
		}
		for g := range got {
			slices.Sort(got[g])
		}
		for g, want := range wantResources {
			if !slices.Equal(got[g], want) {
				t.Errorf("%s: group %q resources %v, want %v", b.Name, g, got[g], want)
			}
		}
		for g := range got {
			if _, ok := wantResources[g]; !ok {
				t.Errorf("%s: unexpected API group %q", b.Name, g)
			}
		}

		// Nothing else grants permissions.
		for _, kind := range []string{"Role", "RoleBinding"} {
			if n := len(b.find(kind)); n > 0 {
				t.Errorf("%s: %d unexpected %s objects", b.Name, n, kind)
			}
		}
		var crb rbacv1.ClusterRoleBinding
		decode(t, b.one(t, "ClusterRoleBinding"), &crb)
		if crb.RoleRef.Kind != "ClusterRole" || crb.RoleRef.Name != cr.Name {
			t.Errorf("%s: binding refers to %s %s", b.Name, crb.RoleRef.Kind, crb.RoleRef.Name)
		}
		if len(crb.Subjects) != 1 || crb.Subjects[0].Kind != "ServiceAccount" ||
			crb.Subjects[0].Name != "podflow" || crb.Subjects[0].Namespace != "podflow" {
			t.Errorf("%s: binding subjects %+v, want the podflow ServiceAccount", b.Name, crb.Subjects)
		}
		var sa corev1.ServiceAccount
		decode(t, b.one(t, "ServiceAccount"), &sa)
		if sa.Name != "podflow" || sa.Namespace != "podflow" {
			t.Errorf("%s: ServiceAccount %s/%s", b.Name, sa.Namespace, sa.Name)
		}
	}
}

func TestSelectorsMatchPods(t *testing.T) {
	for _, b := range allBuilds(t) {
		ds, _ := daemonSet(t, b)
		podLabels := labels.Set(ds.Spec.Template.Labels)
		if ds.Spec.Selector == nil || len(ds.Spec.Selector.MatchLabels) == 0 {
			t.Fatalf("%s: DaemonSet without a selector", b.Name)
		}
		if !labels.SelectorFromSet(ds.Spec.Selector.MatchLabels).Matches(podLabels) {
			t.Errorf("%s: DaemonSet selector %v does not match its pod labels %v", b.Name, ds.Spec.Selector.MatchLabels, podLabels)
		}
		if ds.Namespace != "podflow" {
			t.Errorf("%s: DaemonSet in namespace %q", b.Name, ds.Namespace)
		}

		var svc corev1.Service
		decode(t, b.one(t, "Service"), &svc)
		if svc.Spec.ClusterIP != corev1.ClusterIPNone {
			t.Errorf("%s: Service must be headless", b.Name)
		}
		if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
			t.Errorf("%s: Service selector %v does not match the pods", b.Name, svc.Spec.Selector)
		}
		if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "metrics" || svc.Spec.Ports[0].Port != metricsPort ||
			svc.Spec.Ports[0].TargetPort.String() != "metrics" {
			t.Errorf("%s: Service ports %+v, want metrics 9810 -> metrics", b.Name, svc.Spec.Ports)
		}

		pms := b.find("PodMonitor")
		if (b.Overlay == "overlays/prometheus-operator") != (len(pms) == 1) {
			t.Errorf("%s: %d PodMonitors", b.Name, len(pms))
		}
		for _, o := range pms {
			checkPodMonitor(t, b, o, podLabels)
		}
	}
}

// podMonitor is the part of monitoring.coreos.com/v1 PodMonitor the checks read.
type podMonitor struct {
	Metadata struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		JobLabel        string   `json:"jobLabel"`
		ScrapeProtocols []string `json:"scrapeProtocols"`
		Selector        struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		NamespaceSelector *struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		PodMetricsEndpoints []struct {
			Port      string `json:"port"`
			Path      string `json:"path"`
			Scheme    string `json:"scheme"`
			TLSConfig *struct {
				ServerName string `json:"serverName"`
				CA         struct {
					Secret *struct {
						Name string `json:"name"`
						Key  string `json:"key"`
					} `json:"secret"`
				} `json:"ca"`
			} `json:"tlsConfig"`
		} `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

func checkPodMonitor(t *testing.T, b build, o object, podLabels labels.Set) {
	t.Helper()
	var pm podMonitor
	decodeLoose(t, o, &pm)
	if o.APIVersion != "monitoring.coreos.com/v1" {
		t.Errorf("%s: PodMonitor apiVersion %s", b.Name, o.APIVersion)
	}
	if pm.Metadata.Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("%s: PodMonitor lacks the label release=kube-prometheus-stack", b.Name)
	}
	if pm.Spec.NamespaceSelector != nil && !slices.Equal(pm.Spec.NamespaceSelector.MatchNames, []string{"podflow"}) {
		t.Errorf("%s: PodMonitor looks in namespaces %v", b.Name, pm.Spec.NamespaceSelector.MatchNames)
	}
	if len(pm.Spec.Selector.MatchLabels) == 0 || !labels.SelectorFromSet(pm.Spec.Selector.MatchLabels).Matches(podLabels) {
		t.Errorf("%s: PodMonitor selector %v does not match the pods", b.Name, pm.Spec.Selector.MatchLabels)
	}
	// The job label must read "podflow", the job the rules select.
	if pm.Spec.JobLabel == "" || podLabels[pm.Spec.JobLabel] != "podflow" {
		t.Errorf("%s: PodMonitor jobLabel %q does not yield job=podflow", b.Name, pm.Spec.JobLabel)
	}
	// Protobuf carries the flow counters' created timestamps.
	if len(pm.Spec.ScrapeProtocols) == 0 || pm.Spec.ScrapeProtocols[0] != "PrometheusProto" {
		t.Errorf("%s: PodMonitor scrapeProtocols %v do not prefer PrometheusProto", b.Name, pm.Spec.ScrapeProtocols)
	}
	if len(pm.Spec.PodMetricsEndpoints) != 1 {
		t.Fatalf("%s: PodMonitor endpoints %d", b.Name, len(pm.Spec.PodMetricsEndpoints))
	}
	ep := pm.Spec.PodMetricsEndpoints[0]
	if ep.Port != "metrics" || ep.Path != "/metrics" {
		t.Errorf("%s: PodMonitor endpoint %s%s", b.Name, ep.Port, ep.Path)
	}
	if b.has("tls") {
		if ep.Scheme != "https" || ep.TLSConfig == nil || ep.TLSConfig.CA.Secret == nil ||
			ep.TLSConfig.CA.Secret.Name != "podflow-tls" || ep.TLSConfig.ServerName == "" {
			t.Errorf("%s: PodMonitor must scrape https and verify against podflow-tls", b.Name)
		}
	} else if ep.Scheme != "http" || ep.TLSConfig != nil {
		t.Errorf("%s: PodMonitor scheme %q without the tls component", b.Name, ep.Scheme)
	}
}
