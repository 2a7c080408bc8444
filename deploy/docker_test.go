package deploy_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The image and the manifests must agree on the user, the entrypoint, the
// metrics port and the spool path.
func TestDockerfileMatchesManifests(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(raw)
	for _, want := range []string{
		fmt.Sprintf("USER %d:%d", runAsUser, runAsUser),
		`ENTRYPOINT ["/usr/local/bin/otas-sniff"]`,
		fmt.Sprintf("EXPOSE %d", metricsPort),
		fmt.Sprintf(`VOLUME ["%s"]`, spoolPath),
		"ARG VERSION",
		"ARG COMMIT",
		"org.opencontainers.image.version",
		"org.opencontainers.image.revision",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	// The final stage must end as the non-root user: a later USER would undo it.
	users := regexp.MustCompile(`(?m)^USER (.+)$`).FindAllStringSubmatch(df, -1)
	if len(users) == 0 || users[len(users)-1][1] != fmt.Sprintf("%d:%d", runAsUser, runAsUser) {
		t.Errorf("last USER %v, want %d:%d", users, runAsUser, runAsUser)
	}
	steps, err := os.ReadFile(filepath.Join("..", "scripts", "docker-build-steps.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		fmt.Sprintf("RUN_UID=%d", runAsUser),
		"SPOOL_DIR=" + spoolPath,
		"FILE_CAPS=${FILE_CAPS:-cap_net_raw,cap_net_admin+ep}",
	} {
		if !strings.Contains(string(steps), want) {
			t.Errorf("docker-build-steps.sh lacks %q", want)
		}
	}
}

// TestDockerBuildSteps runs the image's build steps on this host (the Docker
// engine is not needed): install, build with the Dockerfile's flags, set the file
// capabilities, check the binary and the Dockerfile. It needs root or sudo for
// apt-get and setcap, and builds the whole command, so -short skips it.
func TestDockerBuildSteps(t *testing.T) {
	if testing.Short() {
		t.Skip("builds ./cmd/otas-sniff with cgo; skipped with -short")
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Skip("not a Debian host: the image's build steps use apt-get")
	}
	out := t.TempDir()
	cmd := exec.Command("bash", filepath.Join("..", "scripts", "docker-build-steps.sh"), "check", out)
	cmd.Env = append(os.Environ(), "VERSION=v0.0.0-test", "COMMIT=0123abc")
	b, err := cmd.CombinedOutput()
	t.Logf("%s", b)
	if err != nil {
		t.Fatalf("docker-build-steps.sh check: %v", err)
	}
	if !strings.Contains(string(b), "docker-build-steps: OK") {
		t.Fatal("the script did not report OK")
	}
}

// Every flag the manifests set, in args or as OTAS_SNIFF_<FLAG> in the
// ConfigMap, must be a flag of the binary: an unknown one crash-loops the pods.
func TestManifestFlagsExist(t *testing.T) {
	if testing.Short() {
		t.Skip("builds ./cmd/otas-sniff; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "otas-sniff")
	build := exec.Command("go", "build", "-o", bin, "./cmd/otas-sniff")
	build.Dir = ".."
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/otas-sniff: %v\n%s", err, b)
	}
	help, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("otas-sniff --help: %v\n%s", err, help)
	}
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+(?:-([a-z]), )?--([a-z0-9-]+)`).FindAllStringSubmatch(string(help), -1) {
		flags["--"+m[2]] = true
		if m[1] != "" {
			flags["-"+m[1]] = true
		}
	}
	d := buildKustomize(t)
	var missing []string
	for _, a := range d.ds.Spec.Template.Spec.Containers[0].Args {
		if strings.HasPrefix(a, "-") && !flags[a] {
			missing = append(missing, a+" (args)")
		}
	}
	for k := range d.config.Data {
		f := "--" + strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(k, "OTAS_SNIFF_")), "_", "-")
		if !flags[f] {
			missing = append(missing, f+" ("+k+")")
		}
	}
	if len(missing) > 0 {
		t.Errorf("the manifests use flags that otas-sniff does not have: %s", strings.Join(missing, ", "))
	}
}
