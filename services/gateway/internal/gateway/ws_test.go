package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/pkg/testenv"
)

const jwtSecret = "0123456789abcdef0123456789abcdef-test-secret"

func signed(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claimsFor(tenant, role, sub string, exp time.Duration) jwt.MapClaims {
	return jwt.MapClaims{"tenant": tenant, "role": role, "sub": sub, "exp": time.Now().Add(exp).Unix()}
}

// TestAuth: who may read, and as whom. Every refusal is a 401 with the
// API's error body, over HTTP and on the WebSocket handshake.
func TestAuth(t *testing.T) {
	g := startGateway(t, map[string]string{"GATEWAY_JWT_SECRET": jwtSecret})
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	noExp := jwt.MapClaims{"tenant": "acme", "role": "viewer", "sub": "eve"}
	cases := []struct {
		name  string
		token string
		want  string // whoami as tenant/role/subject; "" for 401
	}{
		{"static admin", tokAcme, "acme/admin/token:acme"},
		{"static of another tenant", tokBeta, "beta/viewer/token:beta"},
		{"no token", "", ""},
		{"unknown static token", "s3cret-acme-token-1", ""},
		{"jwt", signed(t, jwt.SigningMethodHS256, []byte(jwtSecret), claimsFor("acme", "supervisor", "alice", time.Hour)), "acme/supervisor/alice"},
		{"jwt HS512", signed(t, jwt.SigningMethodHS512, []byte(jwtSecret), claimsFor("beta", "viewer", "bob", time.Hour)), "beta/viewer/bob"},
		{"jwt expired", signed(t, jwt.SigningMethodHS256, []byte(jwtSecret), claimsFor("acme", "admin", "alice", -time.Hour)), ""},
		{"jwt without exp", signed(t, jwt.SigningMethodHS256, []byte(jwtSecret), noExp), ""},
		{"jwt wrong key", signed(t, jwt.SigningMethodHS256, []byte(strings.Repeat("x", 40)), claimsFor("acme", "admin", "mallory", time.Hour)), ""},
		{"jwt alg none", signed(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claimsFor("acme", "admin", "mallory", time.Hour)), ""},
		{"jwt RS256 not configured", signed(t, jwt.SigningMethodRS256, rsaKey, claimsFor("acme", "admin", "mallory", time.Hour)), ""},
		{"jwt tenant not an id", signed(t, jwt.SigningMethodHS256, []byte(jwtSecret), claimsFor("acme.>", "admin", "mallory", time.Hour)), ""},
		{"jwt unknown role", signed(t, jwt.SigningMethodHS256, []byte(jwtSecret), claimsFor("acme", "root", "mallory", time.Hour)), ""},
		{"jwt tampered", tamper(signed(t, jwt.SigningMethodHS256, []byte(jwtSecret), claimsFor("acme", "viewer", "alice", time.Hour))), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body := g.get(t, "api/v1/whoami", tc.token)
			if tc.want == "" {
				var e struct{ Error, Message string }
				if code != http.StatusUnauthorized || json.Unmarshal([]byte(body), &e) != nil || e.Error != "unauthorized" || e.Message == "" {
					t.Fatalf("%d %s, want 401 unauthorized", code, body)
				}
				if tc.token != "" && strings.Contains(body, tc.token) {
					t.Fatal("the refusal echoes the token")
				}
				if _, err := g.tryDial(t, tc.token, "", nil); err == nil {
					t.Fatal("WebSocket accepted")
				}
				return
			}
			var w struct{ Tenant, Role, Subject string }
			if code != 200 || json.Unmarshal([]byte(body), &w) != nil {
				t.Fatalf("%d %s", code, body)
			}
			if got := w.Tenant + "/" + w.Role + "/" + w.Subject; got != tc.want {
				t.Fatalf("whoami %s, want %s", got, tc.want)
			}
			ws := g.dial(t, tc.token, "")
			if m := ws.next(); m.Type != "snapshot" {
				t.Fatalf("first message %q", m.Type)
			}
		})
	}
	// The token in the query, for curl.
	if code, _ := g.get(t, "api/v1/whoami?token="+tokBeta, ""); code != 200 {
		t.Errorf("?token=: %d", code)
	}
	// A role too weak is a 403 with the error body.
	req, _ := http.NewRequest("POST", g.url("api/v1/pbx/pbx1/actions/hangup"), strings.NewReader(`{"channel":"PJSIP/1001-00000001"}`))
	req.Header.Set("Authorization", "Bearer "+tokAcmeView)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var e struct{ Error string }
	_ = json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || e.Error != "forbidden" {
		t.Errorf("viewer hangs up: %d %q, want 403 forbidden", resp.StatusCode, e.Error)
	}
}

