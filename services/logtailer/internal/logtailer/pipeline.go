package logtailer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pbxpulse/pbxpulse/services/logtailer/internal/tail"
)

// Pipeline limits: how much may await JetStream's acknowledgement at once.
// They bound the memory of a follower whatever the file size: while NATS is
// slow or away the follower stops reading and the lines wait on disk.
const (
	maxInFlight      = 256
	maxInFlightBytes = 4 << 20
	ackTimeout       = 5 * time.Second
)

// record is one message of a follower with what its acknowledgement means.
type record struct {
	msg *nats.Msg
	id  string
	// entries it carries (counted as published once acknowledged)
	entries int
	// commit: the file position and counts that are safe to save once this
	// record and all before it are stored. Records without (security events,
	// sent before the batch of their entry) leave the commit point as it is.
	commit    bool
	pos       tail.Position
	stats     minuteStats
	buf       *[]byte // returned to the pool once acknowledged
	future    jetstream.PubAckFuture
	reconnect uint64 // the connection's reconnect count when it was sent
}

// pipeline publishes a follower's records in order with many
// acknowledgements in flight. It never drops a record: a failed one and
// every later one still unconfirmed are published again one by one, in
// order, until JetStream stores them (ids make repeats of ones that were in
// fact stored harmless), and meanwhile send blocks: back-pressure.
type pipeline struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	log *slog.Logger

	fl    []*record // in flight, oldest first
	bytes int
	pool  [][]byte // message buffers of acknowledged records

	// acked is the newest commit point acknowledged (with all before it).
	acked     *record
	published uint64 // entries acknowledged
	refused   uint64 // records JetStream refused for good
	// stalled: publishing failed and is being retried (NATS away)
	stalled atomic.Bool
}

func newPipeline(nc *nats.Conn, log *slog.Logger) (*pipeline, error) {
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncTimeout(ackTimeout),
		jetstream.WithPublishAsyncMaxPending(2*maxInFlight))
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return &pipeline{nc: nc, js: js, log: log}, nil
}

// buffer returns an empty message buffer.
func (p *pipeline) buffer() *[]byte {
	if n := len(p.pool); n > 0 {
		b := p.pool[n-1]
		p.pool = p.pool[:n-1]
		return &b
	}
	b := make([]byte, 0, 16<<10)
	return &b
}

// send publishes r after the records before it; it blocks while the window
// is full, and while NATS refuses (retrying). It returns an error only when
// ctx ends; r may then not have been sent.
func (p *pipeline) send(ctx context.Context, r *record) error {
	for len(p.fl) >= maxInFlight || len(p.fl) > 0 && p.bytes+len(r.msg.Data) > maxInFlightBytes {
		if err := p.settleHead(ctx, true); err != nil {
			return err
		}
	}
	r.reconnect = p.nc.Stats().Reconnects
	if len(p.fl) > 0 && p.fl[0].reconnect != r.reconnect {
		// The connection was replaced while these were in flight: some may
		// have died with it. Settle them, in order, before anything goes out
		// on the new connection, or a later record could be stored first.
		if err := p.republish(ctx); err != nil {
			return err
		}
	}
	f, err := p.js.PublishMsgAsync(r.msg, jetstream.WithMsgID(r.id))
	p.fl = append(p.fl, r)
	p.bytes += len(r.msg.Data)
	if err != nil {
		// not even sent (disconnected): publish everything in flight and
		// this one synchronously, in order
		return p.republish(ctx)
	}
	r.future = f
	return nil
}

// poll settles the acknowledgements that have arrived, without waiting.
func (p *pipeline) poll(ctx context.Context) error {
	for len(p.fl) > 0 {
		if err := p.settleHead(ctx, false); err != nil {
			if errors.Is(err, errNotYet) {
				return nil
			}
			return err
		}
	}
	return nil
}

var errNotYet = errors.New("no acknowledgement yet")

