package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"time"

	"github.com/google/uuid"
	"github.com/staskobzar/goami2"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pbxpulse/pbxpulse/pkg/ami"
	"github.com/pbxpulse/pbxpulse/pkg/bus"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/services/collector/internal/normalize"
)

// session is the life of the collector's link to one PBX: connect, resync,
// follow events, and on any failure publish "disconnected" and start over.
type session struct {
	pbx        PBX
	tenant     string
	pub        *bus.Publisher
	keepalive  time.Duration
	maxBackoff time.Duration
	log        *slog.Logger
	trunkRe    *regexp.Regexp
	extRe      *regexp.Regexp

	// per connection
	sessionID string
	seq       uint64
	attempt   uint32
}

func (s *session) run(ctx context.Context) {
	backoff := 500 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := s.connectOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > time.Minute {
			backoff, s.attempt = 500*time.Millisecond, 0 // it was up for a while: start over
		}
		s.attempt++
		s.log.Warn("pbx connection lost", "err", err, "attempt", s.attempt)
		s.publishConn(ctx, pb.PbxConnection_STATE_DISCONNECTED, errText(err), "")
		// Full jitter: replicas and many PBXs do not reconnect in lockstep.
		wait := time.Duration(rand.Int64N(int64(backoff))) + backoff/2
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(backoff*2, s.maxBackoff)
	}
}

// errText describes a connection failure without credentials: Dial errors
// name only the address, and login failures carry Asterisk's message.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// resync is the answer to the initial actions, handed to the event loop so
// that it is published in order with the events around it.
type resync struct {
	regs, endpoints, contacts, channels *ami.Result
}

func (s *session) connectOnce(ctx context.Context) error {
	conn, err := ami.Dial(ctx, s.pbx.Addr, s.pbx.User, s.pbx.Secret, ami.Options{Events: true})
	if err != nil {
		return err
	}
	defer conn.Close()
	s.sessionID = uuid.NewString()
	s.seq = 0
	s.log.Info("pbx connected", "banner", conn.Banner())
	s.publishConn(ctx, pb.PbxConnection_STATE_RESYNCING, "", conn.Banner())

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan *resync, 1)
	errs := make(chan error, 2)
	go func() {
		r, err := s.initialActions(cctx, conn)
		if err != nil {
			errs <- fmt.Errorf("initial actions: %w", err)
			return
		}
		results <- r
	}()
	go func() { errs <- s.keepAlive(cctx, conn) }()

	st := newChannelTracker()
	var pending *resync
	var processed uint64
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errs:
			return err
		case r := <-results:
			pending = r
		case ev, ok := <-conn.Events():
			if !ok {
				return conn.Err()
			}
			processed = ev.Seq
			if err := s.handleEvent(ctx, ev, st); err != nil {
				return err
			}
		}
		// The list answers are applied once every event read before they
		// completed has been handled, so the stream stays in PBX order.
		if pending != nil && processed >= pending.channels.DoneSeq {
			if err := s.applyResync(ctx, pending, st); err != nil {
				return err
			}
			pending = nil
			st.forgetBefore(processed)
			s.attempt = 0
			s.publishConn(ctx, pb.PbxConnection_STATE_CONNECTED, "", conn.Banner())
			s.log.Info("pbx resynced", "channels", len(st.live))
		}
	}
}

func (s *session) initialActions(ctx context.Context, conn *ami.Conn) (*resync, error) {
	var r resync
	for _, a := range []struct {
		name string
		dst  **ami.Result
	}{
		{"PJSIPShowRegistrationsOutbound", &r.regs},
		{"PJSIPShowEndpoints", &r.endpoints},
		{"PJSIPShowContacts", &r.contacts},
		{"CoreShowChannels", &r.channels},
	} {
		res, err := conn.Action(ctx, goami2.NewAction(a.name))
		if err != nil {
			return nil, err
		}
		// An Error answer (e.g. no PJSIP module) is an empty list, not a failure.
		if err := res.Error(); err != nil {
			s.log.Warn("action refused", "action", a.name, "err", err)
		}
		*a.dst = res
	}
	return &r, nil
}

