package pbxsim

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// amiSession returns the id of the newest AMI session.
func amiSession(t *testing.T, s *Server) string {
	t.Helper()
	var id string
	for _, si := range s.Sessions() {
		if si.Kind == "ami" {
			id = si.ID
		}
	}
	if id == "" {
		t.Fatal("no AMI session")
	}
	return id
}

func TestFreezeAMISession(t *testing.T) {
	s, addr := startServer(t, Config{})
	frozen := dial(t, addr)
	frozen.login("on")
	live := dial(t, addr)
	live.login("on")
	frozen.action("f0", "Action", "Ping") // read everything sent so far
	ids := s.Sessions()
	if len(ids) != 2 || !ids[0].Events || ids[0].User != "monitor" {
		t.Fatalf("sessions %+v", ids)
	}
	if !s.Freeze(ids[0].ID) || s.Freeze("0xnope") {
		t.Fatal("Freeze results")
	}
	if !s.Sessions()[0].Frozen {
		t.Error("not reported frozen")
	}
	s.Register("1001")
	frozen.send("Action", "Ping", "ActionID", "p")
	live.action("l", "Action", "Ping") // the live session still works
	if m, ok := frozen.next(300 * time.Millisecond); ok {
		t.Errorf("frozen session received %v", m)
	}
	// The connection is still open: a write succeeds and no EOF arrives.
	frozen.send("Action", "Ping")
	if _, err := frozen.r.Peek(1); err == nil {
		t.Error("data on a frozen session")
	}
}

func TestDropAndSwapNext(t *testing.T) {
	s, addr := startServer(t, Config{})
	c := dial(t, addr)
	c.login("system")
	id := amiSession(t, s)
	var seen []string
	collect := func(n int) {
		for range n {
			m := c.must()
			if m.get("Event") == "PeerStatus" || m.get("Event") == "ContactStatus" {
				seen = append(seen, m.get("Event")+" "+m.get("Peer")+m.get("AOR"))
			}
		}
	}
	c.action("m0", "Action", "Ping")
	// Register emits (system class) PeerStatus, ContactStatus per phone.
	if !s.DropNext(id, 2) || s.DropNext("x", 1) {
		t.Fatal("DropNext results")
	}
	s.Register("1001") // both dropped
	s.Register("1002")
	if !s.SwapNext(id) {
		t.Fatal("SwapNext")
	}
	s.Register("1003") // Contact before Peer
	collect(4)
	want := []string{"PeerStatus PJSIP/1002", "ContactStatus 1002", "ContactStatus 1003", "PeerStatus PJSIP/1003"}
	if !slices.Equal(seen, want) {
		t.Errorf("got %v\nwant %v", seen, want)
	}
}

func TestFreezeARIWebsocket(t *testing.T) {
	s, _, addr := startARI(t, Config{})
	ws := dialARI(t, addr, "app=monitor-app&subscribeAll=true", nil)
	var id string
	for _, si := range s.Sessions() {
		if si.Kind == "ari" {
			id = si.ID
			if !slices.Equal(si.Apps, []string{"monitor-app"}) || si.User != "ari" {
				t.Errorf("ARI session %+v", si)
			}
		}
	}
	s.Register("1001")
	if !ws.waitFor(5*time.Second, func(ms []ariMsg) bool { return len(ms) >= 3 }) {
		t.Fatal("no events before freezing")
	}
	if !s.Freeze(id) {
		t.Fatal("Freeze")
	}
	s.Register("1002")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := ws.conn.Ping(ctx); err == nil {
		t.Error("a frozen websocket answered a ping")
	}
	if n := len(ws.all()); n != 3 {
		t.Errorf("%d events on a frozen websocket", n)
	}
}

func TestARIWebsocketSubscriptions(t *testing.T) {
	s, _, addr := startARI(t, Config{})
	all := dialARI(t, addr, "app=monitor-app,other&subscribeAll=true", nil)
	own := dialARI(t, addr, "app=monitor-app&api_key=ari:ari-secret", http0())
	s.Register("1001")
	c := s.CallApp("1001", "700")
	c.Hangup()
	s.ariMark(1)
	gotAll := all.untilMark(1)
	gotOwn := own.untilMark(1)
	// subscribeAll: every event twice (once per application); StasisStart
	// only for monitor-app.
	apps := map[string]int{}
	for _, m := range gotAll {
		apps[m.str("application")]++
		if m.typ() == "StasisStart" && m.str("application") != "monitor-app" {
			t.Errorf("StasisStart for %s", m.str("application"))
		}
	}
	if apps["monitor-app"] == 0 || apps["monitor-app"] != apps["other"]+4 { // StasisStart/End, Playback x2
		t.Errorf("per-application counts %v", apps)
	}
	// Without subscribeAll only the Stasis channel's events, from
	// StasisStart to StasisEnd.
	types := ariTypes(gotOwn, nil)
	if len(types) == 0 || types[0] != "StasisStart" || types[len(types)-1] != "StasisEnd" {
		t.Errorf("own subscription got %v", types)
	}
	for _, m := range gotOwn {
		if m.typ() == "DeviceStateChanged" || m.typ() == "PeerStatusChange" {
			t.Errorf("unsubscribed event %s", m.typ())
		}
	}
	code, _, body := httpGet(t, addr, "/ari/applications/other", true)
	if code != 200 || string(body) != `{"name":"other","channel_ids":["__AST_CHANNEL_ALL_TOPIC"],"bridge_ids":["__AST_BRIDGE_ALL_TOPIC"],"endpoint_ids":["__AST_ENDPOINT_ALL_TOPIC"],"device_names":["__AST_DEVICE_STATE_ALL_TOPIC"],"events_allowed":[],"events_disallowed":[]}` {
		t.Errorf("application: %d %s", code, body)
	}
}

// http0 is an empty header set: authenticate with api_key only.
func http0() map[string][]string { return map[string][]string{} }

func TestARIWebsocketRefused(t *testing.T) {
	_, _, addr := startARI(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, tc := range []struct {
		query string
		auth  bool
		code  int
	}{
		{"app=monitor-app", false, 401},
		{"subscribeAll=true", true, 400},
	} {
		opts := &websocket.DialOptions{}
		if tc.auth {
			opts.HTTPHeader = map[string][]string{"Authorization": {"Basic YXJpOmFyaS1zZWNyZXQ="}}
		}
		_, resp, err := websocket.Dial(ctx, "ws://"+addr.String()+"/ari/events?"+tc.query, opts)
		if err == nil || resp == nil || resp.StatusCode != tc.code {
			t.Errorf("%s: %v %v", tc.query, resp, err)
		}
	}
}

func TestDropARI(t *testing.T) {
	s, _, addr := startARI(t, Config{})
	ws := dialARI(t, addr, "app=monitor-app&subscribeAll=true", nil)
	s.DropARI()
	if ws.waitFor(5*time.Second, func([]ariMsg) bool { return false }); ws.err == nil {
		t.Error("websocket still open after DropARI")
	}
	ws2 := dialARI(t, addr, "app=monitor-app&subscribeAll=true", nil)
	s.Register("1001")
	if !ws2.waitFor(5*time.Second, func(ms []ariMsg) bool { return len(ms) >= 3 }) {
		t.Error("no events on a new websocket after DropARI")
	}
}

func TestCloseEndsWebsockets(t *testing.T) {
	s, _, addr := startARI(t, Config{})
	ws := dialARI(t, addr, "app=monitor-app&subscribeAll=true", nil)
	s.Close()
	if ws.waitFor(5*time.Second, func([]ariMsg) bool { return false }); ws.err == nil {
		t.Error("websocket still open after Close")
	}
}
