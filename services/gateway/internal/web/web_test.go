package web

import (
	"io/fs"
	"path"
	"regexp"
	"strings"
	"testing"
)

func readAsset(t *testing.T, name string) string {
	t.Helper()
	b, err := fs.ReadFile(Assets(), name)
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	if len(b) == 0 {
		t.Fatalf("%s is empty", name)
	}
	return string(b)
}

// scripts lists the panel's JavaScript modules.
func scripts(t *testing.T) []string {
	t.Helper()
	names, err := fs.Glob(Assets(), "*.js")
	if err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatal("no scripts")
	}
	return names
}

func TestAssetsContainPanel(t *testing.T) {
	for _, name := range []string{"index.html", "app.js", "app.css", "vendor/bootstrap.min.css"} {
		readAsset(t, name)
	}
}

// The panel must work offline and under any path prefix: no absolute or
// protocol-relative URL, no root-relative path, and every referenced file exists.
func TestIndexUsesOnlyRelativeURLs(t *testing.T) {
	html := readAsset(t, "index.html")
	if strings.Contains(strings.ToLower(html), "http://") || strings.Contains(strings.ToLower(html), "https://") {
		t.Fatal("index.html contains an absolute http(s) URL")
	}
	refs := regexp.MustCompile(`(?i)\b(?:src|href)\s*=\s*"([^"]*)"`).FindAllStringSubmatch(html, -1)
	if len(refs) == 0 {
		t.Fatal("index.html references no assets")
	}
	for _, m := range refs {
		ref := m[1]
		if strings.HasPrefix(ref, "data:") || strings.HasPrefix(ref, "#") {
			continue // inline icon, in-page routes
		}
		if strings.HasPrefix(ref, "/") || strings.Contains(ref, ":") {
			t.Errorf("index.html: %q is not a relative URL", ref)
			continue
		}
		if _, err := fs.Stat(Assets(), ref); err != nil {
			t.Errorf("index.html references %q: %v", ref, err)
		}
	}
}

// The gateway's CSP is default-src 'self': no inline script, no inline style
// attribute, no event handler attribute would run or apply.
func TestIndexNeedsNoInlineCode(t *testing.T) {
	html := readAsset(t, "index.html")
	cases := []struct {
		name string
		re   string
	}{
		{"inline script", `(?is)<script\b[^>]*>\s*[^<\s]`},
		{"style attribute", `(?i)\sstyle\s*=`},
		{"style element", `(?i)<style\b`},
		{"event handler attribute", `(?i)\son[a-z]+\s*=`},
		{"javascript: URL", `(?i)javascript:`},
	}
	for _, tag := range regexp.MustCompile(`(?i)<script\b[^>]*>`).FindAllString(html, -1) {
		if !strings.Contains(tag, " src=") {
			t.Errorf("index.html: %s has no src", tag)
		}
	}
	for _, c := range cases {
		if loc := regexp.MustCompile(c.re).FindStringIndex(html); loc != nil {
			t.Errorf("index.html has an %s: %q", c.name, html[loc[0]:min(loc[1]+40, len(html))])
		}
	}
}

// Every module import is relative and names a file that exists, so the
// module graph loads under any prefix without a build step.
func TestModuleImportsResolve(t *testing.T) {
	imp := regexp.MustCompile(`(?m)^\s*(?:import|export)\b[^'"]*?\bfrom\s+['"]([^'"]+)['"]`)
	n := 0
	for _, name := range scripts(t) {
		js := readAsset(t, name)
		for _, m := range imp.FindAllStringSubmatch(js, -1) {
			n++
			ref := m[1]
			if !strings.HasPrefix(ref, "./") {
				t.Errorf("%s imports %q: want a relative ./ path", name, ref)
				continue
			}
			if _, err := fs.Stat(Assets(), path.Clean(ref)); err != nil {
				t.Errorf("%s imports %q: %v", name, ref, err)
			}
		}
	}
	if n < 10 {
		t.Errorf("found %d imports: the pattern no longer reads the modules", n)
	}
}

// Strings from the server are untrusted (caller-ID comes from SIP headers):
// the scripts build the DOM with textContent and createElement only, and
// fetch nothing from another origin.
func TestScriptsHaveNoHTMLSinks(t *testing.T) {
	sinks := []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "setTimeout('", "setTimeout(\"", "DOMParser", "createContextualFragment", "srcdoc"}
	for _, name := range scripts(t) {
		js := readAsset(t, name)
		for _, sink := range sinks {
			if strings.Contains(js, sink) {
				t.Errorf("%s uses %s", name, sink)
			}
		}
		// The SVG namespace is an identifier, never fetched.
		s := strings.ReplaceAll(strings.ToLower(js), "'http://www.w3.org/2000/svg'", "")
		if strings.Contains(s, "http://") || strings.Contains(s, "https://") {
			t.Errorf("%s contains an absolute http(s) URL", name)
		}
	}
	if s := strings.ToLower(readAsset(t, "app.css")); strings.Contains(s, "http://") || strings.Contains(s, "https://") || strings.Contains(s, "@import") {
		t.Error("app.css loads something from elsewhere")
	}
}
