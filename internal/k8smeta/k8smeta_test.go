package k8smeta

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/otas/otas-sniff/forwarder"
)

const node = "node-a"

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// pod builds a pod on node created age seconds after epoch; ips may be empty.
func pod(ns, name string, age int, ips ...string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:         ns,
			Name:              name,
			UID:               types.UID(ns + "/" + name + "/" + time.Duration(age).String()),
			CreationTimestamp: metav1.NewTime(epoch.Add(time.Duration(age) * time.Second)),
			Labels:            map[string]string{"app": name + "-app"},
			ManagedFields:     []metav1.ManagedFieldsEntry{{Manager: "kubelet"}},
		},
		Spec:   corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "x"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	setIPs(p, ips...)
	return p
}

func setIPs(p *corev1.Pod, ips ...string) {
	p.Status.PodIPs = nil
	p.Status.PodIP = ""
	for _, ip := range ips {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	if len(ips) > 0 {
		p.Status.PodIP = ips[0]
	}
}

// harness is a Resolver over a fake clientset whose watch is known to be open, so
// that objects created by a test are not lost between the list and the watch.
type harness struct {
	t        *testing.T
	client   *fake.Clientset
	r        *Resolver
	mu       sync.Mutex
	selector string
}

func newHarness(t *testing.T, initial ...runtime.Object) *harness {
	t.Helper()
	h := &harness{t: t, client: fake.NewClientset(initial...)}
	watching := make(chan struct{})
	var once sync.Once
	h.client.PrependReactor("list", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		h.mu.Lock()
		h.selector = a.(k8stesting.ListAction).GetListRestrictions().Fields.String()
		h.mu.Unlock()
		return false, nil, nil
	})
	h.client.PrependWatchReactor("pods", func(a k8stesting.Action) (bool, watch.Interface, error) {
		ns := a.GetNamespace()
		w, err := h.client.Tracker().Watch(a.GetResource(), ns)
		if err != nil {
			return false, nil, err
		}
		once.Do(func() { close(watching) })
		return true, w, nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := New(context.Background(), h.client, node, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(r.Stop)
	select {
	case <-watching:
	case <-ctx.Done():
		t.Fatal("the informer never opened its watch")
	}
	h.r = r
	return h
}

func (h *harness) create(p *corev1.Pod) {
	h.t.Helper()
	if _, err := h.client.CoreV1().Pods(p.Namespace).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		h.t.Fatalf("create %s/%s: %v", p.Namespace, p.Name, err)
	}
}

func (h *harness) update(p *corev1.Pod) {
	h.t.Helper()
	if _, err := h.client.CoreV1().Pods(p.Namespace).Update(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		h.t.Fatalf("update %s/%s: %v", p.Namespace, p.Name, err)
	}
}

func (h *harness) delete(p *corev1.Pod) {
	h.t.Helper()
	if err := h.client.CoreV1().Pods(p.Namespace).Delete(context.Background(), p.Name, metav1.DeleteOptions{}); err != nil {
		h.t.Fatalf("delete %s/%s: %v", p.Namespace, p.Name, err)
	}
}

// want waits until ip resolves to ns/name, or to nothing when name is empty.
func (h *harness) want(ip, ns, name string) {
	h.t.Helper()
	addr := netip.MustParseAddr(ip)
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, ok := h.r.Lookup(addr)
		if name == "" && !ok {
			return
		}
		if ok && got.Namespace == ns && got.Name == name {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("Lookup(%s) = %+v, %v; want %s/%s", ip, got, ok, ns, name)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNewRejectsBadInput(t *testing.T) {
	if _, err := New(context.Background(), fake.NewClientset(), "", nil); err == nil {
		t.Error("empty node name accepted")
	}
	if _, err := New(context.Background(), nil, node, nil); err == nil {
		t.Error("nil client accepted")
	}
}

func TestNewFailsWhenContextEndsBeforeSync(t *testing.T) {
	client := fake.NewClientset()
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	client.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		<-block
		return false, nil, nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := New(ctx, client, node, nil); err == nil {
		t.Fatal("New returned without the pod list")
	}
}

func TestInitialListAndFieldSelector(t *testing.T) {
	h := newHarness(t, pod("shop", "api", 1, "10.1.0.5", "fd00::5"))
	h.want("10.1.0.5", "shop", "api")
	h.want("fd00::5", "shop", "api")
	got, _ := h.r.Lookup(netip.MustParseAddr("::ffff:10.1.0.5"))
	if got.Name != "api" || got.App != "api-app" {
		t.Errorf("IPv4-mapped lookup = %+v", got)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.selector != "spec.nodeName="+node {
		t.Errorf("pods listed with field selector %q", h.selector)
	}
}

func TestPodAddedChangedDeleted(t *testing.T) {
	h := newHarness(t)
	p := pod("shop", "api", 1)
	p.Status.Phase = corev1.PodPending
	h.create(p)
	h.want("10.1.0.7", "", "")

	// The IP arrives in a status update after the pod was scheduled.
	p.Status.Phase = corev1.PodRunning
	setIPs(p, "10.1.0.7")
	h.update(p)
	h.want("10.1.0.7", "shop", "api")

	// A changed IP moves the entry.
	setIPs(p, "10.1.0.8")
	h.update(p)
	h.want("10.1.0.8", "shop", "api")
	h.want("10.1.0.7", "", "")

	// A finished pod's IP is free for the next pod.
	p.Status.Phase = corev1.PodSucceeded
	h.update(p)
	h.want("10.1.0.8", "", "")

	p.Status.Phase = corev1.PodRunning
	h.update(p)
	h.want("10.1.0.8", "shop", "api")
	h.delete(p)
	h.want("10.1.0.8", "", "")
}

func TestIPReuse(t *testing.T) {
	old := pod("shop", "api-old", 1, "10.1.0.9")
	h := newHarness(t, old)
	h.want("10.1.0.9", "shop", "api-old")

	// The new pod's add arrives before the old pod's delete.
	h.create(pod("shop", "api-new", 2, "10.1.0.9"))
	h.want("10.1.0.9", "shop", "api-new")

	// A late status update of the old pod does not take the IP back.
	old.Labels["x"] = "y"
	h.update(old)
	time.Sleep(50 * time.Millisecond)
	h.want("10.1.0.9", "shop", "api-new")

	// The stale delete removes only the old pod's claim.
	h.delete(old)
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.r.mu.RLock()
		n := len(h.r.pods)
		h.r.mu.RUnlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("index holds %d pods after the delete, want 1", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.want("10.1.0.9", "shop", "api-new")
}

// The handlers on their own, in the order a relisting informer can deliver them.
func TestStaleDeleteTombstone(t *testing.T) {
	r := &Resolver{node: node, pods: map[types.UID]*podRecord{}, claims: map[netip.Addr][]*podRecord{}}
	oldPod := pod("a", "old", 1, "10.2.0.1")
	newPod := pod("b", "new", 2, "10.2.0.1")
	r.upsert(oldPod)
	r.upsert(newPod)
	r.remove(cache.DeletedFinalStateUnknown{Key: "a/old", Obj: oldPod})
	if got, ok := r.Lookup(netip.MustParseAddr("10.2.0.1")); !ok || got.Name != "new" {
		t.Fatalf("after stale delete: %+v, %v", got, ok)
	}
	r.remove(newPod)
	if got, ok := r.Lookup(netip.MustParseAddr("10.2.0.1")); ok {
		t.Fatalf("after both deletes: %+v", got)
	}
	if len(r.pods) != 0 || len(r.claims) != 0 {
		t.Fatalf("index not empty: %d pods, %d ips", len(r.pods), len(r.claims))
	}
	r.remove("not a pod")
}

func TestHostNetworkAndOtherNodesSkipped(t *testing.T) {
	hostNet := pod("kube-system", "kube-proxy", 1, "192.0.2.10")
	hostNet.Spec.HostNetwork = true
	elsewhere := pod("shop", "db", 1, "10.9.0.3")
	elsewhere.Spec.NodeName = "node-b"
	h := newHarness(t, hostNet, elsewhere)
	h.create(pod("shop", "marker", 3, "10.1.0.99"))
	h.want("10.1.0.99", "shop", "marker")
	h.want("192.0.2.10", "", "")
	h.want("10.9.0.3", "", "")

	// A pod that moves away from this node (a stale cache, a test double) is dropped.
	m := pod("shop", "marker", 3, "10.1.0.99")
	m.Spec.NodeName = "node-b"
	h.update(m)
	h.want("10.1.0.99", "", "")
}

func TestEnrich(t *testing.T) {
	srv := pod("shop", "api", 1, "10.1.0.5", "fd00::5")
	srv.Labels = map[string]string{"app": "legacy", "app.kubernetes.io/name": "checkout"}
	cli := pod("web", "frontend", 1, "10.1.0.6")
	cli.Labels = nil
	h := newHarness(t, srv, cli)
	h.want("10.1.0.6", "web", "frontend")

	ev := &forwarder.Event{Metadata: forwarder.Metadata{Client: "10.1.0.6:41000", Server: "10.1.0.5:8000"}}
	h.r.Enrich(ev)
	wantServer := map[string]any{"namespace": "shop", "name": "api", "app": "checkout"}
	wantClient := map[string]any{"namespace": "web", "name": "frontend"}
	if !equalMap(ev.Metadata.Extra[ExtraServerPod], wantServer) {
		t.Errorf("server_pod = %#v", ev.Metadata.Extra[ExtraServerPod])
	}
	if !equalMap(ev.Metadata.Extra[ExtraClientPod], wantClient) {
		t.Errorf("client_pod = %#v", ev.Metadata.Extra[ExtraClientPod])
	}

	ev = &forwarder.Event{Metadata: forwarder.Metadata{
		Client: "203.0.113.9:5000", Server: "[fd00::5]:8000",
		Extra: map[string]any{"path_template": "/x"},
	}}
	h.r.Enrich(ev)
	if _, ok := ev.Metadata.Extra[ExtraClientPod]; ok {
		t.Error("an outside client was named")
	}
	if !equalMap(ev.Metadata.Extra[ExtraServerPod], wantServer) {
		t.Errorf("IPv6 server_pod = %#v", ev.Metadata.Extra[ExtraServerPod])
	}
	if ev.Metadata.Extra["path_template"] != "/x" {
		t.Error("existing extra field lost")
	}

	ev = &forwarder.Event{Metadata: forwarder.Metadata{Client: "garbage", Server: "198.51.100.1:80"}}
	h.r.Enrich(ev)
	if ev.Metadata.Extra != nil {
		t.Errorf("unknown ends added extra: %#v", ev.Metadata.Extra)
	}
	h.r.Enrich(nil)
}

func equalMap(got any, want map[string]any) bool {
	m, ok := got.(map[string]any)
	if !ok || len(m) != len(want) {
		return false
	}
	for k, v := range want {
		if m[k] != v {
			return false
		}
	}
	return true
}

func TestParseEndpoint(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.1:80":          "10.0.0.1",
		"[fd00::1]:443":        "fd00::1",
		"10.0.0.2":             "10.0.0.2",
		"[::ffff:10.0.0.3]:80": "10.0.0.3",
	} {
		got, ok := parseEndpoint(in)
		if !ok || got != netip.MustParseAddr(want) {
			t.Errorf("parseEndpoint(%q) = %v, %v", in, got, ok)
		}
	}
	for _, in := range []string{"", "host:80", "10.0.0.1:x"} {
		if _, ok := parseEndpoint(in); ok {
			t.Errorf("parseEndpoint(%q) accepted", in)
		}
	}
}

func TestSlimPodKeepsWhatTheIndexReads(t *testing.T) {
	p := pod("shop", "api", 1, "10.1.0.5")
	out, err := slimPod(p)
	if err != nil {
		t.Fatal(err)
	}
	s := out.(*corev1.Pod)
	if len(s.ManagedFields) != 0 || len(s.Spec.Containers) != 0 {
		t.Error("slim pod kept fields the index never reads")
	}
	if s.UID != p.UID || s.Spec.NodeName != node || s.Status.PodIP != "10.1.0.5" || appLabel(s.Labels) != "api-app" {
		t.Errorf("slim pod lost fields: %+v", s)
	}
	if got, _ := slimPod("x"); got != "x" {
		t.Error("non-pod changed")
	}
}