func (s *session) keepAlive(ctx context.Context, conn *ami.Conn) error {
	t := time.NewTicker(s.keepalive)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			pctx, cancel := context.WithTimeout(ctx, s.keepalive)
			_, err := conn.Action(pctx, goami2.NewAction("Ping"))
			cancel()
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("keepalive: %w", err)
			}
		}
	}
}

func (s *session) handleEvent(ctx context.Context, ev ami.Event, st *channelTracker) error {
	m := ev.Msg
	switch m.Field("Event") {
	case "PbxpulseParseError":
		s.log.Warn("malformed AMI message skipped", "err", m.Field("Error"))
		return nil
	case "Shutdown":
		return errors.New("pbx is shutting down")
	}
	e := normalize.Event(m)
	if e == nil {
		return nil
	}
	st.observe(ev.Seq, e)
	return s.publish(ctx, e)
}

func (s *session) applyResync(ctx context.Context, r *resync, st *channelTracker) error {
	cls := normalize.Classifier{TrunkPattern: s.trunkRe, ExtensionPattern: s.extRe}
	for _, m := range r.regs.Items {
		if m.Field("Event") != "OutboundRegistrationDetail" {
			continue
		}
		cls.NoteRegistration(m)
		reg := normalize.OutboundRegistration(m)
		if err := s.publish(ctx, &pb.Event{Payload: &pb.Event_TrunkRegistration{TrunkRegistration: reg}}); err != nil {
			return err
		}
	}
	for _, m := range r.endpoints.Items {
		if m.Field("Event") != "EndpointList" {
			continue
		}
		es := normalize.EndpointState(m, cls.Kind(m))
		e := &pb.Event{Refs: &pb.PbxRefs{Endpoint: es.Name}, Payload: &pb.Event_EndpointState{EndpointState: es}}
		if err := s.publish(ctx, e); err != nil {
			return err
		}
	}
	for _, m := range r.contacts.Items {
		if m.Field("Event") != "ContactList" {
			continue
		}
		c := normalize.ContactListItem(m)
		e := &pb.Event{Refs: &pb.PbxRefs{Endpoint: c.Endpoint}, Payload: &pb.Event_ContactStatus{ContactStatus: c}}
		if err := s.publish(ctx, e); err != nil {
			return err
		}
	}
	var listed []*pb.Channel
	for _, m := range r.channels.Items {
		if m.Field("Event") == "CoreShowChannel" {
			listed = append(listed, normalize.CoreShowChannel(m))
		}
	}
	snap := st.reconcile(listed, r.channels.SentSeq)
	return s.publish(ctx, &pb.Event{Payload: &pb.Event_ChannelsSnapshot{ChannelsSnapshot: &pb.ChannelsSnapshot{Channels: snap}}})
}

// publish fills the envelope and stores the event, retrying while NATS is
// away; the AMI reader waits meanwhile (back-pressure, never a drop).
func (s *session) publish(ctx context.Context, e *pb.Event) error {
	now := time.Now()
	s.seq++
	id, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("event id: %w", err)
	}
	e.Id = id.String()
	e.Tenant = s.tenant
	e.PbxId = s.pbx.ID
	e.Source = pb.Source_SOURCE_AMI
	e.ReceivedTime = timestamppb.New(now)
	if e.PbxTime == nil {
		e.PbxTime = e.ReceivedTime
	}
	e.SessionSeq = s.seq
	e.SessionId = s.sessionID
	return s.pub.PublishRetry(ctx, e, s.log)
}

func (s *session) publishConn(ctx context.Context, state pb.PbxConnection_State, detail, banner string) {
	e := &pb.Event{Payload: &pb.Event_PbxConnection{PbxConnection: &pb.PbxConnection{
		State: state, Detail: detail, Banner: banner, Attempt: s.attempt,
	}}}
	if err := s.publish(ctx, e); err != nil && ctx.Err() == nil {
		s.log.Error("publish connection state", "err", err)
	}
}
