package collector

import (
	"context"
	"fmt"

	"github.com/staskobzar/goami2"

	"github.com/pbxpulse/pbxpulse/pkg/ami"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/services/collector/internal/normalize"
)

// listing is the answer to a set of list actions, handed to the event loop so
// that it is applied in order with the events around it.
type listing struct {
	full    bool   // a full resync (connect, overflow) rather than a reconciliation
	reason  string // why a full resync was run
	results map[string]*ami.Result
	done    uint64 // the highest DoneSeq: apply once every event up to it is handled
}

// Full resync reads everything the views show; the reconciliation only what
// drifts in practice.
var (
	fullActions      = []string{"PJSIPShowRegistrationsOutbound", "PJSIPShowEndpoints", "PJSIPShowContacts", "SIPpeers", "IAXpeerlist", "QueueStatus", "CoreShowChannels"}
	reconcileActions = []string{"PJSIPShowRegistrationsOutbound", "PJSIPShowContacts", "DeviceStateList", "CoreShowChannels"}
)

// readLists runs the actions one after the other. A PBX without a module
// answers Error (e.g. no chan_sip: "Invalid/unknown command"): that list is
// empty, not a failure.
func (s *session) readLists(ctx context.Context, conn *ami.Conn, full bool, reason string) (*listing, error) {
	names := reconcileActions
	if full {
		names = fullActions
	}
	l := &listing{full: full, reason: reason, results: map[string]*ami.Result{}}
	for _, name := range names {
		res, err := conn.Action(ctx, goami2.NewAction(name))
		if err != nil {
			return nil, err
		}
		if err := res.Error(); err != nil {
			s.log.Debug("list action refused", "action", name, "err", err)
		}
		l.results[name] = res
		l.done = max(l.done, res.DoneSeq)
	}
	return l, nil
}

func items(r *ami.Result, event string) []*goami2.Message {
	if r == nil {
		return nil
	}
	var out []*goami2.Message
	for _, m := range r.Items {
		if m.Field("Event") == event {
			out = append(out, m)
		}
	}
	return out
}

func sentSeq(r *ami.Result) uint64 {
	if r == nil {
		return 0
	}
	return r.SentSeq
}

// applyFull publishes the PBX's whole state as it is now. Endpoints not
// announced between RESYNCING and CONNECTED of a session no longer exist.
func (s *session) applyFull(l *listing, st *state) error {
	cls := normalize.Classifier{TrunkPattern: s.trunkRe, ExtensionPattern: s.extRe}
	var regs []*pb.TrunkRegistration
	regItems := items(l.results["PJSIPShowRegistrationsOutbound"], "OutboundRegistrationDetail")
	for _, m := range regItems {
		cls.NoteRegistration(m)
	}
	for _, m := range regItems {
		reg := normalize.OutboundRegistration(m)
		regs = append(regs, reg)
		if err := s.publish(&pb.Event{Payload: &pb.Event_TrunkRegistration{TrunkRegistration: reg}}); err != nil {
			return err
		}
	}
	for _, m := range items(l.results["PJSIPShowEndpoints"], "EndpointList") {
		es := normalize.EndpointState(m, cls.Kind(m))
		if err := s.publish(&pb.Event{Refs: &pb.PbxRefs{Endpoint: es.Name}, Payload: &pb.Event_EndpointState{EndpointState: es}}); err != nil {
			return err
		}
	}
	for _, action := range []string{"SIPpeers", "IAXpeerlist"} {
		for _, m := range items(l.results[action], "PeerEntry") {
			es := cls.Peer(m)
			if err := s.publish(&pb.Event{Refs: &pb.PbxRefs{Endpoint: es.Name}, Payload: &pb.Event_EndpointState{EndpointState: es}}); err != nil {
				return err
			}
		}
	}
	var contacts []*pb.ContactStatus
	for _, m := range items(l.results["PJSIPShowContacts"], "ContactList") {
		c := normalize.ContactListItem(m)
		contacts = append(contacts, c)
		if err := s.publish(&pb.Event{Refs: &pb.PbxRefs{Endpoint: c.Endpoint}, Payload: &pb.Event_ContactStatus{ContactStatus: c}}); err != nil {
			return err
		}
	}
	st.objects.reset(contacts, regs, sentSeq(l.results["PJSIPShowContacts"]))
	if q := l.results["QueueStatus"]; q != nil && q.Error() == nil {
		snap := &pb.QueuesSnapshot{}
		for _, m := range items(q, "QueueParams") {
			snap.Queues = append(snap.Queues, normalize.QueueParams(m))
		}
		for _, m := range items(q, "QueueMember") {
			snap.Members = append(snap.Members, normalize.QueueMember(m))
		}
		for _, m := range items(q, "QueueEntry") {
			snap.Callers = append(snap.Callers, normalize.QueueEntry(m))
		}
		if err := s.publish(&pb.Event{Payload: &pb.Event_QueuesSnapshot{QueuesSnapshot: snap}}); err != nil {
			return err
		}
	}
	ch := l.results["CoreShowChannels"]
	snap := st.channels.reconcile(channelList(ch), sentSeq(ch))
	return s.publish(&pb.Event{Payload: &pb.Event_ChannelsSnapshot{ChannelsSnapshot: &pb.ChannelsSnapshot{Channels: snap}}})
}

