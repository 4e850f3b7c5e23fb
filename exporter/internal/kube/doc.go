// Package kube names the addresses podflow sees from the Kubernetes API:
// pods (through their owner chain), Services, nodes, and the networks
// outside the cluster.
//
// Informers list and watch cluster-wide and strip every object to the
// few fields podflow reads before it reaches the cache, so memory per pod
// stays small. An address index, updated on each event, answers Lookup on
// the packet path without allocating. Pod deletions are turned into
// Forget calls after a grace period, so that series of pods and workloads
// that are gone leave the exposition on every node, for both sides of a
// pair.
//
// It is the only package of podflow that imports client-go.
package kube
