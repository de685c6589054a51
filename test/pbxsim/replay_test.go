package pbxsim

import (
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"
)

// requests splits a captured client stream into action blocks (with their
// terminating blank line), keeping the bytes as sent.
func requests(raw string) []string {
	var out []string
	for _, b := range strings.SplitAfter(raw, "\r\n\r\n") {
		if b != "" {
			out = append(out, b)
		}
	}
	return out
}

// byActionID groups captured messages by ActionID.
func byActionID(ms []msg) map[string][]msg {
	out := map[string][]msg{}
	for _, m := range ms {
		out[m.get("ActionID")] = append(out[m.get("ActionID")], m)
	}
	return out
}

func compareMsgs(t *testing.T, what string, got, want []msg, volatile map[string]*regexp.Regexp) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: got %d messages, capture %d:\n%v", what, len(got), len(want), got)
		return
	}
	for i := range got {
		if names(got[i]) != names(want[i]) {
			t.Errorf("%s #%d: fields\n got %s\nwant %s", what, i, names(got[i]), names(want[i]))
			continue
		}
		for j, f := range got[i] {
			if re, ok := volatile[f.k]; ok {
				if !re.MatchString(f.v) {
					t.Errorf("%s #%d: %s=%q does not look like %q", what, i, f.k, f.v, want[i][j].v)
				}
				continue
			}
			if f.v != want[i][j].v {
				t.Errorf("%s #%d: %s=%q, capture %q", what, i, f.k, f.v, want[i][j].v)
			}
		}
	}
}

// TestReplayBadLogin sends the captured bytes of the failed-login session
// and expects Asterisk's bytes back, then the connection to be closed.
func TestReplayBadLogin(t *testing.T) {
	_, addr := startServer(t, Config{})
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if _, err := c.Write([]byte(readCapture(t, "ami-badlogin.out.raw"))); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c) // EOF: the PBX drops the session
	if err != nil {
		t.Fatal(err)
	}
	if want := readCapture(t, "ami-badlogin.in.raw"); string(got) != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
	if time.Since(start) < authFailDelay {
		t.Errorf("failed login answered without Asterisk's delay")
	}
}

// TestReplayIdleActions replays the idle actions session on a PBX in the
// capture's state (1001-1004 registered, trunk unregistered, no calls).
func TestReplayIdleActions(t *testing.T) {
	s, addr := startServer(t, Config{})
	for _, e := range []string{"1001", "1002", "1003", "1004"} {
		s.Register(e)
	}
	c := dial(t, addr)
	want := readCapture(t, "ami-actions-idle.in.raw")
	if c.banner != banner || !strings.HasPrefix(want, banner) {
		t.Fatalf("banner %q", c.banner)
	}
	supported := regexp.MustCompile(`(?m)^Action: (Login|Ping|CoreSettings|CoreStatus|PJSIPShowEndpoints|PJSIPShowContacts|PJSIPShowRegistrationsOutbound|CoreShowChannels|NoSuchAction|Logoff)\r$`)
	reqs := requests(readCapture(t, "ami-actions-idle.out.raw"))

	// Login answer byte for byte.
	if _, err := c.conn.Write([]byte(reqs[0])); err != nil {
		t.Fatal(err)
	}
	loginWant := "Response: Success\r\nActionID: ami-actions-idle-1\r\nMessage: Authentication accepted\r\n\r\n"
	if !strings.HasPrefix(want, banner+loginWant) {
		t.Fatal("capture does not start with the expected login exchange")
	}
	buf := make([]byte, len(loginWant))
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c.r, buf); err != nil || string(buf) != loginWant {
		t.Fatalf("login response %q (%v)", buf, err)
	}

	capt := byActionID(parseRaw(strings.TrimPrefix(want, banner)))
	volatile := map[string]*regexp.Regexp{
		"Timestamp":       regexp.MustCompile(`^\d{10}\.\d{6}$`),
		"ExpirationTime":  regexp.MustCompile(`^\d{10}$`),
		"CallId":          regexp.MustCompile(`^1-\d+@127\.0\.0\.1$`),
		"CoreStartupDate": regexp.MustCompile(`^\d{4}-\d\d-\d\d$`),
		"CoreReloadDate":  regexp.MustCompile(`^\d{4}-\d\d-\d\d$`),
		"CoreStartupTime": regexp.MustCompile(`^\d\d:\d\d:\d\d$`),
		"CoreReloadTime":  regexp.MustCompile(`^\d\d:\d\d:\d\d$`),
	}
	objRe := regexp.MustCompile(`^100\d;@[0-9a-f]{32}$`)
	n := 0
	for _, r := range reqs[1:] {
		if !supported.MatchString(r) {
			continue
		}
		n++
		id := parseRaw(r)[0].get("ActionID")
		if _, err := c.conn.Write([]byte(r)); err != nil {
			t.Fatal(err)
		}
		var got []msg
		for len(got) < len(capt[id]) {
			m, ok := c.next(5 * time.Second)
			if !ok {
				break
			}
			got = append(got, m)
		}
		for _, m := range got {
			if m.get("Event") == "ContactList" {
				if !objRe.MatchString(m.get("ObjectName")) {
					t.Errorf("contact ObjectName %q", m.get("ObjectName"))
				}
				for i := range m {
					if m[i].k == "ObjectName" {
						m[i].v = "" // hash of the real contact; compared by shape above
					}
				}
			}
		}
		wantMsgs := capt[id]
		for _, m := range wantMsgs {
			if m.get("Event") == "ContactList" {
				for i := range m {
					if m[i].k == "ObjectName" {
						m[i].v = ""
					}
				}
			}
		}
		compareMsgs(t, id, got, wantMsgs, volatile)
	}
	if n != 9 {
		t.Errorf("replayed %d actions, want 9", n)
	}
	if m, ok := c.next(2 * time.Second); ok {
		t.Errorf("unexpected message after Logoff: %v", m)
	}
}

// TestReplayInCallChannels checks CoreShowChannels during an answered call
// against the in-call capture.
func TestReplayInCallChannels(t *testing.T) {
	s, addr := startServer(t, Config{})
	s.Register("1001")
	s.Register("1002")
	call := s.Dial("1001", "1002")
	call.Answer()
	c := dial(t, addr)
	reqs := requests(readCapture(t, "ami-actions-incall.out.raw"))
	if _, err := c.conn.Write([]byte(reqs[0] + reqs[1])); err != nil {
		t.Fatal(err)
	}
	got := c.until(func(m msg) bool { return m.get("Event") == "CoreShowChannelsComplete" })
	capt := parseRaw(strings.TrimPrefix(readCapture(t, "ami-actions-incall.in.raw"), banner))
	want := capt[:len(got)]
	bridge := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	compareMsgs(t, "incall", got, want, map[string]*regexp.Regexp{
		"Uniqueid": regexp.MustCompile(`^\d{10}\.[01]$`),
		"Linkedid": regexp.MustCompile(`^\d{10}\.0$`),
		"Duration": regexp.MustCompile(`^00:00:0\d$`),
		"BridgeId": bridge,
	})
	if got[2].get("BridgeId") != got[3].get("BridgeId") {
		t.Errorf("channels in different bridges")
	}
	call.Hangup()
}
