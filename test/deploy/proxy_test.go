package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/pbxpulse/pbxpulse/pkg/testenv"
	"github.com/pbxpulse/pbxpulse/test/stack"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const proxyToken = "acme-viewer-proxy-token"

// TestReverseProxies runs the sample nginx and Apache configurations of
// deploy/ as real servers in front of a real gateway (PATH_PREFIX=/monitor/)
// and uses the panel, the API and the WebSocket through them. A proxy that
// is not installed is skipped (.ci/run installs both).
func TestReverseProxies(t *testing.T) {
	proxies := []struct {
		name, binary string
		start        func(t *testing.T, bin, listen, upstream string)
	}{
		{"nginx", "nginx", startNginx},
		{"apache", "apache2", startApache},
	}
	bins := map[string]string{}
	var gatewayAddr string
	for _, p := range proxies {
		if bins[p.name] = lookSbin(p.binary); bins[p.name] != "" && gatewayAddr == "" {
			gatewayAddr = startGateway(t)
		}
	}
	for _, p := range proxies {
		t.Run(p.name, func(t *testing.T) {
			if bins[p.name] == "" {
				t.Skipf("%s is not installed (apt-get install %s; .ci/run installs it): sample configuration not run", p.binary, p.binary)
			}
			listen := freeAddr(t)
			p.start(t, bins[p.name], listen, gatewayAddr)
			checkThroughProxy(t, "http://"+listen)
		})
	}
}

// lookSbin finds a server binary in PATH or the sbin directories, which are
// not in a normal user's PATH.
func lookSbin(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		if p := filepath.Join(dir, name); isExec(p) {
			return p
		}
	}
	return ""
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startGateway builds the gateway binary and runs it with real NATS and
// Postgres under /monitor/.
func startGateway(t *testing.T) string {
	t.Helper()
	root, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "gateway")
	build := exec.Command("go", "build", "-o", bin, "./services/gateway")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build gateway: %v\n%s", err, out)
	}
	ns := testenv.NATS(t)
	addr := freeAddr(t)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "HTTP_ADDR="+addr, "NATS_URL="+ns.ClientURL(), "DATABASE_URL="+testenv.Postgres(t),
		"TENANT=acme", "PATH_PREFIX=/monitor/", "GATEWAY_TOKENS=acme:viewer:"+proxyToken, "ENV_FILE=/nonexistent",
		"FRAME_ANCESTORS='self' https://portal.example.com", "METRICS_ADDR=127.0.0.1:0")
	exited := startLogged(t, "gateway", cmd, filepath.Join(dir, "gateway.log"))
	waitHTTP(t, "gateway", "http://"+addr+"/monitor/readyz", exited)
	return addr
}

// waitHTTP polls url until it answers 200, or the process exits.
func waitHTTP(t *testing.T, what, url string, exited <-chan error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		select {
		case e := <-exited:
			t.Fatalf("%s exited before it was ready: %v", what, e)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready at %s: %v", what, url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(b []byte) []byte {
	if len(b) > 8000 {
		return b[len(b)-8000:]
	}
	return b
}

// sample reads a configuration of deploy/ and replaces its listen address
// and upstream, failing when a placeholder is gone (the sample changed and
// the test must follow).
func sample(t *testing.T, path string, repl ...string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, path))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for i := 0; i+1 < len(repl); i += 2 {
		if !strings.Contains(s, repl[i]) {
			t.Fatalf("%s no longer contains %q", path, repl[i])
		}
		s = strings.ReplaceAll(s, repl[i], repl[i+1])
	}
	return s
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// runServer starts a proxy in the foreground, stops it with the test and
// waits until it serves the gateway's healthz.
func runServer(t *testing.T, what, errorLog, listen string, bin string, args ...string) {
	t.Helper()
	exited := startLogged(t, what, exec.Command(bin, args...), errorLog+".out", errorLog)
	waitHTTP(t, what, "http://"+listen+"/monitor/healthz", exited)
}

