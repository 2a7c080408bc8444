// Package deploy_test checks the Kubernetes manifests and the Helm chart under
// deploy/: both decode strictly into the API types, keep the DaemonSet's least
// privilege settings, and describe the same deployment.
package deploy_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// object is one decoded manifest and where it came from.
type object struct {
	source string
	kind   string
	name   string
	obj    any
}

// kinds maps each kind the deployment may contain to its API version and type;
// any other kind is an error, so a typo cannot slip through as an unknown object.
var kinds = map[string]struct {
	apiVersion string
	newObj     func() any
}{
	"Namespace":          {"v1", func() any { return &corev1.Namespace{} }},
	"ServiceAccount":     {"v1", func() any { return &corev1.ServiceAccount{} }},
	"Secret":             {"v1", func() any { return &corev1.Secret{} }},
	"ConfigMap":          {"v1", func() any { return &corev1.ConfigMap{} }},
	"ClusterRole":        {"rbac.authorization.k8s.io/v1", func() any { return &rbacv1.ClusterRole{} }},
	"ClusterRoleBinding": {"rbac.authorization.k8s.io/v1", func() any { return &rbacv1.ClusterRoleBinding{} }},
	"DaemonSet":          {"apps/v1", func() any { return &appsv1.DaemonSet{} }},
}

// decodeAll splits a YAML stream into documents and decodes each strictly: an
// unknown or duplicated field fails, as it would with kubectl's server-side
// field validation.
func decodeAll(source string, data []byte) ([]object, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []object
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", source, i, err)
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", source, i, err)
		}
		if tm.Kind == "" && len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		k, ok := kinds[tm.Kind]
		if !ok {
			return nil, fmt.Errorf("%s: document %d: unexpected kind %q", source, i, tm.Kind)
		}
		if tm.APIVersion != k.apiVersion {
			return nil, fmt.Errorf("%s: %s has apiVersion %q, want %q", source, tm.Kind, tm.APIVersion, k.apiVersion)
		}
		obj := k.newObj()
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			return nil, fmt.Errorf("%s: %s: strict decode: %w", source, tm.Kind, err)
		}
		name := obj.(metav1.Object).GetName()
		if name == "" {
			return nil, fmt.Errorf("%s: %s without a name", source, tm.Kind)
		}
		out = append(out, object{source: source, kind: tm.Kind, name: name, obj: obj})
	}
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for line := range strings.SplitSeq(string(doc), "\n") {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.Bytes()
}

// deployment is the set of objects one install creates, one of each kind.
type deployment struct {
	namespace *corev1.Namespace // nil when the installer makes it
	sa        *corev1.ServiceAccount
	secret    *corev1.Secret // nil when an existing Secret is named
	config    *corev1.ConfigMap
	role      *rbacv1.ClusterRole        // nil without pod metadata
	binding   *rbacv1.ClusterRoleBinding // nil without pod metadata
	ds        *appsv1.DaemonSet
}

func collect(objs []object) (*deployment, error) {
	d := &deployment{}
	seen := map[string]string{}
	for _, o := range objs {
		if prev, dup := seen[o.kind]; dup {
			return nil, fmt.Errorf("two %ss: %s (%s) and %s (%s)", o.kind, prev, objs[0].source, o.name, o.source)
		}
		seen[o.kind] = o.name
		switch v := o.obj.(type) {
		case *corev1.Namespace:
			d.namespace = v
		case *corev1.ServiceAccount:
			d.sa = v
		case *corev1.Secret:
			d.secret = v
		case *corev1.ConfigMap:
			d.config = v
		case *rbacv1.ClusterRole:
			d.role = v
		case *rbacv1.ClusterRoleBinding:
			d.binding = v
		case *appsv1.DaemonSet:
			d.ds = v
		}
	}
	if d.ds == nil || d.config == nil || d.sa == nil {
		return nil, fmt.Errorf("missing DaemonSet, ConfigMap or ServiceAccount (have %v)", seen)
	}
	return d, nil
}

const (
	wantNamespace = "otas-sniff"
	spoolPath     = "/var/lib/otas-sniff"
	metricsPort   = 9090
	runAsUser     = int64(65532)
)

