package pbxsim

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"
)

func channelsListed(t *testing.T, c *client, id string) []msg {
	t.Helper()
	ms := c.action(id, "Action", "CoreShowChannels")
	done := ms[len(ms)-1]
	if done.get("Event") != "CoreShowChannelsComplete" || done.get("EventList") != "Complete" {
		t.Fatalf("bad list end %v", done)
	}
	items := events(ms[:len(ms)-1])
	if done.get("ListItems") != fmt.Sprint(len(items)) {
		t.Errorf("ListItems %s for %d items", done.get("ListItems"), len(items))
	}
	for _, m := range items {
		if m.get("ActionID") != id {
			t.Errorf("item without ActionID: %v", m)
		}
	}
	return items
}

func endpointState(t *testing.T, c *client, id, ext string) msg {
	t.Helper()
	for _, m := range c.action(id, "Action", "PJSIPShowEndpoints") {
		if m.get("Event") == "EndpointList" && m.get("ObjectName") == ext {
			return m
		}
	}
	t.Fatalf("endpoint %s not listed", ext)
	return nil
}

func TestSessionCallLifecycle(t *testing.T) {
	s, addr := startServer(t, Config{})
	c := dial(t, addr)
	if c.banner != "Asterisk Call Manager/11.0.0\r\n" {
		t.Fatalf("banner %q", c.banner)
	}
	c.login("on")
	s.Register("1001")
	s.Register("1002")
	if ep := endpointState(t, c, "ep1", "1001"); ep.get("DeviceState") != "Not in use" || ep.get("Contacts") != "1001/sip:1001@127.0.0.1:5061," {
		t.Errorf("registered endpoint: %v", ep)
	}
	if ep := endpointState(t, c, "ep2", "1003"); ep.get("DeviceState") != "Unavailable" || ep.get("Contacts") != "" {
		t.Errorf("unregistered endpoint: %v", ep)
	}

	call := s.Dial("1001", "1002")
	call.Answer()
	if n := s.Channels(); n != 2 {
		t.Errorf("Channels() = %d", n)
	}
	items := channelsListed(t, c, "ch1")
	if len(items) != 2 {
		t.Fatalf("CoreShowChannels listed %d channels, want 2", len(items))
	}
	for _, m := range items {
		if m.get("Linkedid") != call.Linkedid() || m.get("ChannelStateDesc") != "Up" || m.get("BridgeId") == "" {
			t.Errorf("channel %v", m)
		}
	}
	if ep := endpointState(t, c, "ep3", "1002"); ep.get("DeviceState") != "Busy" || ep.get("ActiveChannels") != "1" {
		t.Errorf("endpoint in call: %v", ep)
	}
	call.Hangup()
	call.Hangup() // idempotent
	if items := channelsListed(t, c, "ch2"); len(items) != 0 {
		t.Fatalf("after hangup %d channels listed", len(items))
	}
	if ep := endpointState(t, c, "ep4", "1002"); ep.get("DeviceState") != "Not in use" || ep.get("ActiveChannels") != "0" {
		t.Errorf("endpoint after call: %v", ep)
	}

	// The events of the call arrived on the session, in order, with the
	// final Hangups carrying Normal Clearing.
	var seq []string
	for _, m := range c.seen {
		if e := m.get("Event"); e == "Newchannel" || e == "DialBegin" || e == "DialEnd" || e == "BridgeEnter" || e == "Hangup" {
			seq = append(seq, e)
			if e == "Hangup" && (m.get("Cause") != "16" || m.get("Cause-txt") != "Normal Clearing") {
				t.Errorf("hangup %v", m)
			}
		}
	}
	if fmt.Sprint(seq) != "[Newchannel Newchannel DialBegin DialEnd BridgeEnter BridgeEnter Hangup Hangup]" {
		t.Errorf("event sequence %v", seq)
	}
}

func TestSessionAuth(t *testing.T) {
	_, addr := startServer(t, Config{User: "u", Secret: "p"})
	c := dial(t, addr)
	m := c.action("p1", "Action", "Ping")
	if m[0].get("Response") != "Error" || m[0].get("Message") != "Permission denied" {
		t.Errorf("ping before login: %v", m)
	}
	m = c.action("l1", "Action", "Login", "Username", "u", "Secret", "wrong")
	if m[0].get("Response") != "Error" || m[0].get("Message") != "Authentication failed" {
		t.Errorf("bad login: %v", m)
	}
	if _, ok := c.next(2 * time.Second); ok {
		t.Error("session still open after failed login")
	}

	c = dial(t, addr)
	m = c.action("l2", "Action", "Login", "Username", "u", "Secret", "p", "Events", "off")
	if m[0].get("Message") != "Authentication accepted" {
		t.Fatalf("login: %v", m)
	}
	m = c.action("p2", "Action", "Ping")
	if m[0].get("Ping") != "Pong" || m[0].get("ActionID") != "p2" || m[0][1].k != "ActionID" {
		t.Errorf("ping: %v", m)
	}
	m = c.action("x", "Action", "Bogus")
	if m[0].get("Message") != "Invalid/unknown command: Bogus. Use Action: ListCommands to show available commands." {
		t.Errorf("unknown action: %v", m)
	}
	m = c.action("bye", "Action", "Logoff")
	if m[0].get("Response") != "Goodbye" || m[0].get("Message") != "Thanks for all the fish." {
		t.Errorf("logoff: %v", m)
	}
	if _, err := io.ReadAll(c.r); err != nil {
		t.Errorf("connection not closed cleanly after Logoff: %v", err)
	}
}

