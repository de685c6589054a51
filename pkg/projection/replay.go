package projection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

// ReplayOptions bound a replay of a tenant's events.
type ReplayOptions struct {
	// FromSeq starts at this stream sequence (0: the beginning).
	FromSeq uint64
	// FromTime, when set, starts at the first event stored at or after it.
	FromTime time.Time
	// Until, when set, stops before the first event stored after it.
	Until time.Time
	// UntilSeq, when set, stops after this stream sequence.
	UntilSeq uint64
	// Batch is how many messages are fetched ahead (default 1000).
	Batch int
}

// ErrLegacyEvents: the retired single event stream of earlier versions still
// holds events of the tenant, which a replay of its own stream would miss.
var ErrLegacyEvents = errors.New("events in the retired stream")

// Replay reads a tenant's events from the stream in order and calls fn
// with each message until it reaches the bound or the end of the stream as
// it was when the replay started. It returns the sequence of the last
// message handed to fn (0 when none).
func Replay(ctx context.Context, js jetstream.JetStream, tenant string, opt ReplayOptions, fn func(jetstream.Msg) error) (uint64, error) {
	if opt.FromSeq == 0 {
		// A replay from the start would silently miss what the retired
		// stream of earlier versions still holds.
		n, err := bus.LegacyEvents(ctx, js, tenant)
		if err != nil {
			return 0, fmt.Errorf("replay: %w", err)
		}
		if n > 0 {
			return 0, fmt.Errorf("replay: %w: %d events of tenant %s from before the upgrade are in the retired stream %s; "+
				"a replay of %s would leave them out (delete %s once you no longer need them)",
				ErrLegacyEvents, n, tenant, bus.StreamEvents, bus.EventStream(tenant), bus.StreamEvents)
		}
	}
	// The tenant's own stream: no filter, so the server reads it straight.
	var occ jetstream.OrderedConsumerConfig
	switch {
	case opt.FromSeq > 0:
		occ.DeliverPolicy, occ.OptStartSeq = jetstream.DeliverByStartSequencePolicy, opt.FromSeq
	case !opt.FromTime.IsZero():
		t := opt.FromTime
		occ.DeliverPolicy, occ.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	}
	cons, err := js.OrderedConsumer(ctx, bus.EventStream(tenant), occ)
	if err != nil {
		return 0, fmt.Errorf("replay consumer: %w", err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("replay consumer: %w", err)
	}
	if info.NumPending == 0 {
		return 0, nil
	}
	batch := opt.Batch
	if batch <= 0 {
		batch = 1000
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(batch))
	if err != nil {
		return 0, fmt.Errorf("replay: %w", err)
	}
	defer it.Stop()
	var last uint64
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return last, ctx.Err()
			}
			return last, fmt.Errorf("replay: %w", err)
		}
		md, err := m.Metadata()
		if err != nil {
			return last, fmt.Errorf("replay: %w", err)
		}
		if !opt.Until.IsZero() && md.Timestamp.After(opt.Until) {
			return last, nil
		}
		if err := fn(m); err != nil {
			return last, err
		}
		last = md.Sequence.Stream
		if md.NumPending == 0 || (opt.UntilSeq > 0 && last >= opt.UntilSeq) {
			return last, nil
		}
	}
}

// Stream applies stored messages to a tenant's views in stream order,
// exactly as the projector does, so that the projector, a rebuild and an
// as-of read agree on every row.
type Stream struct {
	Tenant string
	Views  *Views
	Seen   *Seen
	// Seq is the last stream sequence applied.
	Seq uint64
	// Latest is the newest event time applied.
	Latest time.Time
	Log    *slog.Logger
}

// Apply applies one stored message, unless it is a duplicate, of another
// tenant or undecodable, and advances Seq past it either way.
func (s *Stream) Apply(m jetstream.Msg) { s.ApplyDecoded(Decode(m)) }

// Decoded is a stored message decoded by Decode: the part of Apply that
// needs no state, so that it can run ahead on another goroutine.
type Decoded struct {
	Seq     uint64 // stream sequence; 0 when the metadata could not be read
	Subject string
	Event   *pb.Event // nil when Err is set
	Err     error
}

