package kube

import (
	"testing"

	"github.com/podflow/podflow/exporter/internal/flow"
)

func TestOwnerChains(t *testing.T) {
	c := newCluster(t, Config{},
		replicaSet("shop", "web-5f7", ref("Deployment", "web")),
		job("batch", "report-2900", ref("CronJob", "report")),
		job("batch", "migrate"),
		pod("shop", "web-5f7-abc", "n1", []string{"10.244.1.10"}, owned("ReplicaSet", "web-5f7")),
		pod("batch", "report-2900-x", "n1", []string{"10.244.1.11"}, owned("Job", "report-2900")),
		pod("batch", "migrate-y", "n2", []string{"10.244.2.12"}, owned("Job", "migrate")),
		pod("data", "db-0", "n2", []string{"10.244.2.13"}, owned("StatefulSet", "db")),
		pod("kube-system", "agent-q", "n2", []string{"10.244.2.14"}, owned("DaemonSet", "agent")),
		pod("shop", "debug", "n1", []string{"10.244.1.15"}),
	)
	c.expect("10.244.1.10", flow.Endpoint{Namespace: "shop", Workload: "web", Kind: flow.KindDeployment, Pod: "web-5f7-abc", Node: "n1"}, true)
	c.expect("10.244.1.11", flow.Endpoint{Namespace: "batch", Workload: "report", Kind: flow.KindCronJob, Pod: "report-2900-x", Node: "n1"}, true)
	c.expect("10.244.2.12", flow.Endpoint{Namespace: "batch", Workload: "migrate", Kind: flow.KindJob, Pod: "migrate-y", Node: "n2"}, true)
	c.expect("10.244.2.13", flow.Endpoint{Namespace: "data", Workload: "db", Kind: flow.KindStatefulSet, Pod: "db-0", Node: "n2"}, true)
	c.expect("10.244.2.14", flow.Endpoint{Namespace: "kube-system", Workload: "agent", Kind: flow.KindDaemonSet, Pod: "agent-q", Node: "n2"}, true)
	c.expect("10.244.1.15", flow.Endpoint{Namespace: "shop", Workload: "debug", Kind: flow.KindPod, Pod: "debug", Node: "n1"}, true)
}