func TestEventsOffAndClassFilter(t *testing.T) {
	s, addr := startServer(t, Config{})
	off := dial(t, addr)
	off.login("off")
	sys := dial(t, addr)
	sys.login("system")
	s.Register("1001")
	s.Dial("1001", "1002").Hangup()
	if got := events(off.action("m", "Action", "Ping")); len(got) != 0 {
		t.Errorf("Events: off session got %d events", len(got))
	}
	for _, m := range events(sys.action("m", "Action", "Ping")) {
		if m.get("Privilege") != "system,all" {
			t.Errorf("system-only session got %v", m)
		}
	}
	if len(events(sys.seen)) == 0 {
		t.Error("system session got nothing")
	}
}

// TestSlowReaderDoesNotBlock: a client that never reads must neither block
// the PBX nor lose or reorder its backlog.
func TestSlowReaderDoesNotBlock(t *testing.T) {
	s, addr := startServer(t, Config{})
	slow := dial(t, addr)
	slow.login("on")
	fast := dial(t, addr)
	fast.login("on")
	done := make(chan struct{})
	const calls = 400
	go func() {
		defer close(done)
		for range calls {
			c := s.Dial("1001", "1002")
			c.Answer()
			c.Hangup()
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("PBX blocked by a non-reading client")
	}
	fast.action("f", "Action", "Ping")
	slow.action("f", "Action", "Ping")
	// Skip the login chatter (each session sees the other's SuccessfulAuth).
	from := func(ms []msg) []msg {
		for i, m := range ms {
			if m.get("Event") == "ChallengeSent" {
				return ms[i:]
			}
		}
		return nil
	}
	a, b := events(from(fast.seen)), events(from(slow.seen))
	if len(a) != len(b) {
		t.Fatalf("fast got %d messages, slow %d", len(a), len(b))
	}
	hangups := 0
	for i := range a {
		if string(a[i].encode()) != string(b[i].encode()) {
			t.Fatalf("message %d differs between sessions", i)
		}
		if a[i].get("Event") == "Hangup" {
			hangups++
		}
	}
	if hangups != 2*calls {
		t.Errorf("%d hangups, want %d", hangups, 2*calls)
	}
}

func TestConcurrentSessionsRace(t *testing.T) {
	s, addr := startServer(t, Config{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := dial(t, addr)
			c.login("on")
			for j := range 20 {
				c.action(fmt.Sprintf("a%d-%d", i, j), "Action", "CoreShowChannels")
			}
		}()
	}
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			from, to := fmt.Sprint(1001+i), fmt.Sprint(1002+i)
			s.Register(from)
			for range 20 {
				c := s.Dial(from, to)
				if i%2 == 0 {
					c.Answer()
				}
				c.Hangup()
			}
		}()
	}
	wg.Wait()
	if n := s.Channels(); n != 0 {
		t.Errorf("%d channels left", n)
	}
}

func TestDropSessionsAndClose(t *testing.T) {
	s := New(Config{})
	addr, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, addr)
	c.login("on")
	s.DropSessions()
	if _, err := io.ReadAll(c.r); err != nil {
		t.Logf("read after drop: %v", err)
	}
	c2 := dial(t, addr) // listener still up
	c2.login("on")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ms := c2.drain(time.Second)
	if len(ms) == 0 || ms[len(ms)-1].get("Event") != "Shutdown" {
		t.Errorf("no Shutdown before close: %v", ms)
	}
	if _, ok := c2.next(time.Second); ok {
		t.Error("session open after Close")
	}
	if err := s.Close(); err != nil {
		t.Error(err)
	}
}

func TestRunDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for several seconds")
	}
	s, addr := startServer(t, Config{})
	c := dial(t, addr)
	c.login("on")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.RunDemo(ctx)
	}()
	// The demo's pacing is random (phones register over up to 3 s, calls
	// start 1-4 s apart), so wait for a call rather than a fixed time; ending
	// the demo must then hang it up.
	got := map[string]int{}
	deadline := time.Now().Add(60 * time.Second)
	for got["Newchannel"] == 0 && time.Now().Before(deadline) {
		m, ok := c.next(15 * time.Second)
		if !ok {
			break
		}
		got[m.get("Event")]++
	}
	cancel()
	<-done
	for _, m := range c.drain(time.Second) {
		got[m.get("Event")]++
	}
	if n := s.Channels(); n != 0 {
		t.Errorf("demo left %d channels", n)
	}
	if got["PeerStatus"] < 5 || got["Newchannel"] == 0 || got["Hangup"] == 0 {
		t.Errorf("demo activity: %v", got)
	}
}