// headDone returns the oldest record's acknowledgement channels, for a
// select (nil channels when nothing is in flight).
func (p *pipeline) headDone() (<-chan *jetstream.PubAck, <-chan error) {
	if len(p.fl) == 0 || p.fl[0].future == nil {
		return nil, nil
	}
	return p.fl[0].future.Ok(), p.fl[0].future.Err()
}

// settleHead waits (or, with wait false, checks) for the oldest record's
// acknowledgement; errNotYet when it has not come and wait is false.
func (p *pipeline) settleHead(ctx context.Context, wait bool) error {
	h := p.fl[0]
	if h.future == nil { // a republish was interrupted: finish it
		return p.republish(ctx)
	}
	var err error
	if wait {
		select {
		case <-h.future.Ok():
		case err = <-h.future.Err():
		case <-ctx.Done():
			return ctx.Err()
		}
	} else {
		select {
		case <-h.future.Ok():
		case err = <-h.future.Err():
		default:
			return errNotYet
		}
	}
	return p.headSettled(ctx, err)
}

// headSettled takes the outcome of the oldest record's publish, received
// from its headDone channels.
func (p *pipeline) headSettled(ctx context.Context, err error) error {
	if err != nil {
		p.log.Warn("publish not acknowledged, publishing again in order", "pending", len(p.fl), "err", err)
		return p.republish(ctx)
	}
	p.pop()
	return nil
}

// pop removes the oldest record, acknowledged.
func (p *pipeline) pop() {
	p.done(p.fl[0])
	p.fl[0] = nil
	p.fl = p.fl[1:]
}

// done records an acknowledged record.
func (p *pipeline) done(r *record) {
	p.bytes -= len(r.msg.Data)
	p.published += uint64(r.entries)
	if r.commit {
		p.acked = r
	}
	if r.buf != nil && cap(*r.buf) <= 256<<10 && len(p.pool) < maxInFlight {
		p.pool = append(p.pool, (*r.buf)[:0])
	}
	r.msg, r.buf = nil, nil
}

// republish publishes every record in flight synchronously, in order, each
// until it is stored, refused for good, or ctx ends.
func (p *pipeline) republish(ctx context.Context) error {
	for len(p.fl) > 0 {
		r := p.fl[0]
		wait := 100 * time.Millisecond
		for attempt := 1; ; attempt++ {
			pctx, cancel := context.WithTimeout(ctx, ackTimeout)
			_, err := p.js.PublishMsg(pctx, r.msg, jetstream.WithMsgID(r.id))
			cancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				r.future = nil // the next settle goes on from here
				return ctx.Err()
			}
			var apiErr *jetstream.APIError
			if errors.As(err, &apiErr) && apiErr.Code >= 400 && apiErr.Code < 500 && apiErr.Code != 408 && apiErr.Code != 503 {
				// refused for good (e.g. too large): retrying would stall the file forever
				p.refused++
				p.log.Error("JetStream refused a log message, skipped", "subject", r.msg.Subject, "id", r.id, "entries", r.entries, "err", err)
				break
			}
			p.stalled.Store(true)
			if attempt == 1 || attempt%20 == 0 {
				p.log.Warn("publish failed, retrying; the file is not read meanwhile", "subject", r.msg.Subject, "attempt", attempt, "err", err)
			}
			select {
			case <-ctx.Done():
				r.future = nil
				return ctx.Err()
			case <-time.After(wait):
			}
			wait = min(wait*2, 2*time.Second)
		}
		// An async retry of this message may still be scheduled inside the
		// client: its buffer is not reused.
		r.buf = nil
		p.pop()
	}
	p.stalled.Store(false)
	return nil
}

// drain waits until everything sent is acknowledged or ctx ends.
func (p *pipeline) drain(ctx context.Context) error {
	for len(p.fl) > 0 {
		if err := p.settleHead(ctx, true); err != nil {
			return err
		}
	}
	return nil
}
