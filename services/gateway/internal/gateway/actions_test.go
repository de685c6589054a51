package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	envparse "github.com/caarlos0/env/v11"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/pkg/testenv"
)

// Static tokens of the API tests: tenant acme in every role, and a
// supervisor of another tenant.
const (
	tokViewer     = "acme-viewer-token-0001"
	tokSupervisor = "acme-supervisor-token-1"
	tokAdmin      = "acme-admin-token-000001"
	tokOther      = "other-supervisor-token1"
)

// apiEnv is a running gateway (real NATS and Postgres) for the HTTP API tests.
type apiEnv struct {
	base string // http://host:port/monitor/
	nc   *nats.Conn
}

func startAPIGateway(t *testing.T) apiEnv {
	t.Helper()
	ns := testenv.NATS(t)
	dsn := testenv.Postgres(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tokens := strings.Join([]string{"acme:viewer:" + tokViewer, "acme:supervisor:" + tokSupervisor,
		"acme:admin:" + tokAdmin, "other:supervisor:" + tokOther}, ",")
	// The defaults of every other setting, as the service would have them.
	var cfg Config
	if err := envparse.ParseWithOptions(&cfg, envparse.Options{Environment: map[string]string{
		"NATS_URL": ns.ClientURL(), "DATABASE_URL": dsn, "TENANT": "acme", "GATEWAY_TOKENS": tokens, "PATH_PREFIX": "/monitor/",
		"METRICS_ADDR": "panel", // every documented route on one listener
	}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	e := apiEnv{base: "http://" + ln.Addr().String() + "/monitor/", nc: nc}
	testenv.Eventually(t, 20*time.Second, func() error {
		resp, err := http.Get(e.base + "readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
	return e
}

// do sends a request with a bearer token ("" for none) and returns the
// status and the decoded JSON body.
func (e apiEnv) do(t *testing.T, method, path, token, body string, hdr ...string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, e.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
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
	var out map[string]any
	if len(b) > 0 && json.Unmarshal(b, &out) != nil {
		t.Fatalf("%s %s: body is not JSON: %q", method, path, b)
	}
	return resp.StatusCode, out
}

// respond answers pbx.acme.pbx1.cmd.* as a collector would, with the reply
// the request's channel names, and records every request.
func respond(t *testing.T, nc *nats.Conn, replies map[string]*pb.CommandReply) chan *nats.Msg {
	t.Helper()
	got := make(chan *nats.Msg, 64)
	sub, err := nc.Subscribe("pbx.acme.pbx1.cmd.*", func(m *nats.Msg) {
		got <- m
		var req pb.HangupRequest
		_ = protojson.Unmarshal(m.Data, &req)
		rep, ok := replies[req.GetChannel()]
		if !ok {
			return // never answers: the gateway times out
		}
		rep = proto.Clone(rep).(*pb.CommandReply)
		rep.RequestId = req.GetMeta().GetRequestId()
		data, _ := protojson.Marshal(rep)
		_ = m.Respond(data)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestActionReplyStatus(t *testing.T) {
	e := startAPIGateway(t)
	old := actionTimeout
	actionTimeout = 300 * time.Millisecond
	t.Cleanup(func() { actionTimeout = old })
	requests := respond(t, e.nc, map[string]*pb.CommandReply{
		"PJSIP/ok":       {Ok: true, Message: "Channel Hungup"},
		"PJSIP/invalid":  {ErrorCode: "invalid", Message: "channel is not valid"},
		"PJSIP/missing":  {ErrorCode: "not_found", Message: "No such channel"},
		"PJSIP/refused":  {ErrorCode: "pbx_error", Message: "Permission denied"},
		"PJSIP/busy":     {ErrorCode: "unavailable", Message: "too many commands in progress"},
		"PJSIP/follower": {ErrorCode: "not_leader", Message: "not leading pbx1"},
		"PJSIP/strange":  {ErrorCode: "something_new", Message: "?"},
	})
	cases := []struct {
		channel string
		status  int
		code    string // the body's "error"; "" when ok
	}{
		{"PJSIP/ok", 200, ""},
		{"PJSIP/invalid", 400, "invalid"},
		{"PJSIP/missing", 404, "not_found"},
		{"PJSIP/refused", 502, "pbx_error"},
		{"PJSIP/busy", 503, "unavailable"},
		{"PJSIP/follower", 503, "not_leader"},
		{"PJSIP/strange", 502, "something_new"},
		{"PJSIP/silent", 504, "timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.channel, func(t *testing.T) {
			// The body claims another actor and request id: the gateway
			// replaces the actor with the token's subject and takes the
			// request id from the header.
			body := `{"channel":"` + tc.channel + `","cause":16,"meta":{"actor":"mallory","requestId":"forged"}}`
			status, out := e.do(t, "POST", "api/v1/pbx/pbx1/actions/hangup", tokSupervisor, body, "X-Request-Id", "req-"+tc.channel[6:])
			if status != tc.status || out["error"] != nilIfEmpty(tc.code) {
				t.Fatalf("status %d body %v, want %d error %q", status, out, tc.status, tc.code)
			}
			if tc.status != 504 && (out["ok"] != (tc.code == "") || out["message"] == "" || out["requestId"] != "req-"+tc.channel[6:]) {
				t.Fatalf("body %v", out)
			}
			m := <-requests
			var req pb.HangupRequest
			if err := protojson.Unmarshal(m.Data, &req); err != nil {
				t.Fatal(err)
			}
			if req.GetMeta().GetActor() != "token:acme" || req.GetMeta().GetRequestId() != "req-"+tc.channel[6:] || req.GetCause() != 16 {
				t.Fatalf("request reached the collector as %v", &req)
			}
		})
	}
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// Requests the gateway refuses never reach NATS; another tenant's token
// reaches only its own tenant's subjects.
func TestActionRefusals(t *testing.T) {
	e := startAPIGateway(t)
	// A collector of acme that answers everything, and sees everything
	// published for acme.
	seen := make(chan *nats.Msg, 64)
	sub, err := e.nc.Subscribe("pbx.acme.>", func(m *nats.Msg) {
		seen <- m
		_ = m.Respond([]byte(`{"ok":true,"message":"done"}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, token, path, body string
		status                  int
		code                    string
		hdr                     []string
	}{
		{"no token", "", "pbx1/actions/hangup", `{"channel":"PJSIP/1001-1"}`, 401, "unauthorized", nil},
		{"viewer hangs up", tokViewer, "pbx1/actions/hangup", `{"channel":"PJSIP/1001-1"}`, 403, "forbidden", nil},
		{"viewer originates", tokViewer, "pbx1/actions/originate", `{"channel":"PJSIP/1001","exten":"1002"}`, 403, "forbidden", nil},
		{"supervisor reads config", tokSupervisor, "pbx1/actions/config_get", `{"section":"1001"}`, 403, "forbidden", nil},
		{"supervisor changes config", tokSupervisor, "pbx1/actions/config_update", `{"section":"1001","set":{"callerid":"x"}}`, 403, "forbidden", nil},
		{"unknown action", tokAdmin, "pbx1/actions/reboot", `{}`, 404, "not_found", nil},
		{"pbx id with a dot", tokAdmin, "pbx.1/actions/hangup", `{"channel":"PJSIP/1001-1"}`, 400, "invalid", nil},
		{"pbx id wildcard", tokAdmin, "*/actions/hangup", `{"channel":"PJSIP/1001-1"}`, 400, "invalid", nil},
		{"pbx id escape", tokAdmin, "pbx1%2Eother/actions/hangup", `{"channel":"PJSIP/1001-1"}`, 400, "invalid", nil},
		{"unknown field", tokSupervisor, "pbx1/actions/hangup", `{"chanel":"PJSIP/1001-1"}`, 400, "invalid", nil},
		{"wrong type", tokSupervisor, "pbx1/actions/hangup", `{"channel":5}`, 400, "invalid", nil},
		{"not JSON", tokSupervisor, "pbx1/actions/hangup", `channel=PJSIP/1001-1`, 400, "invalid", nil},
		{"too large", tokSupervisor, "pbx1/actions/hangup", `{"channel":"` + strings.Repeat("x", maxActionBody) + `"}`, 413, "invalid", nil},
		// Another tenant's supervisor naming acme's PBX commands its own
		// tenant's pbx1, where no collector answers.
		{"other tenant", tokOther, "pbx1/actions/hangup", `{"channel":"PJSIP/1001-1"}`, 503, "unavailable", nil},
		// What a page of another site can send without a CORS preflight.
		{"text/plain body", tokSupervisor, "pbx1/actions/hangup", `{"channel":"PJSIP/1001-1"}`, 415, "invalid", []string{"Content-Type", "text/plain"}},
		{"form body", tokSupervisor, "pbx1/actions/hangup", `{"channel":"PJSIP/1001-1"}`, 415, "invalid", []string{"Content-Type", "application/x-www-form-urlencoded"}},
		{"no content type", tokSupervisor, "pbx1/actions/hangup", `{"channel":"PJSIP/1001-1"}`, 415, "invalid", []string{"Content-Type", ""}},
		{"foreign origin", tokSupervisor, "pbx1/actions/hangup", `{"channel":"PJSIP/1001-1"}`, 403, "forbidden", []string{"Origin", "https://evil.example"}},
		{"cross-site fetch", tokSupervisor, "pbx1/actions/hangup", `{"channel":"PJSIP/1001-1"}`, 403, "forbidden", []string{"Sec-Fetch-Site", "cross-site"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, out := e.do(t, "POST", "api/v1/pbx/"+tc.path, tc.token, tc.body, tc.hdr...)
			if status != tc.status || out["error"] != tc.code || out["message"] == "" {
				t.Fatalf("status %d body %v, want %d %s", status, out, tc.status, tc.code)
			}
		})
	}
	// Then one accepted request: it must be the first thing acme's collector
	// ever saw.
	status, out := e.do(t, "POST", "api/v1/pbx/pbx1/actions/config_get", tokAdmin, `{"section":"1001"}`)
	if status != 200 || out["ok"] != true {
		t.Fatalf("config_get: %d %v", status, out)
	}
	if m := <-seen; m.Subject != "pbx.acme.pbx1.cmd.config_get" {
		t.Fatalf("acme's collector saw %s %s first", m.Subject, m.Data)
	}
}

// Every request message has the meta field the gateway overwrites.
func TestActionsHaveMeta(t *testing.T) {
	for name, spec := range actions {
		req := spec.newReq()
		if fd := metaField(req); fd == nil || fd.Message().FullName() != "pbxpulse.v1.CommandMeta" {
			t.Errorf("%s: %s has no CommandMeta meta field", name, req.ProtoReflect().Descriptor().FullName())
		}
	}
}
