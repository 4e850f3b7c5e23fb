package kube

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"

	"github.com/podflow/podflow/exporter/internal/flow"
	"github.com/podflow/podflow/exporter/internal/networks"
)

// Config configures a Source.
type Config struct {
	// PodCIDRs and ServiceCIDRs are the cluster's address ranges. An
	// address inside them that no object names is Unknown. Without
	// PodCIDRs, the nodes' spec.podCIDRs are used.
	PodCIDRs, ServiceCIDRs []netip.Prefix
	// Networks names addresses outside the cluster; nil (no networks
	// file) names them private or internet.
	Networks *networks.Table
	// Forget is called DeletionGrace after a pod (or Service, or node) is
	// deleted, with the endpoint whose series must go. It is called from
	// a timer goroutine. A deleted pod's addresses keep naming it for
	// DeletionGrace, unless another object claims them, so that what is
	// counted late still has its name; they are Unknown before Forget.
	Forget        func(flow.Endpoint)
	DeletionGrace time.Duration
	// PodLabels is true when series carry pod names (--metrics.labels
	// source_pod or destination_pod): deleted pods are then forgotten one
	// by one, and their workload once none of its pods lives.
	PodLabels bool
	// Clock defaults to the real clock.
	Clock  clock.WithDelayedExecution
	Logger *slog.Logger
}

// The resources podflow watches, in the order of Stats and of the
// resource label values.
const (
	ResPods = iota
	ResServices
	ResNodes
	ResReplicaSets
	ResJobs
	numResources
)

var resourceNames = [numResources]string{"pods", "services", "nodes", "replicasets", "jobs"}

// ResourceStats is the health of one informer.
type ResourceStats struct {
	Resource string
	Synced   bool
	// Errors counts failed lists and watches.
	Errors uint64
}

// Stats is the health of every informer, in the order of the Res constants.
type Stats struct {
	Resources [numResources]ResourceStats
}

var (
	gvrReplicaSets = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}
	gvrJobs        = schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "jobs"}
)

// Source names addresses from the Kubernetes API.
type Source struct {
	cfg    Config
	logger *slog.Logger
	clk    clock.WithDelayedExecution

	informers [numResources]cache.SharedIndexInformer
	errors    [numResources]atomic.Uint64
	synced    atomic.Bool
	stopped   atomic.Bool

	mu sync.RWMutex
	ix index

	pendingMu sync.Mutex
	pending   map[flow.Endpoint]*pendingForget
	// tombstoneTimer is true while a timer will expire tombstones.
	tombstoneTimer bool
}

// NewWithClients builds a Source over the given clients. Nothing is
// listed until Run.
func NewWithClients(c *Config, core kubernetes.Interface, meta metadata.Interface) (*Source, error) {
	if core == nil || meta == nil {
		return nil, errors.New("kube: nil client")
	}
	cfg := *c
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	s := &Source{cfg: cfg, logger: cfg.Logger, clk: cfg.Clock, ix: newIndex(cfg.PodCIDRs, cfg.ServiceCIDRs),
		pending: make(map[flow.Endpoint]*pendingForget)}

	pods, services, nodes := core.CoreV1().Pods(metav1.NamespaceAll), core.CoreV1().Services(metav1.NamespaceAll), core.CoreV1().Nodes()
	rsets, jobs := meta.Resource(gvrReplicaSets).Namespace(metav1.NamespaceAll), meta.Resource(gvrJobs).Namespace(metav1.NamespaceAll)
	s.informers[ResPods] = s.newInformer(ResPods, &corev1.Pod{}, core,
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return pods.List(ctx, o) }, pods.Watch)
	s.informers[ResServices] = s.newInformer(ResServices, &corev1.Service{}, core,
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return services.List(ctx, o) }, services.Watch)
	s.informers[ResNodes] = s.newInformer(ResNodes, &corev1.Node{}, core,
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return nodes.List(ctx, o) }, nodes.Watch)
	s.informers[ResReplicaSets] = s.newInformer(ResReplicaSets, &metav1.PartialObjectMetadata{}, meta,
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return rsets.List(ctx, o) }, rsets.Watch)
	s.informers[ResJobs] = s.newInformer(ResJobs, &metav1.PartialObjectMetadata{}, meta,
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return jobs.List(ctx, o) }, jobs.Watch)

	transforms := [numResources]cache.TransformFunc{transformPod, transformService, transformNode, transformOwner, transformOwner}
	handlers := [numResources]cache.ResourceEventHandlerFuncs{
		{AddFunc: s.onPod, UpdateFunc: func(_, o any) { s.onPod(o) }, DeleteFunc: s.onPodDelete},
		{AddFunc: s.onService, UpdateFunc: func(_, o any) { s.onService(o) }, DeleteFunc: s.onServiceDelete},
		{AddFunc: s.onNode, UpdateFunc: func(_, o any) { s.onNode(o) }, DeleteFunc: s.onNodeDelete},
		s.ownerHandlers(func(ix *index) map[nsName]ownerRef { return ix.rsOwner }),
		s.ownerHandlers(func(ix *index) map[nsName]ownerRef { return ix.jobOwner }),
	}
	for r, inf := range s.informers {
		if err := inf.SetTransform(transforms[r]); err != nil {
			return nil, err
		}
		res := resourceNames[r]
		// Failed requests are counted where they are made (newInformer):
		// the reflector retries a refused watch by itself and reports
		// nothing here. What does reach here ends a watch early.
		if err := inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
			s.logger.Debug("Kubernetes watch ended; relisting", "resource", res, "err", err)
		}); err != nil {
			return nil, err
		}
		if _, err := inf.AddEventHandler(handlers[r]); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// newInformer returns an informer without indexers (the address index is
