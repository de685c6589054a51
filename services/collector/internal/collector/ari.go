package collector

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"time"

	"github.com/pbxpulse/pbxpulse/pkg/ari"
	"github.com/pbxpulse/pbxpulse/pkg/bus"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/services/collector/internal/normalize"
)

// ariSession follows one PBX's ARI event websocket. With AMI on the same PBX
// it publishes only what AMI cannot see (Stasis, playbacks, unknown event
// types); alone, it is the PBX's only source and publishes everything,
// including the link state and a REST resync on every (re)connect.
type ariSession struct {
	pbx        string
	cfg        ari.Config
	withAMI    bool
	out        *bus.Outbox
	maxBackoff time.Duration
	log        *slog.Logger
	metrics    *metrics
	trunkRe    *regexp.Regexp
	extRe      *regexp.Regexp

	// norm outlives connections so that calls spanning a reconnect keep
	// the linkedids inferred before it.
	norm *normalize.ARI

	env     envelope // per connection
	attempt uint32
}

func (s *ariSession) run(ctx context.Context) {
	backoff := 500 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := s.connectOnce(ctx)
		if !s.withAMI {
			s.metrics.connected.WithLabelValues(s.pbx).Set(0)
		}
		if ctx.Err() != nil {
			if !s.withAMI {
				s.publishConn(pb.PbxConnection_STATE_DISCONNECTED, "collector stopped watching this PBX")
			}
			return
		}
		if time.Since(start) > time.Minute {
			backoff, s.attempt = 500*time.Millisecond, 0
		}
		s.attempt++
		s.log.Warn("ari connection lost", "err", err, "attempt", s.attempt)
		if !s.withAMI {
			s.publishConn(pb.PbxConnection_STATE_DISCONNECTED, err.Error())
		}
		wait := time.Duration(rand.Int64N(int64(backoff))) + backoff/2
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(backoff*2, s.maxBackoff)
	}
}

func (s *ariSession) connectOnce(ctx context.Context) error {
	cfg := s.cfg
	// Alone, ARI must see every channel; with AMI, only the apps' own.
	cfg.SubscribeAll = !s.withAMI
	cfg.Logger = s.log
	conn, err := ari.Dial(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	s.env.newSession()
	if s.norm == nil {
		s.norm = &normalize.ARI{WithAMI: s.withAMI}
	}
	norm := s.norm
	cls := &normalize.Classifier{TrunkPattern: s.trunkRe, ExtensionPattern: s.extRe}
	s.log.Info("ari connected", "apps", cfg.Apps)
	if !s.withAMI {
		s.publishConn(pb.PbxConnection_STATE_RESYNCING, "")
		if err := s.resync(ctx, norm, cls); err != nil {
			return err
		}
		s.attempt = 0
		s.publishConn(pb.PbxConnection_STATE_CONNECTED, "")
		s.metrics.connected.WithLabelValues(s.pbx).Set(1)
	}
	// A quiet PBX must not hold back a dialed channel's events for long.
	flush := time.NewTicker(2 * time.Second)
	defer flush.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-flush.C:
			if time.Since(last) > time.Second {
				s.publishAll(norm.Flush())
			}
		case ev, ok := <-conn.Events():
			if !ok {
				s.publishAll(norm.Flush())
				return conn.Err()
			}
			last = time.Now()
			if ev.Err != nil {
				s.metrics.parseErrs.WithLabelValues(s.pbx).Inc()
				s.log.Warn("malformed ARI frame skipped", "err", ev.Err)
				continue
			}
			s.publishAll(norm.Event(ev))
		}
	}
}

// resync reads the PBX's channels, bridges and endpoints over REST (ARI
// alone has no other way to learn what exists).
func (s *ariSession) resync(ctx context.Context, norm *normalize.ARI, cls *normalize.Classifier) error {
	rest, err := ari.NewREST(s.cfg)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	eps, err := rest.Endpoints(rctx)
	if err != nil {
		return fmt.Errorf("ari resync endpoints: %w", err)
	}
	for _, e := range eps {
		es := cls.ARIEndpoint(e)
		s.publish(&pb.Event{Refs: &pb.PbxRefs{Endpoint: es.Name}, Payload: &pb.Event_EndpointState{EndpointState: es}})
	}
	chans, err := rest.Channels(rctx)
	if err != nil {
		return fmt.Errorf("ari resync channels: %w", err)
	}
	bridges, err := rest.Bridges(rctx)
	if err != nil {
		return fmt.Errorf("ari resync bridges: %w", err)
	}
	snap := norm.Snapshot(chans, bridges, time.Now())
	s.publish(&pb.Event{Payload: &pb.Event_ChannelsSnapshot{ChannelsSnapshot: &pb.ChannelsSnapshot{Channels: snap}}})
	return nil
}

func (s *ariSession) publishAll(evs []*pb.Event) {
	for _, e := range evs {
		s.publish(e)
	}
}

func (s *ariSession) publish(e *pb.Event) {
	if err := s.env.stamp(e); err != nil {
		s.log.Error("event not stamped", "err", err)
		return
	}
	ok, err := s.out.Enqueue(e)
	switch {
	case err != nil:
		s.log.Error("event not encodable", "err", err)
	case !ok:
		s.metrics.dropped.WithLabelValues(s.pbx).Inc()
	default:
		s.metrics.events.WithLabelValues(s.pbx, pb.Source_SOURCE_ARI.String()).Inc()
	}
}

func (s *ariSession) publishConn(state pb.PbxConnection_State, detail string) {
	s.publish(&pb.Event{Payload: &pb.Event_PbxConnection{PbxConnection: &pb.PbxConnection{
		State: state, Detail: detail, Banner: "ARI", Attempt: s.attempt,
	}}})
}
