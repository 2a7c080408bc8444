// Package k8smeta names the Kubernetes pods behind the addresses the sniffer sees
// on a node, so that an event says which workload called which, not just which IP.
package k8smeta

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/otas/otas-sniff/forwarder"
)

// Keys under Event.Metadata.Extra that Enrich sets.
const (
	ExtraClientPod = "client_pod"
	ExtraServerPod = "server_pod"
)

// Pod is what an event learns about the pod at one end of an exchange.
type Pod struct {
	Namespace string
	Name      string
	// App is the pod's app.kubernetes.io/name label, or its app label when that
	// is missing; empty when it has neither.
	App string
}

// podRecord is one pod as the index holds it.
type podRecord struct {
	uid     types.UID
	pod     Pod
	created time.Time
	ips     []netip.Addr
}

// Resolver keeps an index from pod IP to pod for the pods scheduled on one node.
// It is safe for concurrent use.
type Resolver struct {
	node    string
	log     *slog.Logger
	factory informers.SharedInformerFactory
	cancel  context.CancelFunc

	mu   sync.RWMutex
	pods map[types.UID]*podRecord
	// claims lists every pod that says it has an IP: during IP reuse a deleted
	// pod and its successor can both claim one until the old delete arrives.
	claims map[netip.Addr][]*podRecord
}

// NewClient returns a clientset from kubeconfig, or from the in-cluster service
// account when kubeconfig is empty (the DaemonSet case).
func NewClient(kubeconfig string) (kubernetes.Interface, error) {
	var (
		cfg *rest.Config
		err error
	)
	if kubeconfig == "" {
		cfg, err = rest.InClusterConfig()
	} else {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	if err != nil {
		return nil, fmt.Errorf("k8smeta: kubernetes client config: %w", err)
	}
	cfg.UserAgent = "otas-sniff"
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("k8smeta: kubernetes client: %w", err)
	}
	return cs, nil
}

// New starts watching the pods on nodeName and returns once the first list is
// indexed. The watch runs until ctx is done or Stop is called.
func New(ctx context.Context, client kubernetes.Interface, nodeName string, log *slog.Logger) (*Resolver, error) {
	if client == nil {
		return nil, errors.New("k8smeta: nil kubernetes client")
	}
	if nodeName == "" {
		return nil, errors.New("k8smeta: node name is empty")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	runCtx, cancel := context.WithCancel(ctx)
	r := &Resolver{
		node:   nodeName,
		log:    log.With("component", "k8smeta", "node", nodeName),
		cancel: cancel,
		pods:   map[types.UID]*podRecord{},
		claims: map[netip.Addr][]*podRecord{},
	}
	// The server filters by node so that a DaemonSet pod on a 5,000-node cluster
	// lists its own ~100 pods, not every pod; RBAC cannot express this, the query can.
	selector := fields.OneTermEqualSelector("spec.nodeName", nodeName).String()
	r.factory = informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = selector }))
	inf := r.factory.Core().V1().Pods().Informer()
	// Slim pods before they are cached: managedFields, specs and statuses of a
	// node's pods would otherwise cost megabytes the index never reads.
	if err := inf.SetTransform(slimPod); err != nil {
		cancel()
		return nil, fmt.Errorf("k8smeta: pod transform: %w", err)
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { r.upsert(obj) },
		UpdateFunc: func(_, obj any) { r.upsert(obj) },
		DeleteFunc: r.remove,
	}); err != nil {
		cancel()
		return nil, fmt.Errorf("k8smeta: pod event handler: %w", err)
	}
	r.factory.Start(runCtx.Done())
	if !cache.WaitForCacheSync(runCtx.Done(), inf.HasSynced) {
		r.Stop()
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("k8smeta: waiting for the pod list: %w", err)
		}
		return nil, errors.New("k8smeta: pod list did not sync")
	}
	r.mu.RLock()
	n := len(r.pods)
	r.mu.RUnlock()
	r.log.Info("watching pods", "pods", n)
	return r, nil
}

// Stop ends the watch and waits for its goroutines. The index keeps its last state.
func (r *Resolver) Stop() {
	r.cancel()
	r.factory.Shutdown()
}

// Lookup returns the pod that has ip, if any pod on the node has it.
func (r *Resolver) Lookup(ip netip.Addr) (Pod, bool) {
	ip = ip.Unmap()
	r.mu.RLock()
	defer r.mu.RUnlock()
	rec := newest(r.claims[ip])
	if rec == nil {
		return Pod{}, false
	}
	return rec.pod, true
}

// Enrich names the client and server pods of ev in ev.Metadata.Extra; it fits
// forwarder.Options.Enrich. Ends that are not pods on this node stay unnamed.
func (r *Resolver) Enrich(ev *forwarder.Event) {
	if ev == nil {
		return
	}
	r.enrichEnd(&ev.Metadata.Extra, ExtraClientPod, ev.Metadata.Client)
	r.enrichEnd(&ev.Metadata.Extra, ExtraServerPod, ev.Metadata.Server)
}