// the only lookup structure) and without resync (the index changes on
// events only), whose every failed list or watch request is counted and
// logged.
func (s *Source) newInformer(r int, example runtime.Object, client any,
	listFn func(context.Context, metav1.ListOptions) (runtime.Object, error),
	watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error),
) cache.SharedIndexInformer {
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			obj, err := listFn(ctx, o)
			s.requestFailed(ctx, r, "list", err)
			return obj, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			w, err := watchFn(ctx, o)
			s.requestFailed(ctx, r, "watch", err)
			return w, err
		},
	}
	return cache.NewSharedIndexInformerWithOptions(cache.ToListWatcherWithWatchListSemantics(lw, client), example,
		cache.SharedIndexInformerOptions{Indexers: cache.Indexers{}, ObjectDescription: resourceNames[r]})
}

func (s *Source) requestFailed(ctx context.Context, r int, verb string, err error) {
	if err == nil || ctx.Err() != nil {
		return
	}
	s.errors[r].Add(1)
	s.logger.Warn("Kubernetes list/watch failed; answering from the last known state", "resource", resourceNames[r], "verb", verb, "err", err)
}

// Run lists and watches until ctx is done. It logs once every informer
// has synced; Synced reports it.
func (s *Source) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, inf := range s.informers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inf.RunWithContext(ctx)
		}()
	}
	start := time.Now()
	syncs := make([]cache.InformerSynced, 0, numResources)
	for _, inf := range s.informers {
		syncs = append(syncs, inf.HasSynced)
	}
	if cache.WaitForCacheSync(ctx.Done(), syncs...) {
		s.synced.Store(true)
		s.mu.RLock()
		pods, addrs := len(s.ix.pods), len(s.ix.addrs)
		s.mu.RUnlock()
		s.logger.Info("Kubernetes caches synced", "pods", pods, "addresses", addrs, "duration", time.Since(start).Round(time.Millisecond))
	}
	<-ctx.Done()
	s.stopped.Store(true)
	wg.Wait()
	return nil
}

// Synced reports whether every informer has listed once. Later list or
// watch failures do not clear it: the last known state keeps answering.
func (s *Source) Synced() bool {
	return s.synced.Load()
}

// Stats returns the informers' health.
func (s *Source) Stats() Stats {
	var st Stats
	for r := range numResources {
		st.Resources[r] = ResourceStats{
			Resource: resourceNames[r],
			Synced:   s.informers[r].HasSynced(),
			Errors:   s.errors[r].Load(),
		}
	}
	return st
}

