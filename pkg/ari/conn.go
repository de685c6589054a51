package ari

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// ErrClosed is the reason of a connection ended by Close.
var ErrClosed = errors.New("ari: connection closed")

// ErrUnauthorized is returned (wrapped in an *HTTPError) when Asterisk
// rejects the credentials.
var ErrUnauthorized = errors.New("ari: authentication failed")

// ErrPingTimeout ends a connection whose peer stopped answering pings.
var ErrPingTimeout = errors.New("ari: peer did not answer a ping")

// Config says where and how to connect.
type Config struct {
	// URL of Asterisk's HTTP server with its optional prefix, e.g.
	// "http://127.0.0.1:8088" or "https://pbx:8089/asterisk"; "/ari/..." is
	// appended. ws:// and wss:// are accepted too. Credentials in the URL are
	// used only when User is empty, and never appear in errors.
	URL      string
	User     string
	Password string
	// Apps are the Stasis applications to subscribe to (at least one).
	Apps []string
	// SubscribeAll asks for every event of the PBX, not only those of the
	// applications' channels (ARI's subscribeAll=true).
	SubscribeAll bool

	// Buffer is how many events may wait for the consumer before the reader
	// stops reading the socket (default 1024).
	Buffer int
	// PingInterval is how often a websocket ping is sent (default 3s) and
	// PingTimeout how long the pong may take (default 3s): a dead peer is
	// detected within their sum.
	PingInterval, PingTimeout time.Duration
	// ReadLimit bounds one frame (default 16 MiB; coder/websocket's own
	// default of 32 KiB is smaller than a channel with many variables).
	ReadLimit int64
	// HTTPClient is used for the handshake and REST calls (TLS settings,
	// proxies); by default one with a 10 s timeout.
	HTTPClient *http.Client
	// Logger receives debug records about malformed frames (default
	// slog.Default()).
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Buffer <= 0 {
		c.Buffer = 1024
	}
	if c.PingInterval <= 0 {
		c.PingInterval = 3 * time.Second
	}
	if c.PingTimeout <= 0 {
		c.PingTimeout = 3 * time.Second
	}
	if c.ReadLimit <= 0 {
		c.ReadLimit = 16 << 20
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// endpoint is the parsed server address: base is the URL without
// credentials up to and including "/ari".
type endpoint struct {
	base           string
	user, password string
}

func (c Config) endpoint() (endpoint, error) {
	u, err := url.Parse(c.URL)
	if err != nil {
		// url.Error quotes the whole URL, credentials included: keep only
		// the reason.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return endpoint{}, fmt.Errorf("ari: invalid URL: %v", err)
	}
	switch u.Scheme {
	case "http", "https":
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	default:
		return endpoint{}, fmt.Errorf("ari: invalid URL: scheme %q is not http, https, ws or wss", u.Scheme)
	}
	if u.Host == "" {
		return endpoint{}, errors.New("ari: invalid URL: no host")
	}
	ep := endpoint{user: c.User, password: c.Password}
	if ep.user == "" && u.User != nil {
		ep.user = u.User.Username()
		ep.password, _ = u.User.Password()
	}
	u.User = nil
	u.RawQuery, u.Fragment = "", ""
	u.Path = strings.TrimSuffix(u.Path, "/") + "/ari"
	u.RawPath = ""
	ep.base = u.String()
	return ep, nil
}

// eventsURL is <base>/events?app=a,b[&subscribeAll=true]. The commas are
// written literally, as Asterisk documents the parameter.
func (c Config) eventsURL(ep endpoint) (string, error) {
	if len(c.Apps) == 0 {
		return "", errors.New("ari: no application to subscribe to")
	}
	apps := make([]string, len(c.Apps))
	for i, a := range c.Apps {
		if a == "" {
			return "", errors.New("ari: empty application name")
		}
		apps[i] = url.QueryEscape(a)
	}
	q := "app=" + strings.Join(apps, ",")
	if c.SubscribeAll {
		q += "&subscribeAll=true"
	}
	return ep.base + "/events?" + q, nil
}

// HTTPError is a non-success HTTP answer of Asterisk (the websocket upgrade
// refused, or a REST call failed). Message is Asterisk's "message" when it
// sent one.
type HTTPError struct {
	Method, Path string
	StatusCode   int
	Message      string
}

func (e *HTTPError) Error() string {
	s := fmt.Sprintf("ari: %s %s: HTTP %d %s", e.Method, e.Path, e.StatusCode, http.StatusText(e.StatusCode))
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Is makes errors.Is(err, ErrUnauthorized) true for a 401.
func (e *HTTPError) Is(target error) bool {
	return target == ErrUnauthorized && e.StatusCode == http.StatusUnauthorized
}

// httpError builds an HTTPError from a response body (at most a few KiB are
// read by the callers).
func httpError(method, path string, status int, body []byte) *HTTPError {
	e := &HTTPError{Method: method, Path: path, StatusCode: status}
	var m struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &m) == nil {
		e.Message = m.Message
	}
	return e
}

// redactedError hides a secret in an error's text while keeping the chain
// for errors.Is/As.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redact returns err with every occurrence of secret in its text replaced.
// The URL is already stripped of credentials; this is the second line of
// defence against a library that quotes a request.
func redact(err error, secret string) error {
	if err == nil || secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	return &redactedError{msg: strings.ReplaceAll(err.Error(), secret, "***"), err: err}
}

// Stats are counters of one connection, for metrics.
type Stats struct {
	// Frames is the number of data frames read.
	Frames uint64
	// Malformed is the number of frames that were not ARI messages.
	Malformed uint64
	// Unknown is the number of events of a type without typed decoding.
	Unknown uint64
	// Pings is the number of pings answered in time.
	Pings uint64
	// Backpressure is the total time the reader waited for the consumer.
	Backpressure time.Duration
}

// Conn is one event websocket.
type Conn struct {
	ws     *websocket.Conn
	cfg    Config
	log    *slog.Logger
	events chan Event
	ctx    context.Context
	cancel context.CancelFunc

	seq          uint64 // reader goroutine only
	reading      atomic.Bool
	lastFrame    atomic.Int64 // unix nanos of the last frame read
	frames       atomic.Uint64
	malformed    atomic.Uint64
	unknown      atomic.Uint64
	pings        atomic.Uint64
	backpressure atomic.Int64

	mu       sync.Mutex
	err      error
	closed   chan struct{}
	once     sync.Once
	readDone chan struct{}
}

// Dial opens the event websocket: GET <prefix>/ari/events?app=...&
// subscribeAll=true with basic auth. ctx bounds the handshake only; the
// connection lives until Close or a failure (see Done and Err). A 401 is an
// *HTTPError matching ErrUnauthorized. No error text contains the password.
func Dial(ctx context.Context, cfg Config) (*Conn, error) {
	cfg = cfg.withDefaults()
	ep, err := cfg.endpoint()
	if err != nil {
		return nil, err
	}
	u, err := cfg.eventsURL(ep)
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(ep.user+":"+ep.password)))
	ws, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: cfg.HTTPClient, HTTPHeader: h})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			var body []byte
			if resp.Body != nil {
				body, _ = io.ReadAll(io.LimitReader(resp.Body, 4<<10))
			}
			return nil, redact(httpError(http.MethodGet, "/ari/events", resp.StatusCode, body), ep.password)
		}
		return nil, redact(fmt.Errorf("ari: dial %s: %w", ep.base, err), ep.password)
	}
	ws.SetReadLimit(cfg.ReadLimit)
	cctx, cancel := context.WithCancel(context.Background())
	c := &Conn{
		ws: ws, cfg: cfg, log: cfg.Logger,
		events: make(chan Event, cfg.Buffer),
		ctx:    cctx, cancel: cancel,
		closed: make(chan struct{}), readDone: make(chan struct{}),
	}
	c.lastFrame.Store(time.Now().UnixNano())
	go c.readLoop()
	go c.pingLoop()
	return c, nil
}

