package collector

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/staskobzar/goami2"
	"google.golang.org/protobuf/proto"

	"github.com/pbxpulse/pbxpulse/pkg/ami"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/services/collector/internal/normalize"
)

// listing is the answer to a set of list actions, already converted to the
// contract, handed to the event loop so that it is applied in order with the
// events around it. Each list remembers the event sequence number at which
// it was requested (its *Sent), to tell it from newer events.
type listing struct {
	full   bool   // a full resync (connect, overflow) rather than a reconciliation
	reason string // why a full resync was run
	done   uint64 // the highest DoneSeq: apply once every event up to it is handled

	regs                  []*pb.TrunkRegistration
	endpoints             []*pb.EndpointState // PJSIP, chan_sip and IAX2
	contacts              []*pb.ContactStatus
	devices               []*pb.DeviceState
	queues                *pb.QueuesSnapshot // nil when the PBX has no app_queue
	channels              []*pb.Channel
	regsSent, contactSent uint64
	devicesSent, chanSent uint64
}

// Full resync reads everything the views show; the reconciliation only what
// drifts in practice.
var (
	fullActions      = []string{"PJSIPShowRegistrationsOutbound", "PJSIPShowEndpoints", "PJSIPShowContacts", "SIPpeers", "IAXpeerlist", "QueueStatus", "CoreShowChannels"}
	reconcileActions = []string{"PJSIPShowRegistrationsOutbound", "PJSIPShowContacts", "DeviceStateList", "CoreShowChannels"}
)

// readLists runs the actions one after the other and converts each answer
// at once, so that a PBX with 10,000 endpoints never has its raw list
// messages in memory all together. A PBX without a module answers Error
// (e.g. no chan_sip: "Invalid/unknown command"): that list is empty, not a
// failure.
func (s *session) readLists(ctx context.Context, conn *ami.Conn, full bool, reason string) (*listing, error) {
	names := reconcileActions
	if full {
		names = fullActions
	}
	l := &listing{full: full, reason: reason}
	cls := normalize.Classifier{TrunkPattern: s.trunkRe, ExtensionPattern: s.extRe}
	for _, name := range names {
		res, err := conn.Action(ctx, goami2.NewAction(name))
		if err != nil {
			return nil, err
		}
		if err := res.Error(); err != nil {
			s.log.Debug("list action refused", "action", name, "err", err)
		}
		l.done = max(l.done, res.DoneSeq)
		switch name {
		case "PJSIPShowRegistrationsOutbound":
			l.regsSent = res.SentSeq
			for _, m := range items(res, "OutboundRegistrationDetail") {
				cls.NoteRegistration(m)
				l.regs = append(l.regs, detach(normalize.OutboundRegistration(m)))
			}
		case "PJSIPShowEndpoints":
			for _, m := range items(res, "EndpointList") {
				l.endpoints = append(l.endpoints, detach(normalize.EndpointState(m, cls.Kind(m))))
			}
		case "SIPpeers", "IAXpeerlist":
			for _, m := range items(res, "PeerEntry") {
				l.endpoints = append(l.endpoints, detach(cls.Peer(m)))
			}
		case "PJSIPShowContacts":
			l.contactSent = res.SentSeq
			for _, m := range items(res, "ContactList") {
				l.contacts = append(l.contacts, detach(normalize.ContactListItem(m)))
			}
		case "DeviceStateList":
			l.devicesSent = res.SentSeq
			for _, m := range items(res, "DeviceStateChange") {
				l.devices = append(l.devices, &pb.DeviceState{Device: strings.Clone(m.Field("Device")), State: strings.Clone(m.Field("State"))})
			}
		case "QueueStatus":
			if res.Error() != nil {
				continue
			}
			q := &pb.QueuesSnapshot{}
			for _, m := range items(res, "QueueParams") {
				q.Queues = append(q.Queues, normalize.QueueParams(m))
			}
			for _, m := range items(res, "QueueMember") {
				q.Members = append(q.Members, normalize.QueueMember(m))
			}
			for _, m := range items(res, "QueueEntry") {
				q.Callers = append(q.Callers, normalize.QueueEntry(m))
			}
			l.queues = detach(q)
		case "CoreShowChannels":
			l.chanSent = res.SentSeq
			for _, m := range items(res, "CoreShowChannel") {
				l.channels = append(l.channels, detach(normalize.CoreShowChannel(m)))
			}
		}
	}
	return l, nil
}

// detach copies a message whose strings are slices of AMI frames, so that
// keeping it does not keep whole frames alive.
func detach[M proto.Message](m M) M {
	b, err := proto.Marshal(m)
	if err != nil {
		return m
	}
	out := m.ProtoReflect().New().Interface().(M)
	if proto.Unmarshal(b, out) != nil {
		return m
	}
	return out
}