// tamper changes the payload of a JWT (role viewer to admin) and keeps
// its signature.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	p, _ := jwt.NewParser().DecodeSegment(parts[1])
	parts[1] = strings.TrimRight(jwtEncode(strings.Replace(string(p), "viewer", "admin", 1)), "=")
	return strings.Join(parts, ".")
}

func jwtEncode(s string) string {
	return (&jwt.Token{}).EncodeSegment([]byte(s))
}

// TestAuthPublicKey: with a public key, tokens it signs are accepted, and
// an HS256 token "signed" with the public key as a secret is refused (the
// algorithm confusion attack).
func TestAuthPublicKey(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	file := filepath.Join(t.TempDir(), "jwt.pub")
	if err := os.WriteFile(file, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, map[string]string{"GATEWAY_JWT_PUBLIC_KEY_FILE": file})
	cases := []struct {
		name  string
		token string
		want  int
	}{
		{"EdDSA", signed(t, jwt.SigningMethodEdDSA, priv, claimsFor("beta", "admin", "carol", time.Hour)), 200},
		{"HS256 with the public key as secret", signed(t, jwt.SigningMethodHS256, pemBytes, claimsFor("beta", "admin", "mallory", time.Hour)), 401},
		{"HS256 with the key's DER", signed(t, jwt.SigningMethodHS256, der, claimsFor("beta", "admin", "mallory", time.Hour)), 401},
		{"another key", func() string {
			_, other, _ := ed25519.GenerateKey(rand.Reader)
			return signed(t, jwt.SigningMethodEdDSA, other, claimsFor("beta", "admin", "mallory", time.Hour))
		}(), 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if code, body := g.get(t, "api/v1/whoami", tc.token); code != tc.want {
				t.Fatalf("%d %s, want %d", code, body, tc.want)
			}
		})
	}
}

