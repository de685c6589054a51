package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// wsClient follows the gateway's WebSocket like the panel does, and checks
// the protocol on the way: one snapshot, then consecutive versions.
type wsClient struct {
	t         *testing.T
	conn      *websocket.Conn
	version   uint64
	endpoints map[string]map[string]any
	calls     map[string]map[string]any
	pbxs      map[string]map[string]any
	deltas    int
}

func dial(t *testing.T, url string) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	conn.SetReadLimit(16 << 20)
	t.Cleanup(func() { conn.CloseNow() })
	c := &wsClient{t: t, conn: conn}
	c.read(ctx) // the snapshot
	return c
}

type serverMsg struct {
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

type rows struct {
	Version   string           `json:"version"`
	Endpoints []map[string]any `json:"endpoints"`
	Calls     []map[string]any `json:"calls"`
	Pbxs      []map[string]any `json:"pbxs"`
	Changes   []map[string]any `json:"changes"`
}

func (c *wsClient) read(ctx context.Context) {
	c.t.Helper()
	_, data, err := c.conn.Read(ctx)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	var m serverMsg
	if err := json.Unmarshal(data, &m); err != nil {
		c.t.Fatalf("bad message %q: %v", data, err)
	}
	var r rows
	if err := json.Unmarshal(m.Data, &r); err != nil {
		c.t.Fatalf("bad %s: %v", m.Type, err)
	}
	v, _ := strconv.ParseUint(r.Version, 10, 64)
	switch m.Type {
	case "snapshot":
		if c.endpoints != nil {
			c.t.Fatalf("second snapshot without asking")
		}
		c.endpoints, c.calls, c.pbxs = map[string]map[string]any{}, map[string]map[string]any{}, map[string]map[string]any{}
		for _, e := range r.Endpoints {
			c.endpoints[key(e, "name")] = e
		}
		for _, e := range r.Calls {
			c.calls[key(e, "linkedid")] = e
		}
		for _, p := range r.Pbxs {
			c.pbxs[str(p, "pbx_id")] = p
		}
	case "delta":
		if v != c.version+1 {
			c.t.Fatalf("delta version %d after %d: gap or duplicate", v, c.version)
		}
		c.deltas++
		for _, ch := range r.Changes {
			switch {
			case ch["endpoint"] != nil:
				e := ch["endpoint"].(map[string]any)
				c.endpoints[key(e, "name")] = e
			case ch["call"] != nil:
				e := ch["call"].(map[string]any)
				c.calls[key(e, "linkedid")] = e
			case ch["call_removed"] != nil:
				delete(c.calls, key(ch["call_removed"].(map[string]any), "linkedid"))
			case ch["pbx"] != nil:
				p := ch["pbx"].(map[string]any)
				c.pbxs[str(p, "pbx_id")] = p
			}
		}
	default:
		c.t.Fatalf("unexpected message type %q: %s", m.Type, data)
	}
	c.version = v
}

// until reads messages until cond holds.
func (c *wsClient) until(what string, timeout time.Duration, cond func() bool) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for !cond() {
		if ctx.Err() != nil {
			c.t.Fatalf("timed out waiting for %s (version %d)", what, c.version)
		}
		c.read(ctx)
	}
}

func key(m map[string]any, k string) string { return str(m, "pbx_id") + "/" + str(m, k) }

func str(m map[string]any, k string) string {
	if m == nil {
		return ""
	}
	s, _ := m[k].(string)
	return s
}

