package deploy_test

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/yaml"
)

const chartDir = "helm/otas-sniff"

// installValues are what a user sets for a first install; the rest are defaults.
func installValues() map[string]any {
	return map[string]any{
		"namespace": map[string]any{"create": true},
		"sdkKey":    map[string]any{"value": "REPLACE-ME-this-is-not-a-real-otas-sdk-key"},
	}
}

// renderChart renders the chart as `helm template otas-sniff -n otas-sniff`
// would, with strict templates (a missing value is an error).
func renderChart(t *testing.T, vals map[string]any) (*deployment, error) {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	opts := chartutil.ReleaseOptions{Name: "otas-sniff", Namespace: wantNamespace, Revision: 1, IsInstall: true}
	rv, err := chartutil.ToRenderValues(ch, vals, opts, chartutil.DefaultCapabilities)
	if err != nil {
		return nil, fmt.Errorf("values: %w", err)
	}
	files, err := engine.Engine{Strict: true}.Render(ch, rv)
	if err != nil {
		return nil, err
	}
	var objs []object
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if path.Ext(name) != ".yaml" {
			continue
		}
		o, err := decodeAll(name, []byte(files[name]))
		if err != nil {
			return nil, err
		}
		objs = append(objs, o...)
	}
	return collect(objs)
}

func mustRender(t *testing.T, vals map[string]any) *deployment {
	t.Helper()
	d, err := renderChart(t, vals)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return d
}

func TestChartRenders(t *testing.T) {
	d := mustRender(t, installValues())
	if d.namespace == nil || d.role == nil || d.binding == nil || d.secret == nil {
		t.Fatal("chart lacks the Namespace, RBAC or Secret")
	}
	checkDeployment(t, d)
	if got := d.ds.Spec.Template.Spec.Containers[0].Image; got != "ghcr.io/otas/otas-sniff:0.1.0" {
		t.Errorf("image %q, want the chart's appVersion tag", got)
	}
}

func TestChartLint(t *testing.T) {
	res := lint.All(chartDir, installValues(), wantNamespace, false)
	for _, m := range res.Messages {
		if m.Severity >= support.WarningSev {
			t.Errorf("helm lint: %s", m)
		}
	}
}

// The chart with default values and the kustomize manifests deploy the same pod.
func TestChartAndKustomizeAgree(t *testing.T) {
	vals := installValues()
	vals["image"] = map[string]any{"tag": "latest"}
	h := mustRender(t, vals)
	k := buildKustomize(t)

	// Helm adds its own labels and a config checksum; the pods must be identical.
	if !equality.Semantic.DeepEqual(h.ds.Spec.Template.Spec, k.ds.Spec.Template.Spec) {
		t.Errorf("pod specs differ:\n--- chart\n%s\n--- kustomize\n%s",
			toYAML(t, h.ds.Spec.Template.Spec), toYAML(t, k.ds.Spec.Template.Spec))
	}
	if !equality.Semantic.DeepEqual(h.ds.Spec.UpdateStrategy, k.ds.Spec.UpdateStrategy) {
		t.Errorf("updateStrategy: chart %+v, kustomize %+v", h.ds.Spec.UpdateStrategy, k.ds.Spec.UpdateStrategy)
	}
	hAnn := maps.Clone(h.ds.Spec.Template.Annotations)
	delete(hAnn, "checksum/config")
	if !maps.Equal(hAnn, k.ds.Spec.Template.Annotations) {
		t.Errorf("pod annotations: chart %v, kustomize %v", hAnn, k.ds.Spec.Template.Annotations)
	}
	if !maps.Equal(h.config.Data, k.config.Data) {
		t.Errorf("ConfigMap data: chart %v, kustomize %v", h.config.Data, k.config.Data)
	}
	if !equality.Semantic.DeepEqual(h.role.Rules, k.role.Rules) {
		t.Errorf("ClusterRole rules: chart %+v, kustomize %+v", h.role.Rules, k.role.Rules)
	}
	if !equality.Semantic.DeepEqual(h.binding.RoleRef, k.binding.RoleRef) || !equality.Semantic.DeepEqual(h.binding.Subjects, k.binding.Subjects) {
		t.Errorf("ClusterRoleBinding: chart %+v %+v, kustomize %+v %+v", h.binding.RoleRef, h.binding.Subjects, k.binding.RoleRef, k.binding.Subjects)
	}
	for _, l := range []string{"enforce", "warn", "audit"} {
		key := "pod-security.kubernetes.io/" + l
		if h.namespace.Labels[key] != k.namespace.Labels[key] {
			t.Errorf("namespace label %s: chart %q, kustomize %q", key, h.namespace.Labels[key], k.namespace.Labels[key])
		}
	}
	if !maps.Equal(h.secret.StringData, k.secret.StringData) || h.secret.Name != k.secret.Name {
		t.Error("Secrets differ")
	}
	for _, pair := range [][2]string{{h.sa.Name, k.sa.Name}, {h.ds.Name, k.ds.Name}, {h.config.Name, k.config.Name}} {
		if pair[0] != pair[1] {
			t.Errorf("object names differ: chart %q, kustomize %q", pair[0], pair[1])
		}
	}
}

