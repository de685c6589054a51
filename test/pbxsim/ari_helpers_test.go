package pbxsim

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

const ariCapDir = "../../testdata/asterisk/22.10.1/ari"

// ariMsg is one decoded ARI event with its top-level key order.
type ariMsg struct {
	raw  string
	keys []string
	m    map[string]any
}

func (a ariMsg) typ() string { s, _ := a.m["type"].(string); return s }

// str walks nested objects: str("channel", "name").
func (a ariMsg) str(path ...string) string {
	var v any = a.m
	for _, p := range path {
		o, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		v = o[p]
	}
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return ""
	default:
		b, _ := json.Marshal(x)
		return string(b)
	}
}

// topKeys returns the keys of the top-level JSON object in document order.
func topKeys(t testing.TB, raw string) []string {
	t.Helper()
	return objKeys(t, json.NewDecoder(strings.NewReader(raw)))
}

func objKeys(t testing.TB, d *json.Decoder) []string {
	t.Helper()
	tok, err := d.Token()
	if err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %v %v", tok, err)
	}
	var keys []string
	for d.More() {
		k, err := d.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.(string))
		var skip json.RawMessage
		if err := d.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	d.Token()
	return keys
}

// nestedKeys returns the key order of the object at key k.
func nestedKeys(t testing.TB, raw, k string) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatal(err)
	}
	if m[k] == nil || m[k][0] != '{' {
		return nil
	}
	return topKeys(t, string(m[k]))
}

func parseARI(t testing.TB, raw string) ariMsg {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatalf("bad ARI JSON %q: %v", raw, err)
	}
	return ariMsg{raw: raw, keys: topKeys(t, raw), m: m}
}

func loadARIPhase(t *testing.T, phase string) []ariMsg {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(ariCapDir, "by-phase", phase+".ari.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []ariMsg
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		out = append(out, parseARI(t, l))
	}
	return out
}

// wsClient collects every event of one /ari/events websocket.
type wsClient struct {
	t    *testing.T
	conn *websocket.Conn
	mu   sync.Mutex
	cond *sync.Cond
	msgs []ariMsg
	err  error
	read int // first message not yet consumed by next()
}

func dialARI(t *testing.T, addr net.Addr, query string, hdr http.Header) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if hdr == nil {
		hdr = http.Header{"Authorization": {"Basic YXJpOmFyaS1zZWNyZXQ="}} // ari:ari-secret
	}
	conn, _, err := websocket.Dial(ctx, "ws://"+addr.String()+"/ari/events?"+query, &websocket.DialOptions{HTTPHeader: hdr})
	if err != nil {
		t.Fatal(err)
	}
	conn.SetReadLimit(1 << 22)
	c := &wsClient{t: t, conn: conn}
	c.cond = sync.NewCond(&c.mu)
	go func() {
		for {
			_, b, err := conn.Read(context.Background())
			c.mu.Lock()
			if err != nil {
				c.err = err
				c.cond.Broadcast()
				c.mu.Unlock()
				return
			}
			c.msgs = append(c.msgs, parseARI(t, string(b)))
			c.cond.Broadcast()
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() { conn.CloseNow() })
	return c
}

// waitFor blocks until pred holds for the messages received so far, the
// connection ends, or the deadline passes.
func (c *wsClient) waitFor(d time.Duration, pred func([]ariMsg) bool) bool {
	deadline := time.Now().Add(d)
	timer := time.AfterFunc(d, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer timer.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for !pred(c.msgs) {
		if c.err != nil || time.Now().After(deadline) {
			return false
		}
		c.cond.Wait()
	}
	return true
}

// untilMark returns every event since the previous call up to the mark
// event n (injected with ariMark), excluding the mark.
func (c *wsClient) untilMark(n int) []ariMsg {
	c.t.Helper()
	want := itoa(n)
	ok := c.waitFor(5*time.Second, func(ms []ariMsg) bool {
		for _, m := range ms[c.read:] {
			if m.typ() == "TestMark" && m.str("n") == want {
				return true
			}
		}
		return false
	})
	if !ok {
		c.t.Fatalf("mark %d never arrived", n)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []ariMsg
	for i := c.read; i < len(c.msgs); i++ {
		m := c.msgs[i]
		if m.typ() == "TestMark" && m.str("n") == want {
			c.read = i + 1
			return out
		}
		if m.typ() != "TestMark" {
			out = append(out, m)
		}
	}
	return out
}

func (c *wsClient) all() []ariMsg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]ariMsg(nil), c.msgs...)
}

// ariMark injects a test-only event into every websocket so a test can
// cut the stream into phases deterministically.
func (s *Server) ariMark(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ari(&ariEvent{typ: "TestMark", body: obj{{"n", itoa(n)}}, toAll: true})
}

func startARI(t *testing.T, cfg Config) (*Server, net.Addr, net.Addr) {
	t.Helper()
	s, amiAddr := startServer(t, cfg)
	addr, err := s.ListenARI("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return s, amiAddr, addr
}

// httpGet performs an ARI GET and returns status, headers and body.
func httpGet(t *testing.T, addr net.Addr, path string, auth bool) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+addr.String()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth {
		req.SetBasicAuth("ari", "ari-secret")
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
	return resp.StatusCode, resp.Header, bytes.TrimSpace(b)
}

// harness is a simulator with an AMI events session and an ARI websocket
// (app monitor-app, subscribeAll) attached, all extensions registered.
type harness struct {
	t    *testing.T
	s    *Server
	ami  *client
	ws   *wsClient
	amiN int
	mark int
	ari  net.Addr
	addr net.Addr
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	s, amiAddr, ariAddr := startARI(t, cfg)
	h := &harness{t: t, s: s, ari: ariAddr, addr: amiAddr}
	h.ami = dial(t, amiAddr)
	h.ami.login("on")
	h.ws = dialARI(t, ariAddr, "app=monitor-app&subscribeAll=true", nil)
	for _, e := range []string{"1001", "1002", "1003", "1004", "1005"} {
		s.Register(e)
	}
	h.phase()
	return h
}

// phase returns the AMI events and ARI events since the previous phase.
func (h *harness) phase() ([]msg, []ariMsg) {
	h.t.Helper()
	h.mark++
	id := "mark-" + itoa(h.mark)
	h.ami.action(id, "Action", "Ping")
	var ami []msg
	for _, m := range h.ami.seen[h.amiN:] {
		if m.get("ActionID") != id {
			ami = append(ami, m)
		}
	}
	h.amiN = len(h.ami.seen)
	h.s.ariMark(h.mark)
	return ami, h.ws.untilMark(h.mark)
}

// amiTypes lists the Event names of ms, leaving out the noisy ones.
func amiTypes(ms []msg, keep func(msg) bool) []string {
	var out []string
	for _, m := range ms {
		if e := m.get("Event"); e != "" && (keep == nil || keep(m)) {
			out = append(out, e)
		}
	}
	return out
}

func ariTypes(ms []ariMsg, keep func(ariMsg) bool) []string {
	var out []string
	for _, m := range ms {
		if keep == nil || keep(m) {
			out = append(out, m.typ())
		}
	}
	return out
}

// subsequence reports whether want appears in got in order (not
// necessarily adjacent).
func subsequence(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

func findEvent(ms []msg, ev string) msg {
	for _, m := range ms {
		if m.get("Event") == ev {
			return m
		}
	}
	return nil
}

func findARI(ms []ariMsg, typ string) (ariMsg, bool) {
	for _, m := range ms {
		if m.typ() == typ {
			return m, true
		}
	}
	return ariMsg{}, false
}