// TestHandshake: the subprotocol, the token never echoed, the origin check.
func TestHandshake(t *testing.T) {
	g := startGateway(t, map[string]string{"ALLOW_ORIGIN": "panel.example.com"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+g.addr+"/monitor/ws", &websocket.DialOptions{Subprotocols: []string{wsProtocol, wsBearerPrefix + tokAcme}})
	if err != nil {
		t.Fatal(err)
	}
	c.CloseNow()
	if c.Subprotocol() != wsProtocol || resp.Header.Get("Sec-WebSocket-Protocol") != wsProtocol {
		t.Errorf("subprotocol %q, header %q; want %q alone", c.Subprotocol(), resp.Header.Get("Sec-WebSocket-Protocol"), wsProtocol)
	}
	for name, v := range resp.Header {
		if strings.Contains(strings.Join(v, " "), tokAcme) {
			t.Errorf("response header %s holds the token", name)
		}
	}
	cases := []struct {
		origin string
		ok     bool
	}{
		{"", true},                 // not a browser
		{"http://" + g.addr, true}, // the gateway's own page
		{"https://panel.example.com", true},
		{"https://evil.example.com", false},
		{"http://panel.example.com.evil.example", false},
	}
	for _, tc := range cases {
		h := http.Header{}
		if tc.origin != "" {
			h.Set("Origin", tc.origin)
		}
		ws, err := g.tryDial(t, tokAcme, "", &websocket.DialOptions{HTTPHeader: h})
		if (err == nil) != tc.ok {
			t.Errorf("origin %q: err %v, want ok %v", tc.origin, err, tc.ok)
		}
		if err == nil {
			ws.c.CloseNow()
		}
	}
	if code, body := g.get(t, "ws?since=soon", tokAcme); code != http.StatusBadRequest || !strings.Contains(body, `"invalid"`) {
		t.Errorf("since=soon: %d %s", code, body)
	}
}

// TestTenantIsolation: a token of tenant acme never receives a byte of
// tenant beta's, and the other way round, whatever it asks for: live view
// over the WebSocket (snapshot, deltas, resume), the HTTP snapshot and
// history, and logs.
func TestTenantIsolation(t *testing.T) {
	g := startGateway(t, nil)
	const acmeMark, betaMark = "ACME-ONLY", "BETA-SECRET"
	for v := uint64(1); v <= 5; v++ {
		g.commitDelta(t, delta("acme", v, acmeMark), true)
		g.commitDelta(t, delta("beta", v, betaMark), true)
	}
	t0 := time.Now().Add(-time.Hour)
	storeHistory(t, g.dsn, "acme", &pb.CallRecord{PbxId: "pbx1", Linkedid: "a1", StartedAt: timestampOf(t0), Disposition: "answered", CallerName: acmeMark})
	storeHistory(t, g.dsn, "beta", &pb.CallRecord{PbxId: "pbx1", Linkedid: "b1", StartedAt: timestampOf(t0), Disposition: "answered", CallerName: betaMark})
	publishLogs(t, g, "acme", "pbx1", "NOTICE", line(acmeMark+" notice", "1001", "", ""))
	publishLogs(t, g, "beta", "pbx1", "NOTICE", line(betaMark+" notice", "1001", "", ""))

	type side struct {
		token, mine, other string
		ws                 *wsClient
	}
	sides := []*side{{token: tokAcme, mine: acmeMark, other: betaMark}, {token: tokBeta, mine: betaMark, other: acmeMark}}
	for _, s := range sides {
		s.ws = g.dial(t, s.token, "")
		if m := s.ws.next(); m.Type != "snapshot" || m.version() != 5 || !strings.Contains(string(m.Data), s.mine) {
			t.Fatalf("%s: snapshot %s", s.mine, m.Data)
		}
		s.ws.send(`{"type":"subscribeLogs","id":"all","filter":{"pbx":"pbx1"}}`)
		s.ws.nextOf("logsSubscribed", "all")
		// Resuming from an old version reads the tenant's own deltas.
		r := g.dial(t, s.token, "?since=2")
		if m := r.next(); m.Type != "resumed" {
			t.Fatalf("resume: %s", m.Type)
		}
		for v := uint64(3); v <= 5; v++ {
			if m := r.next(); m.Type != "delta" || m.version() != v || !strings.Contains(string(m.Data), s.mine) {
				t.Fatalf("resume delta %d: %s", v, m.Data)
			}
		}
		s.ws.raw = append(s.ws.raw, r.raw...)
	}
	// A forged announcement of acme's delta on beta's subject is ignored.
	forged, _ := proto.Marshal(delta("acme", 6, acmeMark))
	if err := g.nc.Publish("view.beta.delta", forged); err != nil {
		t.Fatal(err)
	}
	for v := uint64(6); v <= 10; v++ {
		g.commitDelta(t, delta("beta", v, betaMark), true)
		g.commitDelta(t, delta("acme", v, acmeMark), true)
		publishLogs(t, g, "beta", "pbx1", "ERROR", line(betaMark+" live", "1001", "", ""))
		publishLogs(t, g, "acme", "pbx1", "ERROR", line(acmeMark+" live", "1001", "", ""))
	}
	for _, s := range sides {
		// Deltas up to 10, and the 5 live log lines of the own tenant.
		live := 0
		for v := uint64(5); v < 10 || live < 5; {
			m := s.ws.next()
			switch m.Type {
			case "delta":
				if m.version() != v+1 {
					t.Fatalf("%s: delta %d after %d", s.mine, m.version(), v)
				}
				v++
			case "logs":
				live += strings.Count(string(m.Data), s.mine+" live")
			}
		}
		for _, path := range []string{"api/v1/snapshot", "api/v1/history", "api/v1/history?format=csv", "api/v1/trunks/health"} {
			code, body := g.get(t, path, s.token)
			if code != 200 {
				t.Fatalf("%s: %d %s", path, code, body)
			}
			s.ws.raw = append(s.ws.raw, []byte(body))
			if path != "api/v1/trunks/health" && !strings.Contains(body, s.mine) {
				t.Errorf("%s of %s lacks its own data: %s", path, s.mine, body)
			}
		}
		for _, b := range s.ws.raw {
			if strings.Contains(string(b), s.other) {
				t.Fatalf("%s was sent the other tenant's data: %s", s.mine, b)
			}
		}
	}
}

// TestResume: a client that reconnects with ?since=N gets "resumed" and
// exactly the deltas after N, or a snapshot when that cannot be done.
func TestResume(t *testing.T) {
	// The hub stops as soon as its last client left, so each reconnect
	// below starts a hub with an empty ring: resumes read Postgres.
	g := startGateway(t, map[string]string{"WS_HUB_IDLE": "0s", "WS_RESUME_MAX": "20"})
	for v := uint64(1); v <= 30; v++ {
		g.commitDelta(t, delta("acme", v, "r"), true)
	}
	cases := []struct {
		since string
		want  string // resumed, snapshot
	}{
		{"30", "resumed"},
		{"25", "resumed"},
		{"10", "resumed"}, // 20 behind: the most resumed
		{"9", "snapshot"}, // further
		{"0", "snapshot"},
		{"31", "snapshot"}, // not a version this server has
		{"999", "snapshot"},
	}
	check := func(t *testing.T, since, want string) {
		t.Helper()
		ws := g.dial(t, tokAcme, "?since="+since)
		m := ws.next()
		if m.Type != want {
			t.Fatalf("since %s: %s, want %s", since, m.Type, want)
		}
		v := m.version()
		if want == "resumed" && v != parseU(since) {
			t.Fatalf("resumed at %d, want %s", v, since)
		}
		for v < 30 {
			m := ws.next()
			if m.Type != "delta" || m.version() != v+1 {
				t.Fatalf("since %s: %s %d after %d", since, m.Type, m.version(), v)
			}
			v++
		}
		ws.c.Close(websocket.StatusNormalClosure, "")
	}
	for _, tc := range cases {
		t.Run("store since "+tc.since, func(t *testing.T) { check(t, tc.since, tc.want) })
	}

	// With a client connected, the hub keeps recent deltas: a second
	// client resumes from its ring, and both go on live.
	keep := g.dial(t, tokAcme, "")
	keep.next()
	for v := uint64(31); v <= 40; v++ {
		g.commitDelta(t, delta("acme", v, "r"), true)
	}
	for v := uint64(31); v <= 40; v++ {
		if m := keep.next(); m.version() != v {
			t.Fatalf("live client: %s %d, want delta %d", m.Type, m.version(), v)
		}
	}
	ring := g.dial(t, tokAcme, "?since=33")
	if m := ring.next(); m.Type != "resumed" || m.version() != 33 {
		t.Fatalf("ring resume: %s %d", m.Type, m.version())
	}
	for v := uint64(34); v <= 40; v++ {
		if m := ring.next(); m.Type != "delta" || m.version() != v {
			t.Fatalf("ring resume: %s %d, want delta %d", m.Type, m.version(), v)
		}
	}
	g.commitDelta(t, delta("acme", 41, "r"), true)
	for _, ws := range []*wsClient{keep, ring} {
		if m := ws.next(); m.Type != "delta" || m.version() != 41 {
			t.Fatalf("after resume: %s %d", m.Type, m.version())
		}
	}

	// Pruned deltas cannot be resumed from.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, g.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `DELETE FROM deltas WHERE tenant='acme' AND version <= 35`); err != nil {
		t.Fatal(err)
	}
	keep.c.Close(websocket.StatusNormalClosure, "")
	ring.c.Close(websocket.StatusNormalClosure, "")
	testenv.Eventually(t, 20*time.Second, func() error {
		if n := g.metric(t, "pbxpulse_gateway_hubs"); n != 0 {
			return errorf("%v hubs", n)
		}
		return nil
	})
	for _, since := range []string{"30", "35"} {
		ws := g.dial(t, tokAcme, "?since="+since)
		if m := ws.next(); m.Type != "snapshot" || m.version() != 41 {
			t.Fatalf("since %s after pruning: %s %d", since, m.Type, m.version())
		}
		ws.c.Close(websocket.StatusNormalClosure, "")
	}

	// A rebuild: connected clients get the delta that says so and are
	// closed; nobody resumes across it.
	live := g.dial(t, tokAcme, "?since=41")
	if m := live.next(); m.Type != "resumed" {
		t.Fatalf("since 41: %s", m.Type)
	}
	g.commitDelta(t, &pb.Delta{Tenant: "acme", Version: 42, Rebuilt: true, CommittedAt: timestampOf(time.Now())}, true)
	if m := live.next(); m.Type != "delta" || m.version() != 42 || !strings.Contains(string(m.Data), `"rebuilt":true`) {
		t.Fatalf("rebuild: %s %s", m.Type, m.Data)
	}
	if code := live.closeStatus(); code != websocket.StatusServiceRestart {
		t.Fatalf("closed with %v after the rebuild, want 1012", code)
	}
	for _, since := range []string{"41", "42"} {
		ws := g.dial(t, tokAcme, "?since="+since)
		if m := ws.next(); m.Type != "snapshot" || m.version() != 42 {
			t.Fatalf("since %s across the rebuild: %s %d", since, m.Type, m.version())
		}
		ws.c.Close(websocket.StatusNormalClosure, "")
	}
}