// startLogged starts cmd in a process group of its own with its output in
// logPath; the test's end stops the group (SIGTERM, then SIGKILL after 10 s)
// and, when the test failed, logs the tail of logPath and of extraLogs. The
// channel gets the process's exit.
func startLogged(t *testing.T, what string, cmd *exec.Cmd, logPath string, extraLogs ...string) <-chan error {
	t.Helper()
	out, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		out.Close()
		if t.Failed() {
			for _, f := range append(extraLogs, logPath) {
				b, _ := os.ReadFile(f)
				t.Logf("%s %s:\n%s", what, f, tail(b))
			}
		}
	})
	return exited
}

// check runs a configuration test (nginx -t, apache2 -t).
func check(t *testing.T, what, bin string, args ...string) {
	t.Helper()
	if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s syntax check: %v\n%s", what, err, out)
	}
}

func startNginx(t *testing.T, bin, listen, upstream string) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "pbxpulse.conf"), sample(t, "deploy/nginx/pbxpulse.conf",
		"listen 80;", "listen "+listen+";", "server 127.0.0.1:8080;", "server "+upstream+";"))
	userLine := ""
	if os.Geteuid() == 0 {
		// Workers would run as nobody, who cannot enter the test's
		// private temporary directory.
		userLine = "user root;"
	}
	writeFile(t, filepath.Join(dir, "nginx.conf"), fmt.Sprintf(`%s
daemon off;
worker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log info;
events { worker_connections 256; }
http {
    access_log %[2]s/access.log;
    client_body_temp_path %[2]s/client_body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
    include %[2]s/pbxpulse.conf;
}
`, userLine, dir))
	args := []string{"-p", dir + "/", "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log")}
	check(t, "nginx", bin, append([]string{"-t"}, args...)...)
	runServer(t, "nginx", filepath.Join(dir, "error.log"), listen, bin, args...)
}