// Lookup returns the endpoint an address names. It reports false for an
// address inside the cluster's CIDRs that no object names: the endpoint
// is then of kind Unknown, with Node set when the address lies in a
// node's pod CIDR. An address outside the CIDRs is a network. It does not
// allocate.
func (s *Source) Lookup(a netip.Addr) (flow.Endpoint, bool) {
	a = a.Unmap()
	s.mu.RLock()
	if ep := s.ix.addrs[a]; ep != nil {
		e := *ep
		s.mu.RUnlock()
		return e, true
	}
	cidrs, nodeCIDRs := s.ix.inCluster, s.ix.nodeCIDRs
	s.mu.RUnlock()
	for _, p := range cidrs {
		if p.Contains(a) {
			ep := flow.Endpoint{Kind: flow.KindUnknown}
			for _, nc := range nodeCIDRs {
				if nc.prefix.Contains(a) {
					ep.Node = nc.node
					break
				}
			}
			return ep, false
		}
	}
	return flow.Endpoint{Kind: flow.KindNetwork, Workload: s.classify(a)}, true
}

// Service returns the Service a client reached by dialling addr and port
// before DNAT: a ClusterIP's, a load balancer ingress address's, or a
// node port's on a node's address. It does not allocate.
func (s *Source) Service(addr netip.Addr, port uint16, proto flow.Protocol) (flow.Endpoint, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	svc, ok := s.ix.service(addr.Unmap(), port, proto)
	if !ok {
		return flow.Endpoint{}, false
	}
	return svc.ep, true
}

func (s *Source) classify(a netip.Addr) string { return s.cfg.Networks.Classify(a) }

func (s *Source) onPod(obj any) {
	p, ok := obj.(*podInfo)
	if !ok {
		return
	}
	s.mu.Lock()
	s.ix.setPod(p)
	s.mu.Unlock()
}

func (s *Source) onPodDelete(obj any) {
	obj, key := unwrapDeleted(obj)
	k, uid := keyToNsName(key), ""
	if p, ok := obj.(*podInfo); ok {
		k, uid = nsName{p.namespace, p.name}, string(p.uid)
	}
	var until time.Time
	if s.cfg.DeletionGrace > 0 {
		until = s.clk.Now().Add(s.cfg.DeletionGrace)
	}
	s.mu.Lock()
	st := s.ix.deletePod(k, uid, until)
	s.mu.Unlock()
	if st != nil && !until.IsZero() {
		s.scheduleTombstoneExpiry()
	}
	if st != nil {
		s.schedulePodForget(st)
	}
}

func (s *Source) onService(obj any) {
	if svc, ok := obj.(*serviceInfo); ok {
		s.mu.Lock()
		s.ix.setService(svc)
		s.mu.Unlock()
	}
}

func (s *Source) onServiceDelete(obj any) {
	obj, key := unwrapDeleted(obj)
	k := keyToNsName(key)
	if svc, ok := obj.(*serviceInfo); ok {
		k = nsName{svc.namespace, svc.name}
	}
	s.mu.Lock()
	svc := s.ix.deleteService(k)
	s.mu.Unlock()
	if svc != nil {
		s.scheduleForget(func(ix *index) bool { _, ok := ix.services[k]; return !ok },
			flow.Endpoint{Namespace: svc.namespace, Workload: svc.name, Kind: flow.KindService})
	}
}

func (s *Source) onNode(obj any) {
	if n, ok := obj.(*nodeInfo); ok {
		s.mu.Lock()
		s.ix.setNode(n)
		s.mu.Unlock()
	}
}

func (s *Source) onNodeDelete(obj any) {
	obj, key := unwrapDeleted(obj)
	name := key
	if n, ok := obj.(*nodeInfo); ok {
		name = n.name
	}
	s.mu.Lock()
	n := s.ix.deleteNode(name)
	s.mu.Unlock()
	if n != nil {
		s.scheduleForget(func(ix *index) bool { _, ok := ix.nodes[name]; return !ok }, nodeEndpoint(n.name))
	}
}

func (s *Source) ownerHandlers(table func(*index) map[nsName]ownerRef) cache.ResourceEventHandlerFuncs {
	set := func(obj any) {
		if o, ok := obj.(*ownerInfo); ok {
			s.mu.Lock()
			s.ix.setOwner(table(&s.ix), o)
			s.mu.Unlock()
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    set,
		UpdateFunc: func(_, o any) { set(o) },
		DeleteFunc: func(obj any) {
			obj, key := unwrapDeleted(obj)
			k := keyToNsName(key)
			if o, ok := obj.(*ownerInfo); ok {
				k = nsName{o.namespace, o.name}
			}
			s.mu.Lock()
			s.ix.deleteOwner(table(&s.ix), k)
			s.mu.Unlock()
		},
	}
}

func keyToNsName(key string) nsName {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nsName{}
	}
	return nsName{ns, name}
}
