// Package deploy validates the Dockerfile and Kubernetes manifests offline:
// they parse, reference files and variables that exist, and never carry
// secrets in plain config.
package deploy

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const root = "../.."

func docs(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var out []map[string]any
	for {
		var d map[string]any
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			return out
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, d)
	}
}

// envNames returns every variable a service reads (its `env:"..."` tags).
func envNames(t *testing.T, service string) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	re := regexp.MustCompile(`env:"([A-Z0-9_]+)`)
	// Every service reads its own tags and the shared ones of pkg/config.
	for _, dir := range []string{filepath.Join(root, "services", service), filepath.Join(root, "pkg", "config")} {
		if err := walkEnv(dir, re, names); err != nil {
			t.Fatal(err)
		}
	}
	return names
}

func walkEnv(dir string, re *regexp.Regexp, names map[string]bool) error {
	return filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return err
		}
		b, err := os.ReadFile(p)
		for _, m := range re.FindAllSubmatch(b, -1) {
			names[string(m[1])] = true
		}
		return err
	})
}

func get(m any, path ...string) any {
	for _, p := range path {
		mm, ok := m.(map[string]any)
		if !ok {
			return nil
		}
		m = mm[p]
	}
	return m
}

func TestKustomizationsListExistingFiles(t *testing.T) {
	for _, dir := range []string{"k8s/base", "k8s/tenants/acme"} {
		k := docs(t, filepath.Join(root, dir, "kustomization.yaml"))[0]
		res, _ := k["resources"].([]any)
		if len(res) == 0 {
			t.Fatalf("%s: no resources", dir)
		}
		for _, r := range res {
			if _, err := os.Stat(filepath.Join(root, dir, r.(string))); err != nil {
				t.Errorf("%s: resource %s: %v", dir, r, err)
			}
		}
	}
}

func TestDeploymentsUseRealVariables(t *testing.T) {
	tenantVars := map[string]bool{}
	overlay := docs(t, filepath.Join(root, "k8s/tenants/acme/kustomization.yaml"))[0]
	for _, g := range overlay["configMapGenerator"].([]any) {
		for _, lit := range get(g, "literals").([]any) {
			k, _, _ := strings.Cut(lit.(string), "=")
			if strings.Contains(k, "PASS") || strings.Contains(k, "TOKEN") || strings.Contains(k, "SECRET") {
				t.Errorf("secret %s in a ConfigMap", k)
			}
			tenantVars[k] = true
		}
	}
	files, _ := filepath.Glob(filepath.Join(root, "k8s/base/*.yaml"))
	deployments := 0
	for _, f := range files {
		for _, d := range docs(t, f) {
			if d["kind"] != "Deployment" {
				continue
			}
			deployments++
			for _, c := range get(d, "spec", "template", "spec", "containers").([]any) {
				name := get(c, "name").(string)
				known := envNames(t, name)
				if _, err := os.Stat(filepath.Join(root, "services", name, "main.go")); err != nil {
					t.Fatalf("%s: no service %q under services/", f, name)
				}
				if get(c, "resources", "limits", "memory") == nil {
					t.Errorf("%s/%s: no memory limit", f, name)
				}
				env, _ := get(c, "env").([]any)
				for _, e := range env {
					v := get(e, "name").(string)
					if !known[v] {
						t.Errorf("%s/%s: sets %s, which the service does not read", f, name, v)
					}
					if (strings.Contains(v, "PASS") || strings.Contains(v, "TOKEN") || v == "DATABASE_URL") && get(e, "valueFrom", "secretKeyRef") == nil {
						t.Errorf("%s/%s: %s must come from a Secret", f, name, v)
					}
				}
				for v := range tenantVars {
					if !known[v] && name != "collector" && strings.HasPrefix(v, "AMI_") {
						continue
					}
					if !known[v] {
						t.Errorf("%s/%s: the tenant ConfigMap sets %s, which the service does not read", f, name, v)
					}
				}
			}
		}
	}
	if deployments < 3 {
		t.Fatalf("%d deployments, want collector, projector, gateway", deployments)
	}
}

func TestDockerfileBuildsEveryService(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "deploy/Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	for _, line := range strings.Split(df, "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "COPY" && !strings.HasPrefix(f[1], "--") {
			if _, err := os.Stat(filepath.Join(root, f[1])); err != nil {
				t.Errorf("Dockerfile copies %s: %v", f[1], err)
			}
		}
	}
	if !strings.Contains(df, "./services/${SERVICE}") {
		t.Fatal("Dockerfile does not build ./services/${SERVICE}")
	}
	for _, s := range []string{"collector", "projector", "gateway", "logtailer", "mediabridge"} {
		if _, err := os.Stat(filepath.Join(root, "services", s, "main.go")); err != nil {
			t.Errorf("service %s has no main.go for the image: %v", s, err)
		}
	}
}