func TestChartOptions(t *testing.T) {
	t.Run("existing secret", func(t *testing.T) {
		d := mustRender(t, map[string]any{"sdkKey": map[string]any{"existingSecret": "my-key"}})
		if d.secret != nil {
			t.Error("a Secret was made although an existing one was named")
		}
		if d.namespace != nil {
			t.Error("a Namespace was made by default")
		}
		checkDeployment(t, d)
		env := d.ds.Spec.Template.Spec.Containers[0].Env
		i := slices.IndexFunc(env, func(e corev1.EnvVar) bool { return e.Name == "OTAS_SDK_KEY" })
		if i < 0 || env[i].ValueFrom.SecretKeyRef.Name != "my-key" {
			t.Errorf("OTAS_SDK_KEY not from my-key: %+v", env)
		}
	})
	t.Run("no pod metadata", func(t *testing.T) {
		vals := installValues()
		vals["podMetadata"] = map[string]any{"enabled": false}
		d := mustRender(t, vals)
		if d.role != nil || d.binding != nil {
			t.Error("RBAC rendered without pod metadata")
		}
		checkDeployment(t, d)
		if am := d.ds.Spec.Template.Spec.AutomountServiceAccountToken; am == nil || *am {
			t.Error("the API token is mounted although nothing uses it")
		}
	})
	t.Run("release name and config", func(t *testing.T) {
		vals := installValues()
		vals["fullnameOverride"] = "sniff"
		vals["config"] = map[string]any{"port": "8080-8089", "max-body": 4096}
		d := mustRender(t, vals)
		if d.ds.Name != "sniff" || d.config.Name != "sniff" || d.role.Name != "sniff" {
			t.Errorf("names %q %q %q, want sniff", d.ds.Name, d.config.Name, d.role.Name)
		}
		for k, v := range map[string]string{"OTAS_SNIFF_PORT": "8080-8089", "OTAS_SNIFF_MAX_BODY": "4096", "OTAS_SNIFF_BATCH_SIZE": "100"} {
			if d.config.Data[k] != v {
				t.Errorf("ConfigMap %s = %q, want %q", k, d.config.Data[k], v)
			}
		}
		checkDeployment(t, d)
	})
	t.Run("no port", func(t *testing.T) {
		vals := installValues()
		vals["config"] = map[string]any{"port": nil}
		d := mustRender(t, vals)
		if slices.Contains(d.ds.Spec.Template.Spec.Containers[0].Args, "-p") {
			t.Error("-p passed without a port")
		}
		checkDeployment(t, d)
	})

	// Each refusal names what to fix.
	refused := []struct {
		name, want string
		change     func(map[string]any)
	}{
		{"no key", "sdkKey", func(v map[string]any) { delete(v, "sdkKey") }},
		{"cpu limit", "resources.limits.cpu", func(v map[string]any) {
			v["resources"] = map[string]any{"limits": map[string]any{"cpu": "500m", "memory": "512Mi"}}
		}},
		{"flag owned by the chart", "config.spool-dir", func(v map[string]any) { v["config"] = map[string]any{"spool-dir": "/tmp"} }},
		{"no NET_RAW", "NET_RAW", func(v map[string]any) { v["capabilities"] = []any{"NET_ADMIN"} }},
	}
	for _, tc := range refused {
		t.Run("refuses "+tc.name, func(t *testing.T) {
			vals := installValues()
			tc.change(vals)
			_, err := renderChart(t, vals)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("render error %v, want one naming %s", err, tc.want)
			}
		})
	}
}

func toYAML(t *testing.T, v any) string {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