func (r *Resolver) enrichEnd(extra *map[string]any, key, endpoint string) {
	ip, ok := parseEndpoint(endpoint)
	if !ok {
		return
	}
	pod, ok := r.Lookup(ip)
	if !ok {
		return
	}
	if *extra == nil {
		*extra = map[string]any{}
	}
	m := map[string]any{"namespace": pod.Namespace, "name": pod.Name}
	if pod.App != "" {
		m["app"] = pod.App
	}
	(*extra)[key] = m
}

// parseEndpoint reads the address of "ip:port", "[v6]:port" or a bare IP.
func parseEndpoint(s string) (netip.Addr, bool) {
	if s == "" {
		return netip.Addr{}, false
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	return netip.Addr{}, false
}

// upsert indexes a pod that was added or changed.
func (r *Resolver) upsert(obj any) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	// The server applies the node selector; checking again keeps the index right
	// if a pod is moved by a stale cache or a client that ignores field selectors.
	if p.Spec.NodeName != r.node {
		r.forget(p.UID)
		return
	}
	ips := podIPs(p)
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.pods[p.UID]
	if rec == nil {
		rec = &podRecord{uid: p.UID}
		r.pods[p.UID] = rec
	}
	rec.pod = Pod{Namespace: p.Namespace, Name: p.Name, App: appLabel(p.Labels)}
	rec.created = p.CreationTimestamp.Time
	for _, old := range rec.ips {
		r.unclaim(old, rec)
	}
	rec.ips = ips
	for _, ip := range ips {
		r.claims[ip] = append(r.claims[ip], rec)
	}
	if len(ips) == 0 {
		// A pod with no IP (pending, host network, finished) only costs memory.
		delete(r.pods, p.UID)
	}
}

// remove drops a deleted pod; only its own claims go, so a stale delete leaves
// the pod that now has the same IP named.
func (r *Resolver) remove(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	r.forget(p.UID)
}

func (r *Resolver) forget(uid types.UID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.pods[uid]
	if rec == nil {
		return
	}
	for _, ip := range rec.ips {
		r.unclaim(ip, rec)
	}
	delete(r.pods, uid)
}

// unclaim removes rec from the claimants of ip; the caller holds mu.
func (r *Resolver) unclaim(ip netip.Addr, rec *podRecord) {
	list := r.claims[ip]
	for i, c := range list {
		if c == rec {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(r.claims, ip)
		return
	}
	r.claims[ip] = list
}

// newest picks the most recently created claimant: an IP is only handed out again
// after its previous pod let go of it, so the younger pod is the live owner.
func newest(list []*podRecord) *podRecord {
	var best *podRecord
	for _, c := range list {
		if best == nil || c.created.After(best.created) ||
			(c.created.Equal(best.created) && c.uid > best.uid) {
			best = c
		}
	}
	return best
}

// podIPs returns the addresses a pod owns on the node's pod network.
func podIPs(p *corev1.Pod) []netip.Addr {
	// A host-network pod reports the node's IP: naming it would name every
	// host-network pod and the node itself after whichever came last.
	if p.Spec.HostNetwork {
		return nil
	}
	// A finished pod's sandbox is gone and its IP free for the next pod.
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return nil
	}
	var out []netip.Addr
	add := func(s string) {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return
		}
		a = a.Unmap()
		for _, have := range out {
			if have == a {
				return
			}
		}
		out = append(out, a)
	}
	for _, pip := range p.Status.PodIPs {
		add(pip.IP)
	}
	add(p.Status.PodIP)
	return out
}

// appLabel prefers the recommended label over the older convention.
func appLabel(labels map[string]string) string {
	if v := labels["app.kubernetes.io/name"]; v != "" {
		return v
	}
	return labels["app"]
}

// slimPod keeps only the fields the index reads.
func slimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	slim := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:              p.Name,
			Namespace:         p.Namespace,
			UID:               p.UID,
			ResourceVersion:   p.ResourceVersion,
			CreationTimestamp: p.CreationTimestamp,
			DeletionTimestamp: p.DeletionTimestamp,
		},
		Spec: corev1.PodSpec{NodeName: p.Spec.NodeName, HostNetwork: p.Spec.HostNetwork},
		Status: corev1.PodStatus{
			Phase:  p.Status.Phase,
			PodIP:  p.Status.PodIP,
			PodIPs: p.Status.PodIPs,
		},
	}
	// One label survives, under the name appLabel reads first.
	if app := appLabel(p.Labels); app != "" {
		slim.Labels = map[string]string{"app.kubernetes.io/name": app}
	}
	return slim, nil
}
