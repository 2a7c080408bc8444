package deploy_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/api/krusty"
	kusttypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

const kustomizeDir = "kubernetes"

// buildKustomize runs kustomize as `kubectl apply -k deploy/kubernetes` would.
func buildKustomize(t *testing.T) *deployment {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), kustomizeDir)
	if err != nil {
		t.Fatalf("kustomize build: %v", err)
	}
	out, err := m.AsYaml()
	if err != nil {
		t.Fatalf("kustomize output: %v", err)
	}
	objs, err := decodeAll("kustomize build", out)
	if err != nil {
		t.Fatal(err)
	}
	d, err := collect(objs)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Every manifest in the directory is listed, and each decodes strictly on its own.
func TestKustomizationListsEveryManifest(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(kustomizeDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var kust kusttypes.Kustomization
	if err := yaml.UnmarshalStrict(raw, &kust); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	files, err := filepath.Glob(filepath.Join(kustomizeDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var manifests []string
	for _, f := range files {
		if base := filepath.Base(f); base != "kustomization.yaml" {
			manifests = append(manifests, base)
		}
	}
	if !sameSet(kust.Resources, manifests) {
		t.Errorf("kustomization.yaml lists %q, the directory has %q", kust.Resources, manifests)
	}
	var all []object
	for _, r := range kust.Resources {
		data, err := os.ReadFile(filepath.Join(kustomizeDir, r))
		if err != nil {
			t.Fatalf("listed resource: %v", err)
		}
		objs, err := decodeAll(r, data)
		if err != nil {
			t.Fatal(err)
		}
		if len(objs) == 0 {
			t.Errorf("%s holds no object", r)
		}
		all = append(all, objs...)
	}
	if _, err := collect(all); err != nil {
		t.Fatal(err)
	}
}

func TestKustomizeBuild(t *testing.T) {
	d := buildKustomize(t)
	if d.namespace == nil || d.role == nil || d.binding == nil || d.secret == nil {
		t.Fatal("kustomize build lacks the Namespace, RBAC or the example Secret")
	}
	checkDeployment(t, d)
	if !strings.Contains(d.secret.StringData["OTAS_SDK_KEY"], "REPLACE-ME") {
		t.Error("the example Secret's key does not look obviously fake")
	}
	img := d.ds.Spec.Template.Spec.Containers[0].Image
	if img != "ghcr.io/otas/otas-sniff:latest" {
		t.Errorf("image %q: the kustomization's images entry was not applied", img)
	}
	for _, c := range d.ds.Spec.Template.Spec.InitContainers {
		if c.Image != img {
			t.Errorf("init container image %q differs from %q", c.Image, img)
		}
	}
	// Whatever the ConfigMap sets, the args must not set too: one place per setting.
	args := d.ds.Spec.Template.Spec.Containers[0].Args
	for k := range d.config.Data {
		flag := "--" + strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(k, "OTAS_SNIFF_")), "_", "-")
		if slices.Contains(args, flag) {
			t.Errorf("%s is set both in the ConfigMap and as %s", k, flag)
		}
	}
}
