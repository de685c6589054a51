package web

import (
	"io/fs"
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
		if strings.HasPrefix(ref, "data:") {
			continue
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

// Strings from the server are untrusted (caller-ID comes from SIP headers):
// the script builds the DOM with textContent and createElement only.
func TestScriptHasNoHTMLSinks(t *testing.T) {
	js := readAsset(t, "app.js")
	for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"} {
		if strings.Contains(js, sink) {
			t.Errorf("app.js uses %s", sink)
		}
	}
	for _, name := range []string{"app.js", "app.css"} {
		s := strings.ToLower(readAsset(t, name))
		if strings.Contains(s, "http://") || strings.Contains(s, "https://") {
			t.Errorf("%s contains an absolute http(s) URL", name)
		}
	}
}