// checkDeployment asserts, field by field, what a least-privilege node sniffer
// needs; both the kustomize build and the chart must pass it.
func checkDeployment(t *testing.T, d *deployment) {
	t.Helper()
	checkNamespaced(t, d)
	if d.namespace != nil {
		if got := d.namespace.Labels["pod-security.kubernetes.io/enforce"]; got != "privileged" {
			t.Errorf("namespace Pod Security enforce label = %q, want privileged", got)
		}
	}
	if d.role != nil {
		checkRBAC(t, d)
	}
	if d.secret != nil {
		_, inData := d.secret.Data["OTAS_SDK_KEY"]
		_, inString := d.secret.StringData["OTAS_SDK_KEY"]
		if !inData && !inString {
			t.Error("Secret has no OTAS_SDK_KEY")
		}
	}
	for k := range d.config.Data {
		if !validEnvName(k) || !strings.HasPrefix(k, "OTAS_SNIFF_") {
			t.Errorf("ConfigMap key %q is not an OTAS_SNIFF_<FLAG> variable", k)
		}
	}
	checkDaemonSet(t, d)
}

func checkNamespaced(t *testing.T, d *deployment) {
	t.Helper()
	objs := []metav1.Object{d.sa, d.config, d.ds}
	if d.secret != nil {
		objs = append(objs, d.secret)
	}
	for _, o := range objs {
		if o.GetNamespace() != wantNamespace {
			t.Errorf("%s is in namespace %q, want %q", o.GetName(), o.GetNamespace(), wantNamespace)
		}
	}
	if d.namespace != nil && d.namespace.Name != wantNamespace {
		t.Errorf("Namespace is %q", d.namespace.Name)
	}
}

func checkRBAC(t *testing.T, d *deployment) {
	t.Helper()
	if d.binding == nil {
		t.Fatal("ClusterRole without its ClusterRoleBinding")
	}
	if len(d.role.Rules) != 1 {
		t.Fatalf("ClusterRole has %d rules, want exactly one (pods)", len(d.role.Rules))
	}
	r := d.role.Rules[0]
	if !sameSet(r.APIGroups, []string{""}) || !sameSet(r.Resources, []string{"pods"}) {
		t.Errorf("ClusterRole covers groups %q resources %q, want core pods only", r.APIGroups, r.Resources)
	}
	if !sameSet(r.Verbs, []string{"get", "list", "watch"}) {
		t.Errorf("ClusterRole verbs %q, want get, list, watch", r.Verbs)
	}
	if len(r.ResourceNames) != 0 || len(r.NonResourceURLs) != 0 {
		t.Error("ClusterRole rule has resourceNames or nonResourceURLs")
	}
	b := d.binding
	if b.RoleRef.Kind != "ClusterRole" || b.RoleRef.Name != d.role.Name || b.RoleRef.APIGroup != rbacv1.GroupName {
		t.Errorf("ClusterRoleBinding refers to %+v, want ClusterRole %s", b.RoleRef, d.role.Name)
	}
	want := rbacv1.Subject{Kind: "ServiceAccount", Name: d.sa.Name, Namespace: wantNamespace}
	if len(b.Subjects) != 1 || b.Subjects[0] != want {
		t.Errorf("ClusterRoleBinding subjects %+v, want %+v", b.Subjects, want)
	}
}

