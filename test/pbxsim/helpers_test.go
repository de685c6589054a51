package pbxsim

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const capDir = "../../testdata/asterisk/22.10.1/ami"

func readCapture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(capDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// parseRaw splits raw AMI bytes (without banner) into messages.
func parseRaw(raw string) []msg {
	var out []msg
	for _, block := range strings.Split(raw, "\r\n\r\n") {
		if strings.TrimSpace(block) == "" {
			continue
		}
		var m msg
		for _, line := range strings.Split(block, "\r\n") {
			k, v, _ := strings.Cut(line, ": ")
			m = append(m, field{k, v})
		}
		out = append(out, m)
	}
	return out
}

// msgType is "Event:<name>" or "Response:<kind>".
func msgType(m msg) string {
	if len(m) == 0 {
		return ""
	}
	return m[0].k + ":" + m[0].v
}

func names(m msg) string {
	ks := make([]string, len(m))
	for i, f := range m {
		ks[i] = f.k
	}
	return strings.Join(ks, ",")
}

type capMsg struct {
	Banner bool       `json:"banner"`
	Fields [][]string `json:"fields"`
}

// loadMessages reads every parsed message of the given jsonl captures.
func loadMessages(t *testing.T, files ...string) []msg {
	t.Helper()
	var out []msg
	for _, f := range files {
		for _, line := range strings.Split(strings.TrimSpace(readCapture(t, f)), "\n") {
			var cm capMsg
			if err := json.Unmarshal([]byte(line), &cm); err != nil {
				t.Fatal(err)
			}
			if cm.Banner {
				continue
			}
			var m msg
			for _, kv := range cm.Fields {
				m = append(m, field{kv[0], kv[1]})
			}
			out = append(out, m)
		}
	}
	return out
}

// client is a minimal AMI client for tests.
type client struct {
	t      *testing.T
	conn   net.Conn
	r      *bufio.Reader
	banner string
	seen   []msg // every message read, in order
}

func dial(t *testing.T, addr net.Addr) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cl := &client{t: t, conn: c, r: bufio.NewReader(c)}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	cl.banner, err = cl.r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

func (c *client) send(kv ...string) {
	c.t.Helper()
	var b strings.Builder
	for i := 0; i < len(kv); i += 2 {
		b.WriteString(kv[i] + ": " + kv[i+1] + "\r\n")
	}
	b.WriteString("\r\n")
	if _, err := c.conn.Write([]byte(b.String())); err != nil {
		c.t.Fatal(err)
	}
}

// next reads one message; ok is false on timeout or EOF.
func (c *client) next(timeout time.Duration) (msg, bool) {
	c.conn.SetReadDeadline(time.Now().Add(timeout))
	var m msg
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return m, false
		}
		line = strings.TrimSuffix(line, "\r\n")
		if line == "" {
			c.seen = append(c.seen, m)
			return m, true
		}
		k, v, _ := strings.Cut(line, ": ")
		m = append(m, field{k, v})
	}
}

func (c *client) must() msg {
	c.t.Helper()
	m, ok := c.next(5 * time.Second)
	if !ok {
		c.t.Fatal("no message")
	}
	return m
}

// until reads messages up to and including the first one satisfying pred.
func (c *client) until(pred func(msg) bool) []msg {
	c.t.Helper()
	var out []msg
	for {
		m := c.must()
		out = append(out, m)
		if pred(m) {
			return out
		}
	}
}

// drain reads until the connection is quiet for d.
func (c *client) drain(d time.Duration) []msg {
	var out []msg
	for {
		m, ok := c.next(d)
		if !ok {
			return out
		}
		out = append(out, m)
	}
}

func (c *client) login(events string) {
	c.t.Helper()
	c.send("Action", "Login", "ActionID", "login", "Username", "monitor", "Secret", "monitor-secret", "Events", events)
	m := c.until(func(m msg) bool { return m.get("ActionID") == "login" })
	if got := m[len(m)-1].get("Response"); got != "Success" {
		c.t.Fatalf("login: %v", m)
	}
}

// action sends an action and returns everything up to its final message
// (the response, or the list's Complete event).
func (c *client) action(id string, kv ...string) []msg {
	c.t.Helper()
	c.send(append([]string{"ActionID", id}, kv...)...)
	var out []msg
	list := false
	for {
		m := c.must()
		if m.get("ActionID") != id {
			continue // interleaved event
		}
		out = append(out, m)
		if m.get("EventList") == "start" {
			list = true
			continue
		}
		if !list || m.get("EventList") == "Complete" {
			return out
		}
	}
}

func startServer(t *testing.T, cfg Config) (*Server, net.Addr) {
	t.Helper()
	s := New(cfg)
	addr, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, addr
}

func events(ms []msg) []msg {
	var out []msg
	for _, m := range ms {
		if len(m) > 0 && m[0].k == "Event" {
			out = append(out, m)
		}
	}
	return out
}