func parseU(s string) uint64 {
	var v uint64
	_ = json.Unmarshal([]byte(s), &v)
	return v
}

// TestClientMessages: every malformed or refused client message gets an
// error message with its code, and the connection keeps working.
func TestClientMessages(t *testing.T) {
	g := startGateway(t, nil)
	ws := g.dial(t, tokAcme, "")
	ws.next()
	cases := []struct {
		name string
		msg  string
		code string
		id   string
	}{
		{"not json", "not json", "invalid", ""},
		{"json null", "null", "invalid", ""},
		{"array", `[{"type":"ping"}]`, "invalid", ""},
		{"no type", `{"no":"type"}`, "invalid", ""},
		{"type not a string", `{"type":7}`, "invalid", ""},
		{"unknown type", `{"type":"explode"}`, "invalid", ""},
		{"subscribe without id", `{"type":"subscribeLogs"}`, "invalid", ""},
		{"subscribe bad id", `{"type":"subscribeLogs","id":"<script>"}`, "invalid", ""},
		{"backlog too big", `{"type":"subscribeLogs","id":"a","backlog":5000}`, "invalid", "a"},
		{"backlog negative", `{"type":"subscribeLogs","id":"a","backlog":-1}`, "invalid", "a"},
		{"backlog not a number", `{"type":"subscribeLogs","id":"a","backlog":"all"}`, "invalid", ""},
		{"pbx wildcard", `{"type":"subscribeLogs","id":"a","filter":{"pbx":"*"}}`, "invalid", "a"},
		{"pbx subject tail", `{"type":"subscribeLogs","id":"a","filter":{"pbx":"pbx1.>"}}`, "invalid", "a"},
		{"level empty", `{"type":"subscribeLogs","id":"a","filter":{"level":[""]}}`, "invalid", "a"},
		{"filter too long", `{"type":"subscribeLogs","id":"a","filter":{"text":"` + strings.Repeat("x", 300) + `"}}`, "invalid", "a"},
		{"unsubscribe unknown", `{"type":"unsubscribeLogs","id":"nope"}`, "not_found", "nope"},
		{"no log stream yet", `{"type":"subscribeLogs","id":"b"}`, "not_found", "b"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ws.send(tc.msg)
			m := ws.next()
			if m.Type != "error" || m.Code != tc.code || m.ID != tc.id || m.Message == "" {
				t.Fatalf("%s answered with %+v, want error %s id %q", tc.msg, m, tc.code, tc.id)
			}
		})
	}
	if err := ws.c.Write(ws.ctx, websocket.MessageBinary, []byte(`{"type":"ping"}`)); err != nil {
		t.Fatal(err)
	}
	if m := ws.next(); m.Type != "error" || m.Code != "invalid" {
		t.Fatalf("binary message answered with %+v", m)
	}
	ws.send(`{"type":"ping"}`)
	if m := ws.next(); m.Type != "pong" {
		t.Fatalf("ping answered with %+v", m)
	}
	ws.send(`{"type":"requestUpdate"}`)
	if m := ws.next(); m.Type != "snapshot" {
		t.Fatalf("requestUpdate answered with %+v", m)
	}
	// At most 8 log subscriptions.
	publishLogs(t, g, "acme", "pbx1", "NOTICE", line("hello", "", "", ""))
	for i := range 8 {
		ws.send(map[string]any{"type": "subscribeLogs", "id": "s" + string(rune('0'+i)), "backlog": 0})
		ws.nextOf("logsSubscribed", "")
	}
	ws.send(`{"type":"subscribeLogs","id":"s0"}`)
	if m := ws.next(); m.Type != "error" || m.Code != "invalid" || m.ID != "s0" {
		t.Fatalf("the same id twice: %+v", m)
	}
	ws.send(`{"type":"subscribeLogs","id":"s8"}`)
	if m := ws.next(); m.Type != "error" || m.Code != "invalid" || m.ID != "s8" {
		t.Fatalf("a 9th subscription: %+v", m)
	}
	ws.send(`{"type":"unsubscribeLogs","id":"s3"}`)
	ws.send(`{"type":"subscribeLogs","id":"s8","backlog":0}`)
	if m := ws.next(); m.Type != "logsSubscribed" || m.ID != "s8" {
		t.Fatalf("after an unsubscribe: %+v", m)
	}
	// A message over the read limit closes the connection (1009).
	ws.send(`{"type":"ping","pad":"` + strings.Repeat("x", maxClientMessage) + `"}`)
	if code := ws.closeStatus(); code != websocket.StatusMessageTooBig {
		t.Fatalf("closed with %v, want 1009", code)
	}
	if n := g.metric(t, `pbxpulse_gateway_client_messages_total{type="invalid"}`); n != 8 {
		t.Errorf("invalid messages counted: %v", n)
	}
}