// Decode reads a stored message's sequence and event.
func Decode(m jetstream.Msg) Decoded {
	d := Decoded{Subject: m.Subject()}
	if seq, ok := streamSeq(m.Reply()); ok {
		d.Seq = seq
	} else {
		md, err := m.Metadata()
		if err != nil {
			d.Err = fmt.Errorf("message without metadata: %w", err)
			return d
		}
		d.Seq = md.Sequence.Stream
	}
	ev, err := DecodeEvent(m.Data())
	if err != nil {
		d.Err = fmt.Errorf("undecodable event: %w", err)
		return d
	}
	d.Event = ev
	return d
}

// ApplyDecoded is Apply of a message Decode has read.
func (s *Stream) ApplyDecoded(d Decoded) {
	if d.Seq == 0 {
		s.Log.Error("message skipped", "subject", d.Subject, "err", d.Err)
		return
	}
	if d.Seq <= s.Seq {
		return // already applied (redelivery after a consumer reset)
	}
	s.Seq = d.Seq
	if d.Err != nil {
		// A foreign or corrupt message cannot be applied; skipping it
		// (and saying so) keeps the projection moving.
		s.Log.Error("event skipped", "subject", d.Subject, "seq", d.Seq, "err", d.Err)
		return
	}
	ev := d.Event
	if ev.GetTenant() != s.Tenant {
		s.Log.Error("event of another tenant skipped", "subject", d.Subject, "seq", d.Seq)
		return
	}
	if s.Seen.Duplicate(d.Seq, ev.GetId()) {
		s.Log.Debug("duplicate event skipped", "id", ev.GetId(), "seq", d.Seq)
		return
	}
	if t := ev.GetPbxTime(); t != nil && t.AsTime().After(s.Latest) {
		s.Latest = t.AsTime()
	}
	s.Views.ApplyOwned(ev) // decoded for this call only
}

// DefaultDedupeWindow is the projector's default PROJECTOR_DEDUPE_WINDOW.
const DefaultDedupeWindow = 100000

// AsOf builds a tenant's live views as they stood at a past time ("the
// panel at 10:32"), by replaying the stream up to the last event stored at
// or before it. It returns the views and the stream sequence they reflect.
func AsOf(ctx context.Context, js jetstream.JetStream, tenant string, at time.Time, loc *time.Location, log *slog.Logger) (*pb.Snapshot, uint64, error) {
	s := &Stream{Tenant: tenant, Views: New(tenant, nil, loc), Seen: NewSeen(DefaultDedupeWindow), Log: log}
	if _, err := Replay(ctx, js, tenant, ReplayOptions{Until: at}, func(m jetstream.Msg) error {
		s.Apply(m)
		return nil
	}); err != nil {
		return nil, 0, err
	}
	return s.Views.Snapshot(0), s.Seq, nil
}

// streamSeq reads a JetStream message's stream sequence from its reply
// subject, as jetstream.Msg.Metadata does, without building all of the
// metadata (its slice, struct and time were 6% of the projector's CPU):
//
//	$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<time>.<pending>
//	$JS.ACK.<domain>.<account>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<time>.<pending>[.<token>]
//
// ok is false for anything else; Metadata then says what is wrong.
func streamSeq(reply string) (seq uint64, ok bool) {
	rest, ok := strings.CutPrefix(reply, "$JS.ACK.")
	if !ok {
		return 0, false
	}
	var pos int // of sseq among the tokens after $JS.ACK
	switch n := strings.Count(rest, ".") + 1; {
	case n == 7:
		pos = 3
	case n >= 9:
		pos = 5
	default:
		return 0, false
	}
	for range pos {
		rest = rest[strings.IndexByte(rest, '.')+1:]
	}
	tok, _, _ := strings.Cut(rest, ".")
	seq, err := strconv.ParseUint(tok, 10, 64)
	return seq, err == nil && seq > 0
}