func checkDaemonSet(t *testing.T, d *deployment) {
	t.Helper()
	ds := d.ds
	spec := ds.Spec.Template.Spec

	if ds.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType {
		t.Errorf("updateStrategy %q, want RollingUpdate", ds.Spec.UpdateStrategy.Type)
	}
	if ru := ds.Spec.UpdateStrategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil {
		t.Error("updateStrategy has no maxUnavailable")
	}
	sel := ds.Spec.Selector
	if sel == nil || len(sel.MatchLabels) == 0 {
		t.Fatal("DaemonSet has no selector")
	}
	for k, v := range sel.MatchLabels {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("pod template lacks selector label %s=%s", k, v)
		}
	}
	ann := ds.Spec.Template.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != fmt.Sprint(metricsPort) || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("Prometheus annotations %v", ann)
	}

	if !spec.HostNetwork {
		t.Error("hostNetwork is not true")
	}
	if spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("dnsPolicy %q, want ClusterFirstWithHostNet", spec.DNSPolicy)
	}
	if spec.HostPID || spec.HostIPC {
		t.Error("hostPID or hostIPC set: the sniffer needs neither")
	}
	if spec.ServiceAccountName != d.sa.Name {
		t.Errorf("serviceAccountName %q, want %q", spec.ServiceAccountName, d.sa.Name)
	}
	if !slices.ContainsFunc(spec.Tolerations, func(tl corev1.Toleration) bool {
		return tl.Operator == corev1.TolerationOpExists && tl.Key == "" && tl.Effect == ""
	}) {
		t.Errorf("tolerations %+v do not tolerate every taint", spec.Tolerations)
	}
	if psc := spec.SecurityContext; psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("pod seccompProfile is not RuntimeDefault")
	}

	var spoolVolume string
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			if v.HostPath.Path != spoolPath {
				t.Errorf("hostPath volume %s mounts %s, want only %s", v.Name, v.HostPath.Path, spoolPath)
			}
			if v.HostPath.Type == nil || *v.HostPath.Type != corev1.HostPathDirectoryOrCreate {
				t.Errorf("hostPath %s type %v, want DirectoryOrCreate", v.Name, v.HostPath.Type)
			}
			spoolVolume = v.Name
		}
	}
	if spoolVolume == "" {
		t.Fatal("no hostPath spool volume")
	}

	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	checkSnifferSecurity(t, c.SecurityContext)
	checkInitContainers(t, spec.InitContainers, spoolVolume)

	if _, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		t.Error("CPU limit set: throttling turns into kernel packet drops")
	}
	if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
		t.Error("no memory limit")
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[r]; !ok {
			t.Errorf("no %s request", r)
		}
	}

	checkProbe(t, "liveness", c.LivenessProbe, "/healthz")
	checkProbe(t, "readiness", c.ReadinessProbe, "/readyz")
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool {
		return p.ContainerPort == metricsPort && p.Name == "metrics"
	}) {
		t.Errorf("no metrics port %d in %+v", metricsPort, c.Ports)
	}

	mountPath := ""
	for _, m := range c.VolumeMounts {
		if m.Name == spoolVolume {
			mountPath = m.MountPath
			if m.ReadOnly {
				t.Error("spool mounted read-only")
			}
		}
	}
	args := strings.Join(c.Args, " ")
	for _, want := range []string{
		"-i any",
		"--spool-dir " + mountPath,
		fmt.Sprintf("--metrics-addr :%d", metricsPort),
	} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %q", args, want)
		}
	}
	if len(c.Command) != 0 {
		t.Errorf("command %q overrides the image's ENTRYPOINT", c.Command)
	}

	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if e, ok := env["K8S_NODE_NAME"]; !ok || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Errorf("K8S_NODE_NAME is not the downward API spec.nodeName: %+v", e)
	}
	if d.role != nil && !strings.Contains(args, "--k8s-node $(K8S_NODE_NAME)") {
		t.Errorf("RBAC for pod names granted but args %q lack --k8s-node $(K8S_NODE_NAME)", args)
	}
	if d.role == nil && strings.Contains(args, "--k8s-node") {
		t.Error("--k8s-node without the RBAC to read pods")
	}
	e, ok := env["OTAS_SDK_KEY"]
	if !ok || e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Key != "OTAS_SDK_KEY" {
		t.Errorf("OTAS_SDK_KEY does not come from a Secret: %+v", e)
	} else if d.secret != nil && e.ValueFrom.SecretKeyRef.Name != d.secret.Name {
		t.Errorf("OTAS_SDK_KEY from Secret %q, the deployment makes %q", e.ValueFrom.SecretKeyRef.Name, d.secret.Name)
	}
	// Kubernetes passes an undefined $(VAR) through literally: every reference
	// must be defined by env or by the ConfigMap in envFrom.
	defined := map[string]bool{}
	for name := range env {
		defined[name] = true
	}
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef != nil && ef.ConfigMapRef.Name == d.config.Name {
			for k := range d.config.Data {
				defined[k] = true
			}
		}
	}
	for _, a := range c.Args {
		for _, ref := range varRefs(a) {
			if !defined[ref] {
				t.Errorf("arg %q refers to $(%s), which nothing defines", a, ref)
			}
		}
	}
}

