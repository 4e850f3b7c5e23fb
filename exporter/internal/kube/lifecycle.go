package kube

import (
	"github.com/podflow/podflow/exporter/internal/flow"
)

// Series lifecycle: a deleted pod's series go DeletionGrace after its
// deletion, so that the last packets still counted under its name are
// scraped once more. Series name a workload unless pod labels are on, so
// at workload granularity a workload is forgotten only when none of its
// pods lives any more; with pod labels, the pod is forgotten too.

// schedulePodForget arranges the Forget calls for a deleted pod.
func (s *Source) schedulePodForget(st *podState) {
	if s.cfg.Forget == nil {
		return
	}
	pod := st.ep
	pod.Node = ""
	workload := pod
	workload.Pod = ""
	name := nsName{pod.Namespace, pod.Pod}
	if s.cfg.PodLabels {
		// A pod re-created under the same name (a StatefulSet's) shares
		// the series; they stay.
		s.scheduleForget(func(ix *index) bool { _, ok := ix.pods[name]; return !ok }, pod)
	}
	wk := keyOf(workload)
	s.scheduleForget(func(ix *index) bool { return ix.workloads[wk] == 0 }, workload)
}

// scheduleForget calls Forget(ep) after the grace period if gone still
// holds then.
func (s *Source) scheduleForget(gone func(*index) bool, ep flow.Endpoint) {
	if s.cfg.Forget == nil {
		return
	}
	s.clk.AfterFunc(s.cfg.DeletionGrace, func() {
		if s.stopped.Load() {
			return
		}
		s.mu.RLock()
		ok := gone(&s.ix)
		s.mu.RUnlock()
		if ok {
			s.cfg.Forget(ep)
		}
	})
}
