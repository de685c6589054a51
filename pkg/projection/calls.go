package projection

import (
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pbxpulse/pbxpulse/pkg/ami"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

// Channel states (ast_channel_state) the projection tells apart.
const (
	stateRinging = 5
	stateUp      = 6
)

// callOf returns the call a channel is in now.
func (v *Views) callOf(pbx string, ch *pb.Channel) *pb.CallView {
	if ch == nil {
		return nil
	}
	return v.calls[v.chanCall[pbx+"/"+ch.Uniqueid]]
}

func (v *Views) isHeld(pbx, uniqueid string) bool {
	c := v.calls[v.chanCall[pbx+"/"+uniqueid]]
	return c != nil && slices.Contains(c.Held, uniqueid)
}

// upsertChannel merges a channel's reported state into its call. When the
// event does not say which bridge the channel is in, the known bridge stays
// (keepBridge).
func (v *Views) upsertChannel(pbx string, at *timestamppb.Timestamp, ch *pb.Channel, keepBridge bool) {
	if ch == nil || ch.Uniqueid == "" {
		return
	}
	linked := ch.Linkedid
	if linked == "" {
		linked = ch.Uniqueid
	}
	ck := pbx + "/" + linked
	if old, ok := v.chanCall[pbx+"/"+ch.Uniqueid]; ok && old != ck {
		// Linkedid changed (transfer, masquerade): move the channel.
		v.removeChannel(pbx, at, ch.Uniqueid)
	}
	call := v.calls[ck]
	if call == nil {
		call = &pb.CallView{PbxId: pbx, Linkedid: linked, StartedAt: at}
		v.calls[ck] = call
		delete(v.removedCalls, ck)
	}
	n := v.own(ch)
	n.Linkedid = linked
	n.DurationSeconds = 0
	var oldEP string
	found := false
	for i, x := range call.Channels {
		if x.Uniqueid == ch.Uniqueid {
			if keepBridge && n.BridgeId == "" {
				n.BridgeId = x.BridgeId
			}
			if n.Application == "" {
				n.Application = x.Application
			}
			oldEP = v.unindexChannel(pbx, x)
			call.Channels[i] = n
			found = true
		}
	}
	if !found {
		call.Channels = append(call.Channels, n)
	}
	v.chanCall[pbx+"/"+ch.Uniqueid] = ck
	ep := v.indexChannel(pbx, n)
	call.Parties = addUnique(call.Parties, ep)
	call.ChannelNames = addUnique(call.ChannelNames, n.Name)
	v.deriveCall(call, at)
	v.dirtyCalls[ck] = true
	if oldEP != ep {
		v.touchEndpoint(pbx, oldEP)
	}
	v.touchEndpoint(pbx, ep)
}

func (v *Views) updateChannel(pbx string, at *timestamppb.Timestamp, ch *pb.Channel, keepBridge bool) {
	if ch == nil {
		return
	}
	if _, ok := v.chanCall[pbx+"/"+ch.Uniqueid]; ok {
		v.upsertChannel(pbx, at, ch, keepBridge)
	}
}

// removeChannel takes a channel out of its call; a call whose last channel
// goes has ended at at and enters the history.
func (v *Views) removeChannel(pbx string, at *timestamppb.Timestamp, uniqueid string) {
	ck, ok := v.chanCall[pbx+"/"+uniqueid]
	if !ok {
		return
	}
	delete(v.chanCall, pbx+"/"+uniqueid)
	call := v.calls[ck]
	if call == nil {
		return
	}
	var gone *pb.Channel
	kept := call.Channels[:0]
	for _, x := range call.Channels {
		if x.Uniqueid == uniqueid {
			gone = x
			continue
		}
		kept = append(kept, x)
	}
	call.Channels = kept
	if i := slices.Index(call.Held, uniqueid); i >= 0 {
		call.Held = slices.Delete(call.Held, i, i+1)
	}
	if len(kept) == 0 {
		delete(v.calls, ck)
		delete(v.dirtyCalls, ck)
		v.removedCalls[ck] = &pb.CallKey{PbxId: call.PbxId, Linkedid: call.Linkedid}
		v.history = append(v.history, record(call, gone, at))
	} else {
		v.deriveCall(call, nil)
		v.dirtyCalls[ck] = true
	}
	if gone != nil {
		v.touchEndpoint(pbx, v.unindexChannel(pbx, gone))
	}
}

// applyChannelsSnapshot makes the PBX's calls exactly the listed channels.
func (v *Views) applyChannelsSnapshot(pbx string, at *timestamppb.Timestamp, chans []*pb.Channel) {
	listed := map[string]bool{}
	for _, ch := range chans {
		listed[ch.Uniqueid] = true
	}
	var gone []string
	for key := range v.chanCall {
		if p, id, _ := strings.Cut(key, "/"); p == pbx && !listed[id] {
			gone = append(gone, id)
		}
	}
	// Sorted, so that calls ending together enter the history in one order.
	slices.Sort(gone)
	for _, id := range gone {
		v.removeChannel(pbx, at, id)
	}
	// A call first seen in this listing starts with its oldest channel,
	// whichever order the PBX lists them in; a call already known keeps
	// its start.
	known := map[string]bool{}
	for _, ch := range chans {
		linked := ch.Linkedid
		if linked == "" {
			linked = ch.Uniqueid
		}
		_, known[linked] = v.calls[pbx+"/"+linked]
	}
	for _, ch := range chans {
		start := at
		if ch.DurationSeconds > 0 && at != nil {
			start = timestamppb.New(at.AsTime().Add(-time.Duration(ch.DurationSeconds) * time.Second))
		}
		linked := ch.Linkedid
		if linked == "" {
			linked = ch.Uniqueid
		}
		v.upsertChannel(pbx, start, ch, false)
		if c := v.calls[pbx+"/"+linked]; c != nil && !known[linked] && start != nil {
			if c.StartedAt == nil || start.AsTime().Before(c.StartedAt.AsTime()) {
				c.StartedAt = start
			}
		}
	}
}

func (v *Views) applyHold(pbx string, at *timestamppb.Timestamp, h *pb.ChannelHold) {
	c := v.callOf(pbx, h.Channel)
	if c == nil {
		return
	}
	uid := h.Channel.Uniqueid
	i := slices.Index(c.Held, uid)
	switch {
	case h.Held && i < 0:
		c.Held = append(c.Held, uid)
	case !h.Held && i >= 0:
		c.Held = slices.Delete(c.Held, i, i+1)
	}
	v.deriveCall(c, at)
	v.dirtyCalls[pbx+"/"+c.Linkedid] = true
	v.touchEndpoint(pbx, ami.EndpointOfChannel(h.Channel.Name))
}

func (v *Views) applyTransfer(pbx string, at *timestamppb.Timestamp, t *pb.Transfer) {
	c := v.callOf(pbx, t.Transferer)
	if c == nil {
		c = v.callOf(pbx, t.Transferee)
	}
	if c == nil {
		return
	}
	r := &pb.TransferRecord{Result: t.Result, At: at}
	if t.Transferer != nil {
		r.By = partyOf(t.Transferer.Name)
	}
	switch t.Kind {
	case pb.Transfer_KIND_ATTENDED:
		r.Kind = "attended"
		switch {
		case t.Target != nil:
			r.To = partyOf(t.Target.Name)
		case t.SecondTransferer != nil:
			r.To = t.SecondTransferer.ConnectedNum
		}
	default:
		r.Kind = "blind"
		r.To = t.Extension
	}
	c.Transfers = append(c.Transfers, r)
	v.deriveCall(c, at)
	v.dirtyCalls[pbx+"/"+c.Linkedid] = true
}

// deriveCall sets a call's parties, direction and state from its channels.
func (v *Views) deriveCall(c *pb.CallView, at *timestamppb.Timestamp) {
	if len(c.Channels) == 0 {
		return
	}
	// The parties come from the call's first channel (Uniqueid = Linkedid)
	// while it is there, and stay when it hangs up first.
	var origin *pb.Channel
	for _, ch := range c.Channels {
		if ch.Uniqueid == c.Linkedid {
			origin = ch
		}
	}
	if origin == nil && c.CallerNum == "" && c.CalleeNum == "" {
		origin = c.Channels[0] // joined without its first channel (a resync listing)
	}
	if origin != nil {
		c.CallerNum, c.CallerName = origin.CallerNum, origin.CallerName
		c.CalleeNum, c.CalleeName = "", ""
		for _, ch := range c.Channels {
			if ch != origin {
				c.CalleeNum, c.CalleeName = ch.CallerNum, ch.CallerName
				break
			}
		}
		if c.CalleeNum == "" {
			if origin.ConnectedNum != "" {
				c.CalleeNum, c.CalleeName = origin.ConnectedNum, origin.ConnectedName
			} else {
				c.CalleeNum = origin.Exten
			}
		}
	}
	// Direction: decided by the first trunk leg seen, and kept after that
	// leg hangs up.
	if c.Trunk == "" {
		for _, ch := range c.Channels {
			ep := ami.EndpointOfChannel(ch.Name)
			if e := v.endpoints[c.PbxId+"/"+ep]; e != nil && e.Kind == pb.EndpointKind_ENDPOINT_KIND_TRUNK {
				c.Trunk = ep
				if ch.Uniqueid == c.Linkedid {
					c.Direction = "inbound"
				} else {
					c.Direction = "outbound"
				}
				break
			}
		}
	}
	if c.Direction == "" {
		c.Direction = "internal"
	}
	originUp := origin != nil && origin.State == stateUp
	var up, ringing, bridged int
	c.BridgeId = ""
	for _, ch := range c.Channels {
		switch ch.State {
		case stateUp:
			up++
		case stateRinging:
			ringing++
		}
		if ch.BridgeId != "" {
			bridged++
			if c.BridgeId == "" {
				c.BridgeId = ch.BridgeId
			}
		}
	}
	switch {
	case len(c.Held) > 0:
		c.State = "on_hold"
	case bridged >= 2:
		c.State = "bridged"
	case len(c.Transfers) > 0:
		c.State = "transferred"
	case up >= 2:
		c.State = "up"
	case ringing > 0:
		// Also when the first leg is up: an originated call (click-to-call)
		// answers the caller's phone first, then rings the callee.
		c.State = "ringing"
	case up > 0:
		c.State = "up"
	default:
		c.State = "dialing"
	}
	// Answered as Asterisk's CDR has it: a call whose first channel was
	// answered (by an application, or an originated call's phone) is
	// answered even when the party it then dials is not.
	answered := bridged >= 2 || up >= 2 || (up > 0 && (len(c.Channels) == 1 || originUp))
	if c.AnsweredAt == nil && at != nil && answered {
		c.AnsweredAt = at
	}
}

// record is the history entry of a call that has just ended with the
// hangup of channel last.
func record(c *pb.CallView, last *pb.Channel, end *timestamppb.Timestamp) *pb.CallRecord {
	r := &pb.CallRecord{
		PbxId: c.PbxId, Linkedid: c.Linkedid, StartedAt: c.StartedAt, AnsweredAt: c.AnsweredAt, EndedAt: end,
		HangupCause: c.HangupCause, HangupCauseText: c.HangupCauseText, HangupBy: c.HangupBy,
		CallerNum: c.CallerNum, CallerName: c.CallerName, CalleeNum: c.CalleeNum, CalleeName: c.CalleeName,
		Direction: c.Direction, Trunk: c.Trunk, Queue: c.Queue, Parties: c.Parties, Transfers: c.Transfers,
		Disposition: disposition(c),
	}
	if r.Direction == "" {
		r.Direction = "internal"
	}
	if c.AnsweredAt != nil {
		r.RingSeconds, r.TalkSeconds = seconds(c.StartedAt, c.AnsweredAt), seconds(c.AnsweredAt, end)
	} else {
		r.RingSeconds = seconds(c.StartedAt, end)
	}
	r.Channels = c.ChannelNames
	if last != nil {
		r.Channels = addUnique(r.Channels, last.Name)
	}
	return r
}

// disposition says how a call ended, as a CDR does: answered, or else what
// the dial attempts reported, or else what the hangup cause means.
func disposition(c *pb.CallView) string {
	if c.AnsweredAt != nil {
		return "answered"
	}
	for _, want := range []struct{ status, disp string }{
		{"BUSY", "busy"}, {"NOANSWER", "no_answer"}, {"CANCEL", "cancelled"},
		{"CHANUNAVAIL", "failed"}, {"CONGESTION", "failed"},
	} {
		if slices.Contains(c.DialStatuses, want.status) {
			return want.disp
		}
	}
	switch c.HangupCause {
	case 17: // User busy
		return "busy"
	case 18, 19: // No user responding, no answer
		return "no_answer"
	case 0, 16: // nobody answered and the caller gave up
		return "cancelled"
	}
	return "failed"
}