// Events delivers the events in arrival order, each with its Seq. It is
// closed when the connection ends; Err then tells why. A consumer that stops
// reading stops the socket reader too: nothing is dropped.
func (c *Conn) Events() <-chan Event { return c.events }

// Done is closed when the connection has ended.
func (c *Conn) Done() <-chan struct{} { return c.closed }

// Err is why the connection ended, or nil while it is alive.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Stats returns the connection's counters.
func (c *Conn) Stats() Stats {
	return Stats{
		Frames: c.frames.Load(), Malformed: c.malformed.Load(), Unknown: c.unknown.Load(),
		Pings: c.pings.Load(), Backpressure: time.Duration(c.backpressure.Load()),
	}
}

// Close ends the connection with a websocket close frame. Events still
// buffered can be drained from Events, which is closed once the reader has
// stopped.
func (c *Conn) Close() error {
	c.once.Do(func() {
		c.setErr(ErrClosed)
		close(c.closed) // unblocks a reader waiting for the consumer
		// Graceful close handshake; coder/websocket bounds it (5 s).
		_ = c.ws.Close(websocket.StatusNormalClosure, "")
		c.cancel()
	})
	<-c.readDone
	return nil
}

func (c *Conn) setErr(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
}

// fail ends the connection without a close handshake (the peer is gone or
// misbehaving).
func (c *Conn) fail(err error) {
	c.once.Do(func() {
		c.setErr(err)
		close(c.closed)
		c.cancel()
		_ = c.ws.CloseNow()
	})
}

