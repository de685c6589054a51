package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

// DedupWindow is how long JetStream remembers event ids: a re-publish of the
// same event within it is stored once.
const DedupWindow = 10 * time.Minute

// Connect dials NATS and keeps reconnecting forever: services ride out a NATS
// restart instead of exiting.
func Connect(url, name string, log *slog.Logger) (*nats.Conn, error) {
	nc, err := nats.Connect(url,
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.RetryOnFailedConnect(true),
		// No reconnect buffer: a message published while disconnected must
		// fail at once, not be sent after reconnecting ahead of earlier
		// messages that died with the old connection. The outbox then
		// republishes everything from the first loss, in order.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "url", c.ConnectedUrlRedacted()) }),
	)
	if err != nil {
		return nil, fmt.Errorf("nats connect: %w", err)
	}
	return nc, nil
}

// Open connects to NATS and makes sure tenant's event stream exists,
// retrying until NATS answers or ctx ends: a service may well start before
// NATS does.
func Open(ctx context.Context, url, name, tenant string, log *slog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := Connect(url, name, log)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	wait := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := EnsureEventStream(cctx, js, tenant, log)
		cancel()
		if err == nil {
			return nc, js, nil
		}
		if ctx.Err() != nil {
			nc.Close()
			return nil, nil, ctx.Err()
		}
		if attempt == 1 || attempt%20 == 0 {
			log.Warn("cannot ensure streams yet, retrying", "attempt", attempt, "err", err)
		}
		select {
		case <-ctx.Done():
			nc.Close()
			return nil, nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, 5*time.Second)
	}
}

// EnsureEventStream creates or updates a tenant's event stream; safe to
// call from every service at every start. The single event stream of
// earlier versions (PBX_EVENTS on every tenant's events) would overlap it:
// it is retired, i.e. moved off the event subjects, so that it keeps what
// it holds until that ages out and no longer grows.
func EnsureEventStream(ctx context.Context, js jetstream.JetStream, tenant string, log *slog.Logger) error {
	c := jetstream.StreamConfig{
		Name:        EventStream(tenant),
		Description: "pbxpulse PBX events of tenant " + tenant + " (protobuf pbxpulse.v1.Event)",
		Subjects:    []string{TenantEvents(tenant)},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      30 * 24 * time.Hour,
		Duplicates:  DedupWindow,
	}
	_, err := js.CreateOrUpdateStream(ctx, c)
	if isOverlap(err) {
		if rerr := retireLegacyStream(ctx, js, StreamEvents, EventsFilter, log); rerr != nil {
			return fmt.Errorf("ensure stream %s: %w (retiring %s: %w)", c.Name, err, StreamEvents, rerr)
		}
		_, err = js.CreateOrUpdateStream(ctx, c)
	}
	if err != nil {
		return fmt.Errorf("ensure stream %s: %w", c.Name, err)
	}
	return nil
}

// LogLimits are a tenant's log stream limits; the oldest messages go first.
type LogLimits struct {
	// MaxBytes caps the stream's size.
	MaxBytes int64
	// MaxAge is how long a message is kept.
	MaxAge time.Duration
}

// DefaultLogLimits are the limits when none are configured.
var DefaultLogLimits = LogLimits{MaxBytes: 1 << 30, MaxAge: 7 * 24 * time.Hour}

// LogDedupWindow is how long a log stream remembers message ids. Shorter than
// DedupWindow: every id in it costs server memory, and logs are high volume.
const LogDedupWindow = 2 * time.Minute

// EnsureLogStream creates or updates a tenant's log stream with lim. A
// single log stream of an earlier version (PBX_LOGS on every tenant's logs)
// would overlap it: it is retired, i.e. moved off the log subjects so that
// it keeps what it holds until that ages out, and no longer grows.
func EnsureLogStream(ctx context.Context, js jetstream.JetStream, tenant string, lim LogLimits, log *slog.Logger) error {
	if lim.MaxBytes <= 0 || lim.MaxAge <= 0 {
		return fmt.Errorf("ensure log stream of %s: limits must be positive (%+v)", tenant, lim)
	}
	c := jetstream.StreamConfig{
		Name:        LogStream(tenant),
		Description: "pbxpulse log entries and log counts of tenant " + tenant + " (protobuf pbxpulse.v1.Event)",
		Subjects:    LogStreamSubjects(tenant),
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      lim.MaxAge,
		MaxBytes:    lim.MaxBytes,
		Duplicates:  min(LogDedupWindow, lim.MaxAge),
	}
	_, err := js.CreateOrUpdateStream(ctx, c)
	if isOverlap(err) {
		if rerr := retireLegacyStream(ctx, js, StreamLogs, LogsFilter, log); rerr != nil {
			return fmt.Errorf("ensure stream %s: %w (retiring %s: %w)", c.Name, err, StreamLogs, rerr)
		}
		_, err = js.CreateOrUpdateStream(ctx, c)
	}
	if err != nil {
		return fmt.Errorf("ensure stream %s: %w", c.Name, err)
	}
	return nil
}