func items(r *ami.Result, event string) []*goami2.Message {
	var out []*goami2.Message
	for _, m := range r.Items {
		if m.Field("Event") == event {
			out = append(out, m)
		}
	}
	return out
}

// pace keeps a burst (10,000 endpoints at resync) from piling up in the
// outbox when it could as well wait in the PBX's socket: every so often it
// lets the outbox drain, for at most a few seconds (NATS may be away; then
// the outbox's own limits apply).
func (s *session) pace(i int) {
	if i%500 != 0 || s.out.Len() < 2000 {
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.out.Len() > 1000 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
}

// applyFull publishes the PBX's whole state as it is now. Endpoints not
// announced between RESYNCING and CONNECTED of a session no longer exist.
func (s *session) applyFull(l *listing, st *state) error {
	n := 0
	emit := func(e *pb.Event) error {
		n++
		s.pace(n)
		return s.publish(e)
	}
	for _, reg := range l.regs {
		if err := emit(&pb.Event{Payload: &pb.Event_TrunkRegistration{TrunkRegistration: reg}}); err != nil {
			return err
		}
	}
	for _, es := range l.endpoints {
		if err := emit(&pb.Event{Refs: &pb.PbxRefs{Endpoint: es.Name}, Payload: &pb.Event_EndpointState{EndpointState: es}}); err != nil {
			return err
		}
	}
	for _, c := range l.contacts {
		if err := emit(&pb.Event{Refs: &pb.PbxRefs{Endpoint: c.Endpoint}, Payload: &pb.Event_ContactStatus{ContactStatus: c}}); err != nil {
			return err
		}
	}
	st.objects.reset(l.contacts, l.regs, l.contactSent)
	if l.queues != nil {
		if err := emit(&pb.Event{Payload: &pb.Event_QueuesSnapshot{QueuesSnapshot: l.queues}}); err != nil {
			return err
		}
	}
	snap := st.channels.reconcile(l.channels, l.chanSent)
	return s.publish(&pb.Event{Payload: &pb.Event_ChannelsSnapshot{ChannelsSnapshot: &pb.ChannelsSnapshot{Channels: snap}}})
}

// applyReconcile compares the lists with what events said and publishes
// corrections only where they differ, then a Reconciliation with the counts.
func (s *session) applyReconcile(l *listing, st *state) error {
	var rec pb.Reconciliation
	for _, r := range st.objects.regDrift(l.regs, l.regsSent) {
		rec.RegistrationsDrift++
		if err := s.publish(&pb.Event{Payload: &pb.Event_TrunkRegistration{TrunkRegistration: r}}); err != nil {
			return err
		}
	}
	for _, c := range st.objects.contactDrift(l.contacts, l.contactSent) {
		rec.ContactsDrift++
		if err := s.publish(&pb.Event{Refs: &pb.PbxRefs{Endpoint: c.Endpoint}, Payload: &pb.Event_ContactStatus{ContactStatus: c}}); err != nil {
			return err
		}
	}
	for _, d := range st.objects.deviceDrift(l.devices, l.devicesSent) {
		rec.DevicesDrift++
		if err := s.publish(&pb.Event{Refs: &pb.PbxRefs{Endpoint: ami.EndpointOfDevice(d.Device)}, Payload: &pb.Event_DeviceState{DeviceState: d}}); err != nil {
			return err
		}
	}
	rec.ChannelsDrift = uint32(st.channels.drift(l.channels, l.chanSent))
	snap := st.channels.reconcile(l.channels, l.chanSent)
	if rec.ChannelsDrift > 0 {
		if err := s.publish(&pb.Event{Payload: &pb.Event_ChannelsSnapshot{ChannelsSnapshot: &pb.ChannelsSnapshot{Channels: snap}}}); err != nil {
			return err
		}
	}
	for list, n := range map[string]uint32{"channels": rec.ChannelsDrift, "contacts": rec.ContactsDrift, "registrations": rec.RegistrationsDrift, "devices": rec.DevicesDrift} {
		s.metrics.drift.WithLabelValues(s.pbx.ID, list).Add(float64(n))
	}
	if n := rec.ChannelsDrift + rec.ContactsDrift + rec.RegistrationsDrift + rec.DevicesDrift; n > 0 {
		s.log.Warn("reconciliation corrected drift", "channels", rec.ChannelsDrift, "contacts", rec.ContactsDrift,
			"registrations", rec.RegistrationsDrift, "devices", rec.DevicesDrift)
	}
	if err := s.publish(&pb.Event{Payload: &pb.Event_Reconciliation{Reconciliation: &rec}}); err != nil {
		return fmt.Errorf("reconciliation: %w", err)
	}
	return nil
}