// TestRateLimit: beyond its burst a client's messages are refused with
// rate_limited errors, and one that keeps on is closed with 1008.
func TestRateLimit(t *testing.T) {
	// Practically no refill: the outcome depends on counts, not on time.
	g := startGateway(t, map[string]string{"WS_MESSAGE_RATE": "0.0001", "WS_MESSAGE_BURST": "5"})
	ws := g.dial(t, tokAcme, "")
	ws.next()
	for range 5 {
		ws.send(`{"type":"ping"}`)
		if m := ws.next(); m.Type != "pong" {
			t.Fatalf("within the burst: %+v", m)
		}
	}
	for i := range 4 {
		ws.send(`{"type":"ping"}`)
		if m := ws.next(); m.Type != "error" || m.Code != "rate_limited" {
			t.Fatalf("refusal %d: %+v", i, m)
		}
	}
	ws.send(`{"type":"ping"}`)
	if code := ws.closeStatus(); code != websocket.StatusPolicyViolation {
		t.Fatalf("closed with %v, want 1008", code)
	}
	if n := g.metric(t, `pbxpulse_gateway_disconnects_total{reason="rate_limited"}`); n != 1 {
		t.Errorf("rate-limit disconnects counted: %v", n)
	}
	// Others are not affected.
	other := g.dial(t, tokAcme, "")
	other.next()
	other.send(`{"type":"ping"}`)
	if m := other.next(); m.Type != "pong" {
		t.Fatalf("another client: %+v", m)
	}
}

