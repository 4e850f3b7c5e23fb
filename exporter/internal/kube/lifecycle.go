package kube

import (
	"time"

	"github.com/podflow/podflow/exporter/internal/flow"
)

// Series lifecycle: a deleted pod's series go DeletionGrace after its
// deletion, so that the last packets still counted under its name are
// scraped once more. Series name a workload unless pod labels are on, so
// at workload granularity a workload is forgotten only when none of its
// pods lives any more; with pod labels, the pod is forgotten too.
//
// One timer runs per endpoint, however many of its pods go: a workload
// scaled from 300 pods to none is forgotten once (each Forget walks every
// series), DeletionGrace after its last pod went.

type pendingForget struct {
	last time.Time // the latest deletion that concerns the endpoint
	gone func(*index) bool
}

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

// scheduleForget calls Forget(ep) DeletionGrace after the latest call for
// ep, if gone holds then.
func (s *Source) scheduleForget(gone func(*index) bool, ep flow.Endpoint) {
	if s.cfg.Forget == nil {
		return
	}
	s.pendingMu.Lock()
	defer s.pendingMu.Unlock()
	if p, ok := s.pending[ep]; ok {
		p.last, p.gone = s.clk.Now(), gone
		return
	}
	s.pending[ep] = &pendingForget{last: s.clk.Now(), gone: gone}
	s.clk.AfterFunc(s.cfg.DeletionGrace, func() { go s.expire(ep) })
}

// scheduleTombstoneExpiry ends, DeletionGrace from now, the tombstones
// whose time is then up. One timer is pending at a time: when it fires, it
// sets the next for the oldest tombstone left.
func (s *Source) scheduleTombstoneExpiry() {
	s.pendingMu.Lock()
	defer s.pendingMu.Unlock()
	if s.tombstoneTimer {
		return
	}
	s.tombstoneTimer = true
	s.clk.AfterFunc(s.cfg.DeletionGrace, func() { go s.expireTombstones() })
}

// expireTombstones runs on its own goroutine, as expire does.
func (s *Source) expireTombstones() {
	s.pendingMu.Lock()
	defer s.pendingMu.Unlock()
	s.mu.Lock()
	now := s.clk.Now()
	s.ix.expireTombstones(now)
	var next time.Duration
	more := len(s.ix.tombstones) > 0
	if more {
		next = max(s.ix.tombstones[0].until.Sub(now), 0)
	}
	s.mu.Unlock()
	if !more || s.stopped.Load() {
		s.tombstoneTimer = false
		return
	}
	s.clk.AfterFunc(next, func() { go s.expireTombstones() })
}

// expire runs on its own goroutine: a fake clock calls timer functions
// with its lock held, and expire reads the clock.
func (s *Source) expire(ep flow.Endpoint) {
	if s.stopped.Load() {
		return
	}
	s.pendingMu.Lock()
	p := s.pending[ep]
	if p == nil {
		s.pendingMu.Unlock()
		return
	}
	if wait := s.cfg.DeletionGrace - s.clk.Since(p.last); wait > 0 {
		s.clk.AfterFunc(wait, func() { go s.expire(ep) })
		s.pendingMu.Unlock()
		return
	}
	delete(s.pending, ep)
	s.pendingMu.Unlock()

	// The tombstones of the deletions this call concerns end first, so
	// that no address names ep after Forget.
	s.mu.Lock()
	s.ix.expireTombstones(s.clk.Now())
	ok := p.gone(&s.ix)
	s.mu.Unlock()
	if ok {
		s.cfg.Forget(ep)
	}
}