func (c *Conn) readLoop() {
	defer close(c.readDone)
	defer close(c.events)
	for {
		c.reading.Store(true)
		_, data, err := c.ws.Read(c.ctx)
		c.reading.Store(false)
		now := time.Now()
		if err != nil {
			c.fail(c.readError(err))
			return
		}
		c.lastFrame.Store(now.UnixNano())
		c.frames.Add(1)
		ev, perr := Parse(data)
		ev.Received = now
		if perr != nil {
			ev.Err = perr
			c.malformed.Add(1)
			// The event carries the error and Stats counts it; the consumer
			// decides how loudly to report it.
			c.log.Debug("ari: malformed frame", "err", perr, "seq", c.seq+1)
		} else if !Known(ev.Type) {
			c.unknown.Add(1)
		}
		if !c.deliver(ev) {
			return
		}
	}
}

// readError explains why Read failed, preferring what this side decided
// (ping timeout, Close) over the socket error it caused.
func (c *Conn) readError(err error) error {
	if e := c.Err(); e != nil {
		return e
	}
	if s := websocket.CloseStatus(err); s != -1 {
		return fmt.Errorf("ari: peer closed the websocket (%d): %w", s, err)
	}
	return redact(fmt.Errorf("ari: read: %w", err), c.cfg.Password)
}

func (c *Conn) deliver(ev Event) bool {
	c.seq++
	ev.Seq = c.seq
	select {
	case c.events <- ev:
		return true
	default:
	}
	start := time.Now()
	defer func() { c.backpressure.Add(int64(time.Since(start))) }()
	select {
	case c.events <- ev:
		return true
	case <-c.closed:
		return false
	}
}

// pingLoop detects a dead peer. coder/websocket reads the pong inside Read,
// so while the reader waits for a slow consumer a pong cannot arrive: that
// is back-pressure, not a dead peer, and is not counted against it. The
// connection fails only when the reader sat in one Read for the whole wait
// and neither a frame nor the pong came.
func (c *Conn) pingLoop() {
	t := time.NewTicker(c.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.closed:
			return
		case <-t.C:
		}
		if !c.reading.Load() {
			continue
		}
		start := time.Now()
		pctx, cancel := context.WithTimeout(c.ctx, c.cfg.PingTimeout)
		err := c.ws.Ping(pctx)
		cancel()
		if err == nil {
			c.pings.Add(1)
			continue
		}
		if c.ctx.Err() != nil {
			return
		}
		if !c.reading.Load() || c.lastFrame.Load() >= start.UnixNano() {
			continue // the reader was busy or data arrived: the peer is alive
		}
		c.fail(fmt.Errorf("%w within %s", ErrPingTimeout, c.cfg.PingTimeout))
		return
	}
}
