package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/staskobzar/goami2"

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
	out        *bus.Outbox
	nc         *nats.Conn // for command requests; nil disables call control
	keepalive  time.Duration
	reconcile  time.Duration
	maxBackoff time.Duration
	log        *slog.Logger
	metrics    *metrics
	trunkRe    *regexp.Regexp
	extRe      *regexp.Regexp

	audits chan *pb.Event // from command handlers to the event loop

	// hot-path counters, resolved once
	cAMI, cEvents, cDropped prometheus.Counter

	env     envelope // per connection
	attempt uint32
}

// state is what one connection knows of the PBX, for resync and reconciliation.
type state struct {
	channels *channelTracker
	objects  *objectTracker
}

func (s *session) run(ctx context.Context) {
	backoff := 500 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := s.connectOnce(ctx)
		s.metrics.connected.WithLabelValues(s.pbx.ID).Set(0)
		if ctx.Err() != nil {
			// Leadership lost or shutting down: the PBX's state is unknown
			// until someone (maybe another replica) reconnects.
			s.publishConn(pb.PbxConnection_STATE_DISCONNECTED, "collector stopped watching this PBX", "")
			return
		}
		if time.Since(start) > time.Minute {
			backoff, s.attempt = 500*time.Millisecond, 0 // it was up for a while: start over
		}
		s.attempt++
		s.log.Warn("pbx connection lost", "err", err, "attempt", s.attempt)
		s.publishConn(pb.PbxConnection_STATE_DISCONNECTED, errText(err), "")
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

func (s *session) connectOnce(ctx context.Context) error {
	conn, err := ami.Dial(ctx, s.pbx.Addr, s.pbx.User, s.pbx.Secret, ami.Options{Events: true})
	if err != nil {
		return err
	}
	defer conn.Close()
	s.env.newSession()
	s.log.Info("pbx connected", "banner", conn.Banner())
	s.publishConn(pb.PbxConnection_STATE_RESYNCING, "", conn.Banner())

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lists := make(chan *listing, 1)
	errs := make(chan error, 2)
	reading := false
	read := func(full bool, reason string) {
		reading = true
		if full {
			s.metrics.resyncs.WithLabelValues(s.pbx.ID, reason).Inc()
		}
		go func() {
			l, err := s.readLists(cctx, conn, full, reason)
			if err != nil {
				errs <- fmt.Errorf("list actions (%s): %w", reason, err)
				return
			}
			lists <- l
		}()
	}
	read(true, "connect")
	go func() { errs <- s.keepAlive(cctx, conn) }()
	if s.nc != nil {
		cmd, err := s.serveCommands(cctx, conn)
		if err != nil {
			return err
		}
		defer cmd.Unsubscribe()
	}

	st := &state{channels: newChannelTracker(), objects: newObjectTracker()}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	nextReconcile := time.Now().Add(s.reconcile)
	connected := false
	var pending *listing
	var processed uint64
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errs:
			return err
		case l := <-lists:
			pending = l
		case a := <-s.audits:
			if err := s.publish(a); err != nil {
				return err
			}
		case ev, ok := <-conn.Events():
			if !ok {
				return conn.Err()
			}
			processed = ev.Seq
			if err := s.handleEvent(ev, st); err != nil {
				return err
			}
		case <-tick.C:
			s.metrics.outboxLen.WithLabelValues(s.pbx.ID).Set(float64(s.out.Len()))
			if !reading && pending == nil {
				// No list is being read: nothing needs the seq bookkeeping.
				st.channels.forgetBefore(processed)
			}
			switch {
			case reading || !connected:
			case s.out.Overflowed() && s.out.Len() < s.out.Capacity()/2:
				// Events were dropped while NATS was away; it is back and the
				// queue has room again: publish the truth anew.
				s.out.ClearOverflow()
				read(true, "overflow")
			case s.reconcile > 0 && time.Now().After(nextReconcile):
				read(false, "reconcile")
			}
		}
		// Lists are applied once every event read before they completed has
		// been handled, so the stream stays in PBX order.
		if pending != nil && processed >= pending.done {
			l := pending
			pending, reading = nil, false
			if l.full {
				err = s.applyFull(l, st)
			} else {
				err = s.applyReconcile(l, st)
			}
			if err != nil {
				return err
			}
			st.channels.forgetBefore(processed)
			nextReconcile = time.Now().Add(s.reconcile)
			if !connected {
				connected = true
				s.attempt = 0
				s.publishConn(pb.PbxConnection_STATE_CONNECTED, "", conn.Banner())
				s.metrics.connected.WithLabelValues(s.pbx.ID).Set(1)
				s.log.Info("pbx resynced", "channels", len(st.channels.live))
			}
		}
	}
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

func (s *session) handleEvent(ev ami.Event, st *state) error {
	m := ev.Msg
	s.counters().cAMI.Inc()
	switch m.Field("Event") {
	case "PbxpulseParseError":
		s.metrics.parseErrs.WithLabelValues(s.pbx.ID).Inc()
		s.log.Warn("malformed AMI message skipped", "err", m.Field("Error"))
		return nil
	case "Shutdown":
		return errors.New("pbx is shutting down")
	}
	e := normalize.Event(m)
	if e == nil {
		return nil
	}
	st.channels.observe(ev.Seq, e)
	st.objects.observe(ev.Seq, e)
	return s.publish(e)
}

// publish fills the envelope and queues the event. A full outbox is not an
// error: the outbox counts and logs it, and the event loop resyncs once
// NATS is back.
func (s *session) publish(e *pb.Event) error {
	if err := s.env.stamp(e); err != nil {
		return err
	}
	ok, err := s.out.Enqueue(e)
	if err != nil {
		return err
	}
	if !ok {
		s.counters().cDropped.Inc()
		return nil
	}
	s.counters().cEvents.Inc()
	return nil
}

func (s *session) counters() *session {
	if s.cAMI == nil {
		s.cAMI = s.metrics.amiMsgs.WithLabelValues(s.pbx.ID)
		s.cEvents = s.metrics.events.WithLabelValues(s.pbx.ID, pb.Source_SOURCE_AMI.String())
		s.cDropped = s.metrics.dropped.WithLabelValues(s.pbx.ID)
	}
	return s
}

func (s *session) publishConn(state pb.PbxConnection_State, detail, banner string) {
	e := &pb.Event{Payload: &pb.Event_PbxConnection{PbxConnection: &pb.PbxConnection{
		State: state, Detail: detail, Banner: banner, Attempt: s.attempt,
	}}}
	if err := s.publish(e); err != nil {
		s.log.Error("publish connection state", "err", err)
	}
}