// TestSlowClient: a client that does not read is cut off (1013) while a
// fast one of the same tenant receives every delta, in order.
func TestSlowClient(t *testing.T) {
	g := startGateway(t, map[string]string{"WS_SEND_BUFFER": "64"})
	// The slow client's socket takes little, so that the gateway's queue
	// for it fills soon.
	small := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	slow, err := g.tryDial(t, tokAcme, "", &websocket.DialOptions{HTTPClient: &http.Client{Transport: &http.Transport{DialContext: small.DialContext}}})
	if err != nil {
		t.Fatal(err)
	}
	fast := g.dial(t, tokAcme, "")
	if m := fast.next(); m.Type != "snapshot" {
		t.Fatal(m.Type)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, g.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	pad := strings.Repeat("p", 16<<10)
	const total, ahead = 1000, 32
	var fastAt atomic.Uint64
	done := make(chan error, 1)
	go func() {
		for v := uint64(1); v <= total; v++ {
			m, err := fast.read()
			if err == nil && (m.Type != "delta" || m.version() != v) {
				err = errorf("fast client: %s %d, want delta %d", m.Type, m.version(), v)
			}
			if err != nil {
				done <- err
				return
			}
			fastAt.Store(v)
		}
		done <- nil
	}()
	for v := uint64(1); v <= total; v++ {
		// Paced by the fast client (never more than ahead behind, well
		// within its queue), not by a clock: only the slow one is slow.
		testenv.Eventually(t, time.Minute, func() error {
			if v > ahead && fastAt.Load() < v-ahead {
				select {
				case err := <-done:
					t.Fatal(err)
				default:
				}
				return errorf("fast client at %d", fastAt.Load())
			}
			return nil
		})
		commitOn(t, conn, g.nc, delta("acme", v, pad), true)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := g.metric(t, `pbxpulse_gateway_disconnects_total{reason="too_slow"}`) + g.metric(t, `pbxpulse_gateway_disconnects_total{reason="write_timeout"}`); n != 1 {
		t.Errorf("%v clients cut, want the slow one", n)
	}
	// What the slow client reads now ends with its close (or a reset, when
	// its write was cut).
	if code := slow.closeStatus(); code != websocket.StatusTryAgainLater && code != -1 {
		t.Fatalf("slow client closed with %v", code)
	}
}

// TestTokenExpiry: a WebSocket opened with a JWT is closed (1008) when
// the JWT expires; the panel reconnects with a fresh one.
func TestTokenExpiry(t *testing.T) {
	g := startGateway(t, map[string]string{"GATEWAY_JWT_SECRET": jwtSecret})
	ws := g.dial(t, signed(t, jwt.SigningMethodHS256, []byte(jwtSecret), claimsFor("acme", "viewer", "alice", time.Second)), "")
	ws.next()
	if code := ws.closeStatus(); code != websocket.StatusPolicyViolation {
		t.Fatalf("closed with %v, want 1008", code)
	}
}

// TestShutdown: stopping the gateway says goodbye (1001) to its clients.
func TestShutdown(t *testing.T) {
	g := startGateway(t, nil)
	ws := g.dial(t, tokAcme, "")
	ws.next()
	g.stop()
	if code := ws.closeStatus(); code != websocket.StatusGoingAway {
		t.Fatalf("closed with %v, want 1001", code)
	}
}
