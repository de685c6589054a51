package ari

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

const (
	testUser = "ari"
	testPass = "ari-secret"
)

type frame struct {
	typ  websocket.MessageType
	data string
}

func textFrames(texts []string) []frame {
	out := make([]frame, len(texts))
	for i, s := range texts {
		out[i] = frame{websocket.MessageText, s}
	}
	return out
}

// ariServer is an httptest server that behaves like Asterisk's
// /ari/events: basic auth (401 with Asterisk's headers and body otherwise),
// upgrade, then the given frames.
type ariServer struct {
	*httptest.Server
	frames []frame
	// answerPings: the server reads (and so answers pings and close);
	// false plays a peer that is gone without closing TCP.
	answerPings bool
	// closeAfter ends the websocket normally after the frames.
	closeAfter bool
	requests   atomic.Int32
	lastQuery  atomic.Value
	stop       chan struct{}
}

func newARIServer(t *testing.T, frames []frame) *ariServer {
	s := &ariServer{frames: frames, answerPings: true, stop: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(func() { close(s.stop); s.Close() })
	return s
}

func (s *ariServer) serve(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	s.lastQuery.Store(r.URL.RawQuery)
	if r.URL.Path != "/ari/events" {
		http.NotFound(w, r)
		return
	}
	u, p, ok := r.BasicAuth()
	if !ok || u != testUser || p != testPass {
		// As captured in rest/idle-noauth.http.
		w.Header().Set("WWW-Authenticate", `Basic realm="Asterisk REST Interface"`)
		w.Header().Set("Content-type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"message":"Authentication required"}`)
		return
	}
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx := r.Context()
	if s.answerPings {
		ctx = c.CloseRead(ctx)
	}
	for _, f := range s.frames {
		if err := c.Write(ctx, f.typ, []byte(f.data)); err != nil {
			return
		}
	}
	if s.closeAfter {
		_ = c.Close(websocket.StatusNormalClosure, "")
		return
	}
	select {
	case <-ctx.Done():
	case <-s.stop:
	}
}

func (s *ariServer) config() Config {
	return Config{
		URL: s.URL, User: testUser, Password: testPass, Apps: []string{"monitor-app"}, SubscribeAll: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func dial(t *testing.T, cfg Config) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// next returns the next event or fails after a timeout.
func next(t *testing.T, c *Conn) Event {
	t.Helper()
	select {
	case ev, ok := <-c.Events():
		if !ok {
			t.Fatalf("events closed: %v", c.Err())
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
	}
	return Event{}
}

func TestConnDeliversCapturedFrames(t *testing.T) {
	texts := capturedFrames(t)
	s := newARIServer(t, textFrames(texts))
	c := dial(t, s.config())
	for i, want := range texts {
		ev := next(t, c)
		if ev.Err != nil {
			t.Fatalf("event %d: %v", i+1, ev.Err)
		}
		if ev.Seq != uint64(i+1) || string(ev.Raw) != want || ev.Received.IsZero() {
			t.Fatalf("event %d: seq %d, raw differs=%v", i+1, ev.Seq, string(ev.Raw) != want)
		}
	}
	if q, _ := s.lastQuery.Load().(string); q != "app=monitor-app&subscribeAll=true" {
		t.Errorf("query %q", q)
	}
	st := c.Stats()
	if st.Frames != 204 || st.Malformed != 0 || st.Unknown != 2 { // PlaybackStarted, PlaybackFinished
		t.Errorf("stats %+v", st)
	}
}

// TestConnSlowConsumer: a consumer far slower than the PBX gets every event
// in order; the reader waits (back-pressure) and short pings do not mistake
// that wait for a dead peer.
func TestConnSlowConsumer(t *testing.T) {
	texts := capturedFrames(t)
	s := newARIServer(t, textFrames(texts))
	cfg := s.config()
	cfg.Buffer = 2
	cfg.PingInterval, cfg.PingTimeout = 20*time.Millisecond, 20*time.Millisecond
	c := dial(t, cfg)
	for i, want := range texts {
		if i < 20 {
			time.Sleep(15 * time.Millisecond) // slower than ping interval + timeout in total
		}
		ev := next(t, c)
		if ev.Seq != uint64(i+1) || string(ev.Raw) != want {
			t.Fatalf("event %d: seq %d or raw out of order", i+1, ev.Seq)
		}
	}
	if err := c.Err(); err != nil {
		t.Fatalf("connection failed under back-pressure: %v", err)
	}
	if st := c.Stats(); st.Backpressure <= 0 {
		t.Errorf("no back-pressure recorded: %+v", st)
	}
}

func TestConnUnknownEventType(t *testing.T) {
	unknown := `{"type":"PbxpulseFutureEvent","application":"monitor-app","timestamp":"2026-11-21T19:09:15.921+0000","asterisk_id":"02:00:00:00:00:01"}`
	playback := firstOfType(t, "PlaybackStarted", nil)
	created := firstOfType(t, "ChannelCreated", nil)
	s := newARIServer(t, textFrames([]string{unknown, playback, created}))
	c := dial(t, s.config())
	for i, want := range []string{"PbxpulseFutureEvent", "PlaybackStarted", "ChannelCreated"} {
		ev := next(t, c)
		if ev.Err != nil || ev.Type != want || ev.Seq != uint64(i+1) {
			t.Fatalf("event %d: %+v", i+1, ev)
		}
		v, err := ev.Decode()
		if err != nil || (v == nil) == Known(want) {
			t.Errorf("%s decoded to %T, %v", want, v, err)
		}
	}
	if st := c.Stats(); st.Unknown != 2 {
		t.Errorf("unknown %d, want 2", st.Unknown)
	}
}

func TestConnMalformedFrame(t *testing.T) {
	good := capturedFrames(t)[:2]
	s := newARIServer(t, []frame{
		{websocket.MessageText, good[0]},
		{websocket.MessageText, `{"type":"ChannelCreated",`},
		{websocket.MessageText, `{"application":"monitor-app"}`},
		{websocket.MessageBinary, "\x00\x01\x02"},
		{websocket.MessageText, good[1]},
	})
	c := dial(t, s.config())
	for i := 1; i <= 5; i++ {
		ev := next(t, c)
		if ev.Seq != uint64(i) {
			t.Fatalf("seq %d, want %d", ev.Seq, i)
		}
		bad := i >= 2 && i <= 4
		if bad != (ev.Err != nil) {
			t.Fatalf("event %d: err %v", i, ev.Err)
		}
		if bad && !strings.HasPrefix(ev.Err.Error(), "ari: malformed frame") {
			t.Errorf("event %d: error %q", i, ev.Err)
		}
		if i == 5 && string(ev.Raw) != good[1] {
			t.Error("frame after the malformed ones not delivered intact")
		}
	}
	if st := c.Stats(); st.Malformed != 3 || st.Frames != 5 {
		t.Errorf("stats %+v", st)
	}
	if c.Err() != nil {
		t.Errorf("connection ended: %v", c.Err())
	}
}

func TestDialUnauthorized(t *testing.T) {
	s := newARIServer(t, nil)
	cfg := s.config()
	cfg.Password = "Wr0ng-Pa55word"
	_, err := Dial(context.Background(), cfg)
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("err %v, want ErrUnauthorized", err)
	}
	var he *HTTPError
	if !errors.As(err, &he) || he.StatusCode != 401 || he.Message != "Authentication required" {
		t.Errorf("err %#v", err)
	}
	basic := base64.StdEncoding.EncodeToString([]byte(cfg.User + ":" + cfg.Password))
	if strings.Contains(err.Error(), cfg.Password) || strings.Contains(err.Error(), basic) {
		t.Errorf("error text leaks the password: %q", err)
	}

	// Credentials in the URL: used, and absent from errors.
	cfg = s.config()
	cfg.User, cfg.Password = "", ""
	cfg.URL = strings.Replace(s.URL, "http://", "http://ari:Wr0ng-Pa55word@", 1)
	_, err = Dial(context.Background(), cfg)
	if !errors.Is(err, ErrUnauthorized) || strings.Contains(err.Error(), "Wr0ng-Pa55word") {
		t.Errorf("err %v", err)
	}
	cfg.URL = strings.Replace(s.URL, "http://", "http://ari:ari-secret@", 1)
	c := dial(t, cfg)
	c.Close()
}

func TestDialErrorsHideThePassword(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connection refused
	for _, u := range []string{
		"http://" + addr,
		"http://ari:S3cret-Pw@" + addr + "/pfx",
		"http://ari:S3cret-Pw@[::1%zz",     // unparsable, with credentials
		"ftp://ari:S3cret-Pw@" + addr + "", // bad scheme
	} {
		_, err := Dial(context.Background(), Config{URL: u, User: "ari", Password: "S3cret-Pw", Apps: []string{"a"}})
		if err == nil {
			t.Fatalf("%s: no error", u)
		}
		if strings.Contains(err.Error(), "S3cret-Pw") {
			t.Errorf("%s: error leaks the password: %q", u, err)
		}
	}
}

func TestDeadPeerDetected(t *testing.T) {
	s := newARIServer(t, textFrames(capturedFrames(t)[:1]))
	s.answerPings = false // TCP stays up, nobody answers
	cfg := s.config()
	cfg.PingInterval, cfg.PingTimeout = 50*time.Millisecond, 100*time.Millisecond
	c := dial(t, cfg)
	next(t, c)
	start := time.Now()
	select {
	case <-c.Done():
	case <-time.After(3 * time.Second):
		t.Fatal("dead peer not detected within 3s")
	}
	if !errors.Is(c.Err(), ErrPingTimeout) {
		t.Errorf("err %v, want ErrPingTimeout", c.Err())
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v", d)
	}
	if _, ok := <-c.Events(); ok {
		t.Error("events not closed")
	}
}

func TestConnPingsAnswered(t *testing.T) {
	s := newARIServer(t, nil)
	cfg := s.config()
	cfg.PingInterval, cfg.PingTimeout = 20*time.Millisecond, time.Second
	c := dial(t, cfg)
	deadline := time.Now().Add(3 * time.Second)
	for c.Stats().Pings < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("pings %d, err %v", c.Stats().Pings, c.Err())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestConnPeerCloses(t *testing.T) {
	s := newARIServer(t, textFrames(capturedFrames(t)[:3]))
	s.closeAfter = true
	c := dial(t, s.config())
	n := 0
	for range c.Events() {
		n++
	}
	if n != 3 {
		t.Errorf("%d events before the close, want 3", n)
	}
	if c.Err() == nil || errors.Is(c.Err(), ErrClosed) {
		t.Errorf("err %v", c.Err())
	}
}

func TestConnClose(t *testing.T) {
	s := newARIServer(t, textFrames(capturedFrames(t)))
	cfg := s.config()
	cfg.Buffer = 1
	c := dial(t, cfg)
	next(t, c)
	// The reader is blocked on the full buffer; Close must still return.
	done := make(chan struct{})
	go func() { c.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs")
	}
	if !errors.Is(c.Err(), ErrClosed) {
		t.Errorf("err %v", c.Err())
	}
	for range c.Events() { // closed after the buffered rest
	}
}

func TestEventsURL(t *testing.T) {
	for _, tc := range []struct {
		url  string
		apps []string
		all  bool
		want string
	}{
		{"http://127.0.0.1:8088", []string{"monitor-app"}, true, "http://127.0.0.1:8088/ari/events?app=monitor-app&subscribeAll=true"},
		{"http://pbx:8088/asterisk/", []string{"a", "b"}, false, "http://pbx:8088/asterisk/ari/events?app=a,b"},
		{"wss://u:p@pbx:8089/x", []string{"a b&c"}, true, "https://pbx:8089/x/ari/events?app=a+b%26c&subscribeAll=true"},
	} {
		cfg := Config{URL: tc.url, Apps: tc.apps, SubscribeAll: tc.all}
		ep, err := cfg.endpoint()
		if err != nil {
			t.Fatal(err)
		}
		got, err := cfg.eventsURL(ep)
		if err != nil || got != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.url, got, err, tc.want)
		}
	}
	if _, err := (Config{URL: "http://x", Apps: nil}).eventsURL(endpoint{}); err == nil {
		t.Error("no apps accepted")
	}
}
