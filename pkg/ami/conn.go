package ami

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/staskobzar/goami2"
)

// ErrClosed is returned by calls on a connection that has ended.
var ErrClosed = errors.New("ami: connection closed")

// ErrBadField is returned for an action whose field holds a line break or a
// colon in its name: written as is it would inject lines into the AMI stream.
var ErrBadField = errors.New("ami: field contains a line break")

// ErrAuth is returned when the PBX rejects the login.
var ErrAuth = errors.New("ami: authentication failed")

// Event is an unsolicited message with its position in the connection's
// event sequence (1, 2, ...), which lets a consumer relate it to the moment
// a list action was sent or completed.
type Event struct {
	Seq uint64
	Msg *goami2.Message
}

// Result is the outcome of an action: the response and, for list actions
// (EventList: start), every item event and the final ...Complete event.
type Result struct {
	Response *goami2.Message
	Items    []*goami2.Message
	Complete *goami2.Message
	// SentSeq is the number of events delivered to Events before the action
	// was written; DoneSeq the number delivered before it completed. Events
	// in (SentSeq, DoneSeq] may or may not be reflected in Items.
	SentSeq, DoneSeq uint64
}

// Error returns the response as an error when Asterisk answered Error.
func (r *Result) Error() error {
	if r.Response == nil || r.Response.IsSuccess() {
		return nil
	}
	return fmt.Errorf("ami: %s: %s", r.Response.Field("Response"), r.Response.Field("Message"))
}

type pending struct {
	res    Result
	isList bool
	done   chan struct{}
}

// Conn is one logged-in AMI session.
type Conn struct {
	nc      net.Conn
	rd      *Reader
	banner  string
	events  chan Event
	prefix  string
	nextID  atomic.Uint64
	evSeq   atomic.Uint64 // events handed to the consumer
	writeMu sync.Mutex

	mu      sync.Mutex
	pending map[string]*pending
	err     error
	closed  chan struct{}
	once    sync.Once
}

// Options tune a connection.
type Options struct {
	// EventBuffer is how many events may wait for the consumer before the
	// reader stops reading from the socket (back-pressure through TCP).
	EventBuffer int
	// Events enables event delivery at login ("on"); false logs in with "Events: off".
	Events bool
	// Timeout bounds dialing, the banner and the login.
	Timeout time.Duration
}

// Dial connects to addr, reads the banner and logs in. Secrets are never
// included in returned errors.
func Dial(ctx context.Context, addr, user, secret string, opt Options) (*Conn, error) {
	if opt.Timeout == 0 {
		opt.Timeout = 10 * time.Second
	}
	if opt.EventBuffer <= 0 {
		opt.EventBuffer = 1024
	}
	d := net.Dialer{Timeout: opt.Timeout, KeepAlive: 15 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ami dial %s: %w", addr, err)
	}
	c, err := newConn(ctx, nc, user, secret, opt)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("ami %s: %w", addr, err)
	}
	return c, nil
}

var connCounter atomic.Uint64