// errCodeSubjectOverlap is the server's JSStreamSubjectOverlapErr ("subjects
// overlap with an existing stream"); nats.go has no constant for it.
const errCodeSubjectOverlap jetstream.ErrorCode = 10065

func isOverlap(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeSubjectOverlap
}

// LegacyEvents counts tenant's events still held by the retired single
// event stream of earlier versions (0 when there is none): a replay of the
// tenant's own stream leaves them out.
func LegacyEvents(ctx context.Context, js jetstream.JetStream, tenant string) (uint64, error) {
	st, err := js.Stream(ctx, StreamEvents)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", StreamEvents, err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(TenantEvents(tenant)))
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", StreamEvents, err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n, nil
}

// retireLegacyStream moves name, the single stream of every tenant's
// messages on filter of an earlier version, to pbxpulse.retired.<name>: it
// stops taking new messages but keeps its old ones (their subjects are
// unchanged) until they age out.
func retireLegacyStream(ctx context.Context, js jetstream.JetStream, name, filter string, log *slog.Logger) error {
	st, err := js.Stream(ctx, name)
	if err != nil {
		return err
	}
	cfg := st.CachedInfo().Config
	if len(cfg.Subjects) != 1 || cfg.Subjects[0] != filter {
		return fmt.Errorf("stream %s has subjects %v, not the single stream of an earlier version; not touched", name, cfg.Subjects)
	}
	cfg.Subjects = []string{"pbxpulse.retired." + name}
	cfg.Description = "retired: every tenant's messages from before per-tenant streams; kept until they age out"
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return err
	}
	log.Warn("retired the single stream of an earlier version: it keeps its messages until they age out, new ones go to per-tenant streams",
		"stream", name, "msgs", st.CachedInfo().State.Msgs)
	return nil
}

// Publisher publishes events to JetStream and waits for the store's ack.
type Publisher struct {
	js jetstream.JetStream
}

// NewPublisher returns a Publisher on js.
func NewPublisher(js jetstream.JetStream) *Publisher { return &Publisher{js: js} }

// Publish stores one event. The event id is the Nats-Msg-Id, so retrying a
// publish whose ack was lost stores it once.
func (p *Publisher) Publish(ctx context.Context, ev *pb.Event) error {
	msg, err := Message(ev)
	if err != nil {
		return err
	}
	if _, err := p.js.PublishMsg(ctx, msg, jetstream.WithMsgID(ev.GetId())); err != nil {
		return fmt.Errorf("publish %s: %w", msg.Subject, err)
	}
	return nil
}

// PublishRetry publishes until it succeeds or ctx ends, backing off while
// NATS is away. Events are never dropped here; the caller's read loop stalls
// instead, which is the back-pressure we want.
func (p *Publisher) PublishRetry(ctx context.Context, ev *pb.Event, log *slog.Logger) error {
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := p.Publish(pctx, ev)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode != 0 && apiErr.Code >= 400 && apiErr.Code < 500 && apiErr.Code != 408 {
			return err // a permanent refusal (bad subject, limits): retrying cannot help
		}
		if attempt == 1 || attempt%20 == 0 {
			log.Warn("publish failed, retrying", "event", ev.GetId(), "attempt", attempt, "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, 2*time.Second)
	}
}

// Message encodes an event as a NATS message on its subject.
func Message(ev *pb.Event) (*nats.Msg, error) {
	subj, err := EventSubject(ev)
	if err != nil {
		return nil, err
	}
	data, err := proto.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("marshal event %s: %w", ev.GetId(), err)
	}
	m := &nats.Msg{Subject: subj, Data: data, Header: nats.Header{"Content-Type": eventContentType}}
	return m, nil
}

// AppendMessage is Message with the encoding appended to buf (which the
// message then holds): for publishers that reuse their buffers.
func AppendMessage(buf []byte, ev *pb.Event) (*nats.Msg, error) {
	subj, err := EventSubject(ev)
	if err != nil {
		return nil, err
	}
	data, err := proto.MarshalOptions{}.MarshalAppend(buf, ev)
	if err != nil {
		return nil, fmt.Errorf("marshal event %s: %w", ev.GetId(), err)
	}
	return &nats.Msg{Subject: subj, Data: data, Header: nats.Header{"Content-Type": eventContentType}}, nil
}

// ContentType is the Content-Type header value of every pbxpulse message,
// for publishers that build their messages themselves. Do not modify.
var ContentType = eventContentType

// eventContentType is shared by every message: nats.go only reads it.
var eventContentType = []string{"application/protobuf; proto=pbxpulse.v1.Event"}