// checkSnifferSecurity encodes the capability rule: a non-root process only gets
// its file capabilities when no_new_privs is off (allowPrivilegeEscalation
// true); a root process gets them from the bounding set and can keep it on.
func checkSnifferSecurity(t *testing.T, sc *corev1.SecurityContext) {
	t.Helper()
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("sniffer has no securityContext capabilities")
	}
	if !sameSet(capNames(sc.Capabilities.Drop), []string{"ALL"}) {
		t.Errorf("capabilities drop %v, want [ALL]", sc.Capabilities.Drop)
	}
	if !sameSet(capNames(sc.Capabilities.Add), []string{"NET_RAW", "NET_ADMIN"}) {
		t.Errorf("capabilities add %v, want NET_RAW and NET_ADMIN", sc.Capabilities.Add)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem is not true")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("privileged container")
	}
	if sc.RunAsUser == nil || *sc.RunAsUser != runAsUser {
		t.Errorf("runAsUser %v, want the image's user %d", sc.RunAsUser, runAsUser)
	}
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Error("runAsNonRoot is not true")
	}
	ape := sc.AllowPrivilegeEscalation
	if ape == nil || !*ape {
		t.Error("allowPrivilegeEscalation must be true for a non-root user's file capabilities")
	}
}

func checkInitContainers(t *testing.T, inits []corev1.Container, spoolVolume string) {
	t.Helper()
	for _, c := range inits {
		sc := c.SecurityContext
		if sc == nil || sc.Capabilities == nil || !sameSet(capNames(sc.Capabilities.Drop), []string{"ALL"}) {
			t.Errorf("init container %s does not drop ALL capabilities", c.Name)
			continue
		}
		if !sameSet(capNames(sc.Capabilities.Add), []string{"CHOWN"}) {
			t.Errorf("init container %s adds %v, want only CHOWN", c.Name, sc.Capabilities.Add)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("init container %s may escalate privileges", c.Name)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("init container %s has a writable root", c.Name)
		}
		want := []string{"/bin/chown", fmt.Sprintf("%d:%d", runAsUser, runAsUser), spoolPath}
		if !slices.Equal(c.Command, want) {
			t.Errorf("init container %s runs %q, want %q", c.Name, c.Command, want)
		}
		if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].Name != spoolVolume || c.VolumeMounts[0].MountPath != spoolPath {
			t.Errorf("init container %s mounts %+v, want only the spool", c.Name, c.VolumeMounts)
		}
	}
}

func checkProbe(t *testing.T, name string, p *corev1.Probe, path string) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("no %s httpGet probe", name)
		return
	}
	if p.HTTPGet.Path != path || p.HTTPGet.Port.IntValue() != metricsPort {
		t.Errorf("%s probe %s:%s, want %s:%d", name, p.HTTPGet.Path, p.HTTPGet.Port.String(), path, metricsPort)
	}
}

// varRefs returns the names in $(NAME) references of a container arg.
func varRefs(s string) []string {
	var out []string
	for {
		i := strings.Index(s, "$(")
		if i < 0 {
			return out
		}
		j := strings.IndexByte(s[i:], ')')
		if j < 0 {
			return out
		}
		out = append(out, s[i+2:i+j])
		s = s[i+j+1:]
	}
}

func validEnvName(s string) bool {
	for i, r := range s {
		if !(r == '_' || (r >= 'A' && r <= 'Z') || (i > 0 && r >= '0' && r <= '9')) {
			return false
		}
	}
	return s != ""
}

func capNames(cs []corev1.Capability) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = string(c)
	}
	return out
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	sort.Strings(a)
	sort.Strings(b)
	return slices.Equal(a, b)
}
