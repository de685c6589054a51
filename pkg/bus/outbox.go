package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

// OutboxConfig sizes an Outbox.
type OutboxConfig struct {
	// Capacity is how many events wait while JetStream is away. Beyond it
	// Enqueue refuses (and counts) events, and the producer must resync.
	Capacity int
	// Window is how many publishes may await their ack at once.
	Window int
	// AckTimeout fails a publish whose ack has not come back; it is then
	// published again (deduplicated by its id).
	AckTimeout time.Duration
}

// Outbox publishes events to JetStream in the order they were enqueued, with
// many acks in flight, and holds up to Capacity events while NATS is away.
// It never blocks the producer: a PBX connection must keep reading even when
// NATS is down, or Asterisk drops it. When the queue is full events are
// refused, counted and logged, and Overflowed tells the producer to resync.
type Outbox struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	log   *slog.Logger
	cfg   OutboxConfig
	queue chan queued

	published atomic.Uint64
	dropped   atomic.Uint64
	overflow  atomic.Bool
	pending   atomic.Int64 // queued or awaiting an ack
}

type queued struct {
	msg *nats.Msg
	id  string
}

// NewOutbox returns an Outbox publishing through nc. Run must be running for
// events to leave.
func NewOutbox(nc *nats.Conn, cfg OutboxConfig, log *slog.Logger) (*Outbox, error) {
	if cfg.Capacity <= 0 {
		cfg.Capacity = 50_000
	}
	if cfg.Window <= 0 {
		cfg.Window = 512
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = 5 * time.Second
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncTimeout(cfg.AckTimeout),
		jetstream.WithPublishAsyncMaxPending(cfg.Window*2))
	if err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	return &Outbox{
		nc: nc, js: js, log: log, cfg: cfg,
		queue: make(chan queued, cfg.Capacity),
	}, nil
}

// Enqueue encodes ev and queues it for publishing. It returns false, without
// blocking, when the queue is full: the event is counted as dropped and
// Overflowed reports true until the producer has resynced.
func (o *Outbox) Enqueue(ev *pb.Event) (bool, error) {
	msg, err := Message(ev)
	if err != nil {
		return false, err
	}
	o.pending.Add(1)
	select {
	case o.queue <- queued{msg: msg, id: ev.GetId()}:
		return true, nil
	default:
		o.pending.Add(-1)
		if n := o.dropped.Add(1); !o.overflow.Swap(true) || n%10_000 == 0 {
			o.log.Error("outbox full: NATS has been away too long, events are being dropped; a resync will follow",
				"capacity", o.cfg.Capacity, "dropped_total", n)
		}
		return false, nil
	}
}

// Overflowed reports whether events were refused since the last call to
// ClearOverflow.
func (o *Outbox) Overflowed() bool { return o.overflow.Load() }

// ClearOverflow forgets an overflow once the producer has resynced.
func (o *Outbox) ClearOverflow() { o.overflow.Store(false) }

// Len is the number of events queued or awaiting their ack.
func (o *Outbox) Len() int { return int(o.pending.Load()) }

// Published is the number of events JetStream has acknowledged.
func (o *Outbox) Published() uint64 { return o.published.Load() }

// Dropped is the number of events refused because the queue was full.
func (o *Outbox) Dropped() uint64 { return o.dropped.Load() }

// Capacity is the queue's size.
func (o *Outbox) Capacity() int { return o.cfg.Capacity }

// Flush waits until every enqueued event is acknowledged or ctx ends.
func (o *Outbox) Flush(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for o.Len() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("outbox flush: %d events left: %w", o.Len(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

type inflight struct {
	q     queued
	f     jetstream.PubAckFuture
	epoch uint64 // the connection's reconnect count when it was sent
}

// Run publishes until ctx ends. Events keep their order: after a failed ack
// the failed event and every later one still unconfirmed are published again
// one by one, in order, until JetStream takes them (ids make the repeats of
// any that were in fact stored harmless).
func (o *Outbox) Run(ctx context.Context) error {
	var fl []inflight
	settle := func(err error) {
		if err == nil {
			fl = fl[1:]
			o.published.Add(1)
			o.pending.Add(-1)
			return
		}
		o.log.Warn("publish not acknowledged, republishing in order", "pending", len(fl), "err", err)
		o.republish(ctx, fl)
		fl = fl[:0]
	}
	for {
		if len(fl) == 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case q := <-o.queue:
				fl = o.send(ctx, fl, q)
			}
			continue
		}
		head := fl[0].f
		if len(fl) >= o.cfg.Window {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-head.Ok():
				settle(nil)
			case err := <-head.Err():
				settle(err)
			}
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-head.Ok():
			settle(nil)
		case err := <-head.Err():
			settle(err)
		case q := <-o.queue:
			fl = o.send(ctx, fl, q)
		}
	}
}

func (o *Outbox) send(ctx context.Context, fl []inflight, q queued) []inflight {
	epoch := o.nc.Stats().Reconnects
	if len(fl) > 0 && fl[0].epoch != epoch {
		// The connection was replaced while these were in flight: some may
		// have died with it. Settle them, in order, before anything goes out
		// on the new connection, or a later event could be stored first.
		o.republish(ctx, fl)
		fl = fl[:0]
	}
	f, err := o.js.PublishMsgAsync(q.msg, jetstream.WithMsgID(q.id))
	if err != nil {
		// Not even sent (e.g. too many pending): settle what is in flight
		// and publish this one synchronously, in order.
		o.republish(ctx, append(fl, inflight{q: q}))
		return fl[:0]
	}
	return append(fl, inflight{q: q, f: f, epoch: epoch})
}

// republish publishes fl's events one at a time, in order, retrying each
// until it is stored, the refusal is permanent, or ctx ends.
func (o *Outbox) republish(ctx context.Context, fl []inflight) {
	for _, it := range fl {
		wait := 100 * time.Millisecond
		for attempt := 1; ; attempt++ {
			pctx, cancel := context.WithTimeout(ctx, o.cfg.AckTimeout)
			_, err := o.js.PublishMsg(pctx, it.q.msg, jetstream.WithMsgID(it.q.id))
			cancel()
			if err == nil {
				o.published.Add(1)
				break
			}
			if ctx.Err() != nil {
				return
			}
			var apiErr *jetstream.APIError
			if errors.As(err, &apiErr) && apiErr.Code >= 400 && apiErr.Code < 500 && apiErr.Code != 408 && apiErr.Code != 503 {
				o.dropped.Add(1)
				o.log.Error("JetStream refused an event", "subject", it.q.msg.Subject, "event", it.q.id, "err", err)
				break
			}
			if attempt == 1 || attempt%20 == 0 {
				o.log.Warn("publish failed, retrying", "event", it.q.id, "attempt", attempt, "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(wait*2, 2*time.Second)
		}
		o.pending.Add(-1)
	}
}
