package flow

// Kind is what an endpoint is: the owner kind of a pod, a node, a Service
// that was not translated, a named network outside the cluster, or an
// in-cluster address that no source of identity knows.
type Kind uint8

// Kinds, in the vocabulary of the kind labels.
const (
	KindUnknown Kind = iota
	KindPod
	KindDeployment
	KindStatefulSet
	KindDaemonSet
	KindReplicaSet
	KindJob
	KindCronJob
	KindNode
	KindService
	KindNetwork
	numKinds
)

var kindNames = [numKinds]string{
	KindUnknown:     "Unknown",
	KindPod:         "Pod",
	KindDeployment:  "Deployment",
	KindStatefulSet: "StatefulSet",
	KindDaemonSet:   "DaemonSet",
	KindReplicaSet:  "ReplicaSet",
	KindJob:         "Job",
	KindCronJob:     "CronJob",
	KindNode:        "Node",
	KindService:     "Service",
	KindNetwork:     "Network",
}

// String returns the label value of the kind.
func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return kindNames[KindUnknown]
}

// Label returns the kind as its label tells it: an unknown value is
// KindUnknown, so that a key never holds two kinds with one label.
func (k Kind) Label() Kind {
	if k < numKinds {
		return k
	}
	return KindUnknown
}

// ParseKind is the inverse of String. It reports false for a name that is
// not a kind.
func ParseKind(s string) (Kind, bool) {
	for k, name := range kindNames {
		if name == s {
			return Kind(k), true
		}
	}
	return KindUnknown, false
}