func newConn(ctx context.Context, nc net.Conn, user, secret string, opt Options) (*Conn, error) {
	c := &Conn{
		nc:      nc,
		rd:      NewReader(nc),
		events:  make(chan Event, opt.EventBuffer),
		pending: make(map[string]*pending),
		closed:  make(chan struct{}),
		prefix:  "pbxpulse-" + strconv.FormatUint(connCounter.Add(1), 36) + "-",
	}
	deadline := time.Now().Add(opt.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = nc.SetDeadline(deadline)
	banner, err := c.rd.ReadBanner()
	if err != nil {
		return nil, err
	}
	c.banner = banner
	login := goami2.NewAction("Login")
	id := c.newActionID()
	login.AddField("ActionID", id)
	login.AddField("Username", user)
	login.AddField("Secret", secret)
	if opt.Events {
		login.AddField("Events", "on")
	} else {
		login.AddField("Events", "off")
	}
	if _, err := nc.Write(Encode(login)); err != nil {
		return nil, fmt.Errorf("write login: %w", err)
	}
	// Events may only start after the login response, but security events
	// of other sessions can never precede it on this one; read until ours.
	for {
		msg, err := c.rd.ReadMessage()
		if err != nil {
			return nil, fmt.Errorf("read login response: %w", err)
		}
		if msg.ActionID() != id {
			continue
		}
		if !msg.IsSuccess() {
			return nil, fmt.Errorf("%w: %s", ErrAuth, msg.Field("Message"))
		}
		break
	}
	_ = nc.SetDeadline(time.Time{})
	go c.readLoop()
	return c, nil
}

// Banner is the greeting line the PBX sent.
func (c *Conn) Banner() string { return c.banner }

// Events delivers unsolicited events in arrival order. It is closed when the
// connection ends; Err then tells why. A consumer that stops reading stops
// the socket reader too: nothing is dropped.
func (c *Conn) Events() <-chan Event { return c.events }

// Done is closed when the connection has ended.
func (c *Conn) Done() <-chan struct{} { return c.closed }

// Err is the reason the connection ended, or nil while it is alive.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the connection.
func (c *Conn) Close() error {
	c.fail(ErrClosed)
	return nil
}

func (c *Conn) newActionID() string {
	return c.prefix + strconv.FormatUint(c.nextID.Add(1), 10)
}

// Action sends an action and waits for its response, and for list actions
// for every item up to the Complete event. The ActionID is set by Conn.
func (c *Conn) Action(ctx context.Context, action *goami2.Message) (*Result, error) {
	for _, h := range action.Headers() {
		if strings.ContainsAny(h.Name, "\r\n:") || strings.ContainsAny(h.Value, "\r\n") {
			return nil, fmt.Errorf("ami %s: field %q: %w", action.Field("Action"), h.Name, ErrBadField)
		}
	}
	id := c.newActionID()
	action.SetField("ActionID", id)
	p := &pending{done: make(chan struct{})}
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
	c.pending[id] = p
	p.res.SentSeq = c.evSeq.Load()
	c.mu.Unlock()

	c.writeMu.Lock()
	_ = c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := c.nc.Write(Encode(action))
	c.writeMu.Unlock()
	if err != nil {
		c.fail(fmt.Errorf("ami write: %w", err))
		c.forget(id)
		return nil, fmt.Errorf("ami %s: %w", action.Field("Action"), err)
	}
	select {
	case <-p.done:
		return &p.res, nil
	case <-c.closed:
		c.forget(id)
		return nil, fmt.Errorf("ami %s: %w", action.Field("Action"), c.Err())
	case <-ctx.Done():
		c.forget(id)
		return nil, fmt.Errorf("ami %s: %w", action.Field("Action"), ctx.Err())
	}
}

func (c *Conn) forget(id string) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

func (c *Conn) fail(err error) {
	c.once.Do(func() {
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
		close(c.closed)
		c.nc.Close()
	})
}

func (c *Conn) readLoop() {
	defer close(c.events)
	for {
		msg, err := c.rd.ReadMessage()
		if err != nil {
			var pe *ParseError
			if errors.As(err, &pe) {
				// A malformed frame is reported as a synthetic event so the
				// consumer can count it; the stream goes on.
				bad := goami2.NewMessage()
				bad.AddField("Event", "PbxpulseParseError")
				bad.AddField("Error", pe.Error())
				if !c.deliver(bad) {
					return
				}
				continue
			}
			c.fail(fmt.Errorf("ami read: %w", err))
			return
		}
		if c.route(msg) {
			continue
		}
		if !c.deliver(msg) {
			return
		}
	}
}

// route hands responses and list items to the action waiting for them and
// reports whether it did.
func (c *Conn) route(msg *goami2.Message) bool {
	id := msg.ActionID()
	if id == "" || !strings.HasPrefix(id, c.prefix) {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.pending[id]
	if !ok {
		return msg.IsResponse() // a late answer to an abandoned action
	}
	if msg.IsResponse() && p.res.Response == nil {
		p.res.Response = msg
		if strings.EqualFold(msg.Field("EventList"), "start") {
			p.isList = true
			return true
		}
		p.res.DoneSeq = c.evSeq.Load()
		delete(c.pending, id)
		close(p.done)
		return true
	}
	if strings.EqualFold(msg.Field("EventList"), "Complete") {
		p.res.Complete = msg
		p.res.DoneSeq = c.evSeq.Load()
		delete(c.pending, id)
		close(p.done)
		return true
	}
	p.res.Items = append(p.res.Items, msg)
	return true
}

func (c *Conn) deliver(msg *goami2.Message) bool {
	ev := Event{Seq: c.evSeq.Load() + 1, Msg: msg}
	select {
	case c.events <- ev:
		c.evSeq.Store(ev.Seq)
		return true
	case <-c.closed:
		return false
	}
}