func startApache(t *testing.T, bin, listen, upstream string) {
	modules := ""
	for _, d := range []string{"/usr/lib/apache2/modules", "/usr/lib64/httpd/modules", "/usr/lib/httpd/modules"} {
		if fileExists(filepath.Join(d, "mod_proxy.so")) {
			modules = d
			break
		}
	}
	if modules == "" {
		t.Skip("apache2 is installed but its modules directory was not found")
	}
	dir := t.TempDir()
	_, port, _ := net.SplitHostPort(listen)
	writeFile(t, filepath.Join(dir, "pbxpulse.conf"), sample(t, "deploy/apache/pbxpulse.conf",
		"<VirtualHost *:80>", "<VirtualHost *:"+port+">", "http://127.0.0.1:8080/", "http://"+upstream+"/"))
	var conf strings.Builder
	fmt.Fprintf(&conf, "ServerRoot %s\nServerName 127.0.0.1\nListen %s\nPidFile %[1]s/httpd.pid\nErrorLog %[1]s/error.log\nLogLevel warn\nDefaultRuntimeDir %[1]s\nMutex file:%[1]s default\n", dir, listen)
	for _, m := range []string{"mpm_event", "authz_core", "alias", "headers", "proxy", "proxy_http"} {
		fmt.Fprintf(&conf, "LoadModule %s_module %s/mod_%s.so\n", m, modules, m)
	}
	if os.Geteuid() == 0 {
		// Apache refuses to serve as root; its children only proxy, so any
		// unprivileged user will do.
		u := "nobody"
		if _, err := user.Lookup("www-data"); err == nil {
			u = "www-data"
		}
		fmt.Fprintf(&conf, "User %s\nGroup %s\n", u, groupOf(u))
	}
	fmt.Fprintf(&conf, "Include %s/pbxpulse.conf\n", dir)
	writeFile(t, filepath.Join(dir, "httpd.conf"), conf.String())
	args := []string{"-d", dir, "-f", filepath.Join(dir, "httpd.conf")}
	check(t, "apache", bin, append([]string{"-t"}, args...)...)
	runServer(t, "apache", filepath.Join(dir, "error.log"), listen, bin, append([]string{"-DFOREGROUND"}, args...)...)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func groupOf(name string) string {
	u, err := user.Lookup(name)
	if err != nil {
		return "nogroup"
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		return "nogroup"
	}
	return g.Name
}

// checkThroughProxy uses the panel, the API and the WebSocket through the
// proxy at base, as a browser would.
func checkThroughProxy(t *testing.T, base string) {
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path, token string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest("GET", base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}

	t.Run("bare prefix redirects", func(t *testing.T) {
		resp, _ := get("/monitor", "")
		if resp.StatusCode != http.StatusMovedPermanently || !strings.HasSuffix(resp.Header.Get("Location"), "/monitor/") {
			t.Fatalf("%d Location %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	t.Run("panel", func(t *testing.T) {
		resp, body := get("/monitor/", "")
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(body, `src="app.js"`) {
			t.Fatalf("%d %s %.300q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		// The portal may frame it: no X-Frame-Options (from the gateway or
		// the proxy), and the gateway's frame-ancestors passed through.
		if xfo := resp.Header.Get("X-Frame-Options"); xfo != "" {
			t.Errorf("X-Frame-Options %q forbids the iframe", xfo)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'self' https://portal.example.com") {
			t.Errorf("Content-Security-Policy %q", csp)
		}
		resp, body = get("/monitor/app.js", "")
		if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), "javascript") || len(body) == 0 {
			t.Errorf("app.js: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	})
	t.Run("api", func(t *testing.T) {
		resp, body := get("/monitor/api/v1/whoami", proxyToken)
		var who struct{ Tenant, Role string }
		if err := json.Unmarshal([]byte(body), &who); resp.StatusCode != 200 || err != nil || who.Tenant != "acme" || who.Role != "viewer" {
			t.Fatalf("whoami: %d %s", resp.StatusCode, body)
		}
		if resp, body := get("/monitor/api/v1/whoami", ""); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, `"unauthorized"`) {
			t.Fatalf("whoami without token: %d %s", resp.StatusCode, body)
		}
		if resp, body := get("/monitor/api/v1/openapi.yaml", ""); resp.StatusCode != 200 || !strings.HasPrefix(body, "openapi:") {
			t.Fatalf("openapi.yaml: %d %.100s", resp.StatusCode, body)
		}
	})
	t.Run("websocket", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		ws := "ws" + strings.TrimPrefix(base, "http") + "/monitor/ws"
		// As the panel opens it: token in the subprotocols, the page's origin.
		c, _, err := websocket.Dial(ctx, ws, &websocket.DialOptions{
			Subprotocols: []string{"pbxpulse.v1", "bearer." + proxyToken},
			HTTPHeader:   http.Header{"Origin": {base}},
		})
		if err != nil {
			t.Fatalf("dial through the proxy: %v", err)
		}
		defer c.CloseNow()
		if c.Subprotocol() != "pbxpulse.v1" {
			t.Errorf("subprotocol %q", c.Subprotocol())
		}
		read := func() map[string]any {
			t.Helper()
			_, data, err := c.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(data, &m); err != nil {
				t.Fatalf("%q: %v", data, err)
			}
			return m
		}
		if m := read(); m["type"] != "snapshot" {
			t.Fatalf("first message %v", m)
		}
		// Both directions pass: ping answered by pong.
		if err := c.Write(ctx, websocket.MessageText, []byte(`{"type":"ping"}`)); err != nil {
			t.Fatal(err)
		}
		for {
			if m := read(); m["type"] == "pong" {
				break
			}
		}
		c.Close(websocket.StatusNormalClosure, "")

		// The proxy keeps the Host, so the gateway's origin check still
		// tells the page's own origin from a foreign one.
		_, resp, err := websocket.Dial(ctx, ws, &websocket.DialOptions{
			Subprotocols: []string{"pbxpulse.v1", "bearer." + proxyToken},
			HTTPHeader:   http.Header{"Origin": {"http://evil.example"}},
		})
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("foreign origin accepted or refused wrongly: %v", err)
		}
	})
}
