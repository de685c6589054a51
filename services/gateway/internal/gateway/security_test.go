package gateway

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

func TestFrameAncestorsConfig(t *testing.T) {
	for _, tt := range []struct {
		value, want string
		ok          bool
	}{
		{"'self'", "'self'", true},
		{"  'self'   https://portal.example.com ", "'self' https://portal.example.com", true},
		{"'none'", "'none'", true},
		{"self https://portal.example.com", "'self' https://portal.example.com", true}, // from an env file

		{"'self'; script-src *", "", false}, // a second directive
		{"https://a.example.com, https://b.example.com", "", false},
		{"   ", "", false},
	} {
		c := Config{Tenant: "acme", PathPrefix: "/", SendBuffer: 128, WriteTimeout: 1, PingInterval: 1, MessageRate: 1, MessageBurst: 1, FrameAncestors: tt.value}
		err := c.Validate()
		if (err == nil) != tt.ok {
			t.Errorf("FRAME_ANCESTORS=%q: error %v, want ok %v", tt.value, err, tt.ok)
			continue
		}
		if tt.ok && c.FrameAncestors != tt.want {
			t.Errorf("FRAME_ANCESTORS=%q became %q, want %q", tt.value, c.FrameAncestors, tt.want)
		}
	}
}

// The panel may be framed by its own pages only, unless FRAME_ANCESTORS
// names the sites that embed it.
func TestFrameAncestorsHeader(t *testing.T) {
	for _, tt := range []struct {
		vars map[string]string
		want string
	}{
		{nil, "frame-ancestors 'self'"},
		{map[string]string{"FRAME_ANCESTORS": "'self' https://portal.example.com"}, "frame-ancestors 'self' https://portal.example.com"},
	} {
		g := startGateway(t, tt.vars)
		resp, err := http.Get(g.url(""))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.HasSuffix(csp, "; "+tt.want) {
			t.Errorf("Content-Security-Policy %q, want it to end with %q", csp, tt.want)
		}
		if xfo := resp.Header.Get("X-Frame-Options"); xfo != "" {
			t.Errorf("X-Frame-Options %q: the CSP decides", xfo)
		}
	}
}

// /metrics names every tenant: by default it is served on METRICS_ADDR,
// not with the panel, where any tenant's user could read it.
func TestMetricsApartFromThePanel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	g := startGateway(t, map[string]string{"METRICS_ADDR": addr})
	if code, _ := g.get(t, "metrics", ""); code != http.StatusNotFound {
		t.Errorf("/monitor/metrics with the panel: %d, want 404", code)
	}
	if code, _ := g.get(t, "metrics", tokAcme); code != http.StatusNotFound {
		t.Errorf("/monitor/metrics with a token: %d, want 404", code)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "pbxpulse_gateway_connections") {
		t.Fatalf("METRICS_ADDR /metrics: %d %.200s", resp.StatusCode, body)
	}
}