func TestPipelineRegisterCallHangup(t *testing.T) {
	s := startStack(t, false)
	ws := dial(t, "ws://"+s.HTTPAddr+"/ws")

	ws.until("pbx1 connected and endpoints listed", 30*time.Second, func() bool {
		return str(ws.pbxs["pbx1"], "state") == "connected" && ws.endpoints["pbx1/1001"] != nil
	})
	if k := str(ws.endpoints["pbx1/provider"], "kind"); k != "ENDPOINT_KIND_TRUNK" {
		t.Errorf("provider kind %q, want trunk", k)
	}
	if st := str(ws.endpoints["pbx1/1001"], "status"); st != "offline" {
		t.Errorf("1001 before REGISTER: %q, want offline", st)
	}

	s.Sim.Register("1001")
	s.Sim.Register("1002")
	ws.until("1001 online", 10*time.Second, func() bool { return str(ws.endpoints["pbx1/1001"], "status") == "online" })
	contacts, _ := ws.endpoints["pbx1/1001"]["contacts"].([]any)
	if len(contacts) != 1 || str(contacts[0].(map[string]any), "uri") != "sip:1001@127.0.0.1:5061" {
		t.Errorf("1001 contacts %v", contacts)
	}

	call := s.Sim.Dial("1001", "1002")
	id := "pbx1/" + call.Linkedid()
	ws.until("call ringing", 10*time.Second, func() bool { return str(ws.calls[id], "state") == "ringing" })
	call.Answer()
	ws.until("call bridged", 10*time.Second, func() bool { return str(ws.calls[id], "state") == "bridged" })
	c := ws.calls[id]
	if str(c, "caller_num") != "1001" || str(c, "callee_num") != "1002" || str(c, "callee_name") != "Ext 1002" {
		t.Errorf("call parties %v", c)
	}
	if str(ws.endpoints["pbx1/1001"], "status") != "in_call" {
		t.Errorf("1001 during call: %q", str(ws.endpoints["pbx1/1001"], "status"))
	}
	call.Hangup()
	ws.until("call gone", 10*time.Second, func() bool { return ws.calls[id] == nil })
	ws.until("1001 back online", 10*time.Second, func() bool { return str(ws.endpoints["pbx1/1001"], "status") == "online" })
	if ws.deltas == 0 {
		t.Fatal("no deltas")
	}

	// A second client joining now gets a snapshot (the gateway may serve a
	// recent one it keeps, followed by the deltas after it) that brings it
	// to what the first one built from deltas.
	ws2 := dial(t, "ws://"+s.HTTPAddr+"/ws")
	ws2.until("late joiner up to date", 10*time.Second, func() bool { return ws2.version >= ws.version })
	if fmt.Sprint(ws2.endpoints["pbx1/1001"]["status"]) != "online" || len(ws2.calls) != 0 {
		t.Errorf("late joiner sees %v / %d calls at version %d", ws2.endpoints["pbx1/1001"], len(ws2.calls), ws2.version)
	}
}

// TestPBXLinkLossAndResync cuts the AMI link while a call is up; the call
// ends and an extension unregisters while nobody watches. After the
// collector reconnects, its resync must close the call and correct the
// extension, and the PBX must have been shown as disconnected meanwhile.
func TestPBXLinkLossAndResync(t *testing.T) {
	s := startStack(t, false, "AMI_KEEPALIVE=1s")
	ws := dial(t, "ws://"+s.HTTPAddr+"/ws")
	s.Sim.Register("1001")
	s.Sim.Register("1002")
	s.Sim.Register("1003")
	call := s.Sim.Dial("1001", "1002")
	call.Answer()
	id := "pbx1/" + call.Linkedid()
	ws.until("call bridged", 30*time.Second, func() bool { return str(ws.calls[id], "state") == "bridged" })
	ws.until("1003 online", 10*time.Second, func() bool { return str(ws.endpoints["pbx1/1003"], "status") == "online" })

	s.Sim.DropSessions()
	call.Hangup()
	s.Sim.Unregister("1003")
	sawDown := false
	ws.until("resynced: call closed, 1003 offline", 30*time.Second, func() bool {
		if st := str(ws.pbxs["pbx1"], "state"); st == "disconnected" {
			sawDown = true
		}
		return sawDown && str(ws.pbxs["pbx1"], "state") == "connected" &&
			ws.calls[id] == nil && str(ws.endpoints["pbx1/1003"], "status") == "offline"
	})
	if st := str(ws.endpoints["pbx1/1001"], "status"); st != "online" {
		t.Errorf("1001 after resync: %q, want online", st)
	}
}

// TestNATSRestart stops NATS while a call ends and an extension registers;
// once NATS is back, nothing that happened meanwhile is missing from the
// views the browser sees.
func TestNATSRestart(t *testing.T) {
	s := startStack(t, false)
	ws := dial(t, "ws://"+s.HTTPAddr+"/ws")
	s.Sim.Register("1001")
	s.Sim.Register("1002")
	call := s.Sim.Dial("1001", "1002")
	call.Answer()
	id := "pbx1/" + call.Linkedid()
	ws.until("call bridged", 30*time.Second, func() bool { return str(ws.calls[id], "state") == "bridged" })

	done := make(chan error, 1)
	go func() { done <- s.RestartNATS(2 * time.Second) }()
	time.Sleep(500 * time.Millisecond) // NATS is down now
	call.Hangup()
	s.Sim.Register("1003")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ws.until("call gone and 1003 online after NATS came back", 60*time.Second, func() bool {
		return ws.calls[id] == nil && str(ws.endpoints["pbx1/1003"], "status") == "online"
	})
}
