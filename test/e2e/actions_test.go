package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/test/stack"
)

const (
	actionsJWTSecret = "actions-test-jwt-secret-of-32-bytes-at-least"
	actionsViewer    = "acme-viewer-static-token"
	actionsOther     = "other-supervisor-static-token"
	actionsWait      = 30 * time.Second
)

// mintJWT signs a token of tenant acme for sub with role.
func mintJWT(t *testing.T, sub, role string) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"tenant": "acme", "role": role, "sub": sub, "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte(actionsJWTSecret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// apiCall sends a request to the stack's gateway and returns the status and
// the raw body.
func apiCall(t *testing.T, s *stack.Stack, method, path, token, body string, hdr ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+s.HTTPAddr+"/"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

type actionReply struct {
	OK        bool   `json:"ok"`
	Error     string `json:"error"`
	ErrorCode string `json:"errorCode"`
	Message   string `json:"message"`
	RequestID string `json:"requestId"`
	Options   []struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	} `json:"options"`
}

func (r actionReply) option(name string) (string, bool) {
	for _, o := range r.Options {
		if o.Name == name {
			return o.Value, true
		}
	}
	return "", false
}

// Supervisor actions and configuration through the gateway's HTTP API, to
// the real collector leading the simulated PBX: a supervisor hangs up a
// live call, a viewer cannot, an admin reads and changes an endpoint's
// PJSIP section, a tenant cannot command another's PBX, and every accepted
// command is audited under the token's subject.
func TestGatewayActions(t *testing.T) {
	s := startStack(t, false,
		"GATEWAY_JWT_SECRET="+actionsJWTSecret,
		"GATEWAY_TOKENS=acme:viewer:"+actionsViewer+",other:supervisor:"+actionsOther)
	events := follow(t, s)
	supervisor, admin := mintJWT(t, "alice", "supervisor"), mintJWT(t, "root-admin", "admin")

	// Whatever reaches acme's command subjects, besides the collector.
	nc, err := nats.Connect(s.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	commands := make(chan *nats.Msg, 64)
	if _, err := nc.ChanSubscribe("pbx.acme.*.cmd.>", commands); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	s.Sim.Register("1001")
	s.Sim.Register("1002")
	call := s.Sim.Dial("1001", "1002")
	call.Answer()
	// The channel to hang up, as the panel finds it: in the snapshot.
	var channel string
	testenvEventually(t, actionsWait, func() error {
		status, body := apiCall(t, s, "GET", "api/v1/snapshot", actionsViewer, "")
		var snap struct {
			Calls []struct {
				Linkedid string `json:"linkedid"`
				State    string `json:"state"`
				Channels []struct {
					Name string `json:"name"`
				} `json:"channels"`
			} `json:"calls"`
		}
		if err := json.Unmarshal(body, &snap); status != 200 || err != nil {
			return fmt.Errorf("snapshot %d %v: %.200s", status, err, body)
		}
		for _, c := range snap.Calls {
			if c.Linkedid == call.Linkedid() && c.State == "bridged" && len(c.Channels) == 2 {
				channel = c.Channels[1].Name
				return nil
			}
		}
		return fmt.Errorf("call %s not bridged in the snapshot yet", call.Linkedid())
	})
	checkSnapshotSchema(t, s)

	hangup := `{"channel":"` + channel + `","meta":{"actor":"mallory"}}`
	refused := []struct {
		name, token, action, body string
		status                    int
	}{
		{"viewer hangs up", actionsViewer, "hangup", hangup, http.StatusForbidden},
		{"supervisor reads config", supervisor, "config_get", `{"section":"1001"}`, http.StatusForbidden},
		{"other tenant hangs up", actionsOther, "hangup", hangup, http.StatusServiceUnavailable},
		{"unknown field", supervisor, "hangup", `{"channel":"` + channel + `","reason":"x"}`, http.StatusBadRequest},
	}
	for _, tc := range refused {
		status, body := apiCall(t, s, "POST", "api/v1/pbx/pbx1/actions/"+tc.action, tc.token, tc.body)
		if status != tc.status {
			t.Fatalf("%s: %d %s, want %d", tc.name, status, body, tc.status)
		}
	}
	if len(s.Sim.Truth().Channels) != 2 {
		t.Fatalf("the call lost channels to refused requests: %v", s.Sim.Truth().Channels)
	}

	status, body := apiCall(t, s, "POST", "api/v1/pbx/pbx1/actions/hangup", supervisor, hangup, "X-Request-Id", "e2e-hangup-1")
	var rep actionReply
	if err := json.Unmarshal(body, &rep); err != nil || status != 200 || !rep.OK || rep.RequestID != "e2e-hangup-1" {
		t.Fatalf("supervisor hangup: %d %s", status, body)
	}
	// Nothing refused reached acme's collector: the hang-up is the first
	// command it got.
	if m := <-commands; m.Subject != "pbx.acme.pbx1.cmd.hangup" || !strings.Contains(string(m.Data), "e2e-hangup-1") {
		t.Fatalf("first command on acme's subjects: %s %s", m.Subject, m.Data)
	}
	testenvEventually(t, actionsWait, func() error {
		if n := len(s.Sim.Truth().Channels); n != 0 {
			return fmt.Errorf("simulator still has %d channels", n)
		}
		return nil
	})
	testenvEventually(t, actionsWait, func() error {
		_, body := apiCall(t, s, "GET", "api/v1/snapshot", actionsViewer, "")
		if strings.Contains(string(body), call.Linkedid()) {
			return fmt.Errorf("call %s still in the snapshot", call.Linkedid())
		}
		return nil
	})

	// An admin reads 1001's auth section: the password stays in the PBX.
	status, body = apiCall(t, s, "POST", "api/v1/pbx/pbx1/actions/config_get", admin, `{"section":"1001","type":"auth"}`)
	rep = actionReply{}
	if err := json.Unmarshal(body, &rep); err != nil || status != 200 || !rep.OK {
		t.Fatalf("config_get: %d %s", status, body)
	}
	if u, _ := rep.option("username"); u != "1001" || strings.Contains(string(body), "pw1001") {
		t.Fatalf("config_get auth: %s", body)
	}
	if pw, ok := rep.option("password"); !ok || pw != "" {
		t.Fatalf("config_get: password option %q %v", pw, ok)
	}
	// config_update is validated, then applied.
	for _, tc := range []struct{ body, code string }{
		{`{"section":"1001","set":{"type":"aor"}}`, "invalid"},
		{`{"section":"1001","set":{"no_such_option":"1"}}`, "invalid"},
		{`{"section":"1001","set":{"callerid":"x\r\nAction: Command"}}`, "invalid"},
		{`{"section":"1001","set":{}}`, "invalid"},
		{`{"section":"9999","set":{"callerid":"x"}}`, "not_found"},
	} {
		status, body := apiCall(t, s, "POST", "api/v1/pbx/pbx1/actions/config_update", admin, tc.body)
		rep := actionReply{}
		if err := json.Unmarshal(body, &rep); err != nil || rep.OK || rep.Error != tc.code || (status != 400 && status != 404) {
			t.Errorf("config_update %s: %d %s, want %s", tc.body, status, body, tc.code)
		}
	}
	status, body = apiCall(t, s, "POST", "api/v1/pbx/pbx1/actions/config_update", admin,
		`{"section":"1001","set":{"callerid":"\"Alice Admin\" <1001>"}}`, "X-Request-Id", "e2e-config-1")
	if status != 200 {
		t.Fatalf("config_update: %d %s", status, body)
	}
	_, body = apiCall(t, s, "POST", "api/v1/pbx/pbx1/actions/config_get", admin, `{"section":"1001"}`)
	rep = actionReply{}
	_ = json.Unmarshal(body, &rep)
	if cid, _ := rep.option("callerid"); cid != `"Alice Admin" <1001>` {
		t.Fatalf("callerid after config_update: %q (%s)", cid, body)
	}

	// The collector audited both under the tokens' subjects, not the actor
	// the body claimed; nothing was audited for the refused requests.
	evs := events.until(t, "audit events", actionsWait, func(evs []*pb.Event) bool {
		n := 0
		for _, e := range evs {
			if a := e.GetAudit(); a != nil && (a.RequestId == "e2e-hangup-1" || a.RequestId == "e2e-config-1") {
				n++
			}
		}
		return n == 2
	})
	for _, e := range evs {
		a := e.GetAudit()
		if a == nil {
			continue
		}
		switch a.RequestId {
		case "e2e-hangup-1":
			if a.Actor != "alice" || !a.Ok || a.Action != "hangup" || a.Target != channel {
				t.Errorf("hangup audit: %v", a)
			}
		case "e2e-config-1":
			if a.Actor != "root-admin" || !a.Ok || a.Action != "config_update" {
				t.Errorf("config_update audit: %v", a)
			}
		}
		if a.Actor == "mallory" || a.Actor == "token:acme" || a.Actor == "token:other" {
			t.Errorf("audit of a request the gateway refused or forged: %v", a)
		}
	}
}

// checkSnapshotSchema validates a live snapshot (a call in progress, PBX,
// endpoints, registrations) against docs/openapi.yaml's Snapshot, with
// every object closed: each field the gateway sends is documented.
func checkSnapshotSchema(t *testing.T, s *stack.Stack) {
	t.Helper()
	root, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "docs", "openapi.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatal(err)
	}
	no := false
	for _, sc := range doc.Components.Schemas {
		if v := sc.Value; v.Type.Is("object") && len(v.Properties) > 0 && v.AdditionalProperties.Has == nil && v.AdditionalProperties.Schema == nil {
			v.AdditionalProperties.Has = &no
		}
	}
	status, body := apiCall(t, s, "GET", "api/v1/snapshot", actionsViewer, "")
	var v any
	if err := json.Unmarshal(body, &v); status != 200 || err != nil {
		t.Fatalf("snapshot: %d %v", status, err)
	}
	if err := doc.Components.Schemas["Snapshot"].Value.VisitJSON(v, openapi3.MultiErrors()); err != nil {
		t.Fatalf("live snapshot does not match docs/openapi.yaml: %v\n%.2000s", err, body)
	}
}