func channelList(r *ami.Result) []*pb.Channel {
	var out []*pb.Channel
	for _, m := range items(r, "CoreShowChannel") {
		out = append(out, normalize.CoreShowChannel(m))
	}
	return out
}

// applyReconcile compares the lists with what events said and publishes
// corrections only where they differ, then a Reconciliation with the counts.
func (s *session) applyReconcile(l *listing, st *state) error {
	var rec pb.Reconciliation

	regs := l.results["PJSIPShowRegistrationsOutbound"]
	var listedRegs []*pb.TrunkRegistration
	for _, m := range items(regs, "OutboundRegistrationDetail") {
		listedRegs = append(listedRegs, normalize.OutboundRegistration(m))
	}
	for _, r := range st.objects.regDrift(listedRegs, sentSeq(regs)) {
		rec.RegistrationsDrift++
		if err := s.publish(&pb.Event{Payload: &pb.Event_TrunkRegistration{TrunkRegistration: r}}); err != nil {
			return err
		}
	}

	contacts := l.results["PJSIPShowContacts"]
	var listedContacts []*pb.ContactStatus
	for _, m := range items(contacts, "ContactList") {
		listedContacts = append(listedContacts, normalize.ContactListItem(m))
	}
	for _, c := range st.objects.contactDrift(listedContacts, sentSeq(contacts)) {
		rec.ContactsDrift++
		if err := s.publish(&pb.Event{Refs: &pb.PbxRefs{Endpoint: c.Endpoint}, Payload: &pb.Event_ContactStatus{ContactStatus: c}}); err != nil {
			return err
		}
	}

	devs := l.results["DeviceStateList"]
	var listedDevs []*pb.DeviceState
	for _, m := range items(devs, "DeviceStateChange") {
		listedDevs = append(listedDevs, &pb.DeviceState{Device: m.Field("Device"), State: m.Field("State")})
	}
	for _, d := range st.objects.deviceDrift(listedDevs, sentSeq(devs)) {
		rec.DevicesDrift++
		if err := s.publish(&pb.Event{Refs: &pb.PbxRefs{Endpoint: ami.EndpointOfDevice(d.Device)}, Payload: &pb.Event_DeviceState{DeviceState: d}}); err != nil {
			return err
		}
	}

	ch := l.results["CoreShowChannels"]
	listed := channelList(ch)
	rec.ChannelsDrift = uint32(st.channels.drift(listed, sentSeq(ch)))
	snap := st.channels.reconcile(listed, sentSeq(ch))
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
