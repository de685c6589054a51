package normalize

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pbxpulse/pbxpulse/pkg/ami"
	"github.com/pbxpulse/pbxpulse/pkg/ari"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

// ARI turns events of the ARI websocket into pbxpulse events carrying the
// same payloads, with the same conventions, as the AMI normalizer: numbers
// stay strings, Asterisk's empty/<unknown> caller ids become "", refs come
// from chanRefs, pbx_time is the event's timestamp. The caller fills in the
// rest of the envelope (id, source, session).
//
// It keeps state where ARI lacks what AMI has. ARI's channel JSON has no
// linkedid, so it is inferred: a channel's linkedid is its own id unless a
// Dial event names it as the peer of a caller; then it is the caller's
// linkedid. Asterisk creates the dialed channel (ChannelCreated, state Down)
// before it publishes the Dial that names its caller, so the events of a
// channel created Down are held back until that Dial comes — or until the
// channel does something a dialed channel does not do before its Dial,
// PendingWindow passes, or Flush is called — and then released with the
// right linkedid. Their pbx_time is their own timestamp, so holding them
// back changes no time, only the order relative to other channels' events.
//
// The zero value is ready to use; an ARI is not safe for concurrent use.
type ARI struct {
	// WithAMI says the PBX is also followed over AMI: then only what AMI
	// cannot see is emitted (StasisStart/StasisEnd, and AriEvent for
	// ARI-only or unknown event types such as Playback*), so that no fact is
	// published twice. Without it every mapped event is emitted.
	WithAMI bool
	// MaxTracked bounds the channels whose inferred linkedid is remembered
	// (default 50000); entries leave on ChannelDestroyed, the oldest first
	// when a PBX loses destroy events.
	MaxTracked int
	// PendingWindow is how long, by the events' timestamps, a channel
	// created Down waits for the Dial naming its caller (default 2s).
	PendingWindow time.Duration
	// MaxPending bounds the channels held back at once (default 1024) and
	// MaxHeld the events held for one channel (default 256); past either
	// the oldest is released with its own id as linkedid.
	MaxPending, MaxHeld int

	linked  linkMap
	pending map[string]*ariPending
	order   []string // pending channel ids, oldest first
}

type ariPending struct {
	name    string
	created time.Time
	held    []ariHeld
}

type ariHeld struct {
	e ari.Event
	v any
}

func (a *ARI) init() {
	if a.pending == nil {
		a.pending = map[string]*ariPending{}
	}
	if a.linked.max == 0 {
		a.linked.max = a.MaxTracked
		if a.linked.max <= 0 {
			a.linked.max = 50000
		}
	}
}

func (a *ARI) window() time.Duration {
	if a.PendingWindow > 0 {
		return a.PendingWindow
	}
	return 2 * time.Second
}

// Event converts one websocket event. It returns the events now due, which
// may include held-back events of other channels, in order; nil for a frame
// that carried an error (the connection reports those).
func (a *ARI) Event(e ari.Event) []*pb.Event {
	if e.Err != nil {
		return nil
	}
	a.init()
	out := a.expire(ariTime(e))
	v, err := e.Decode()
	if err != nil || v == nil {
		// An unknown type, or a known one whose JSON no longer fits the
		// documented shape: kept raw rather than lost.
		return append(out, a.raw(e, nil)...)
	}
	switch t := v.(type) {
	case *ari.ChannelCreated:
		if t.Channel.State == "Down" && t.Channel.ID != "" && a.pending[t.Channel.ID] == nil {
			return append(out, a.hold(t.Channel, e, v)...)
		}
	case *ari.DialEvent:
		out = append(out, a.dialed(t)...)
	default:
		if id := holdable(v); id != "" && a.pending[id] != nil {
			if p := a.pending[id]; len(p.held) < a.maxHeld() {
				p.held = append(p.held, ariHeld{e, v})
				return out
			}
		}
	}
	// Anything else a held channel takes part in (it hangs up, rings, joins
	// a bridge) means no Dial will name its caller: release it as its own call.
	for _, id := range ariChannelIDs(v) {
		if a.pending[id] != nil {
			out = append(out, a.release(id, id)...)
		}
	}
	return append(out, a.convert(e, v)...)
}

// Flush releases every held-back channel with its own id as linkedid, e.g.
// when the websocket closed or the PBX went quiet.
func (a *ARI) Flush() []*pb.Event {
	var out []*pb.Event
	for len(a.order) > 0 {
		out = append(out, a.release(a.order[0], a.order[0])...)
	}
	return out
}

// Linkedid returns the linkedid inferred for a channel id (the id itself
// when nothing else is known).
func (a *ARI) Linkedid(id string) string {
	if l, ok := a.linked.get(id); ok {
		return l
	}
	return id
}

func (a *ARI) maxHeld() int {
	if a.MaxHeld > 0 {
		return a.MaxHeld
	}
	return 256
}

func (a *ARI) hold(ch ari.Channel, e ari.Event, v any) []*pb.Event {
	var out []*pb.Event
	maxPending := a.MaxPending
	if maxPending <= 0 {
		maxPending = 1024
	}
	for len(a.order) >= maxPending {
		out = append(out, a.release(a.order[0], a.order[0])...)
	}
	a.pending[ch.ID] = &ariPending{name: ch.Name, created: ariTime(e), held: []ariHeld{{e, v}}}
	a.order = append(a.order, ch.ID)
	return out
}

// release ends the wait of a held channel: it now has linkedid, and its
// held events are converted in their order.
func (a *ARI) release(id, linkedid string) []*pb.Event {
	p := a.pending[id]
	if p == nil {
		return nil
	}
	delete(a.pending, id)
	a.order = slices.DeleteFunc(a.order, func(s string) bool { return s == id })
	if linkedid != id {
		a.linked.set(id, linkedid)
	}
	var out []*pb.Event
	for _, h := range p.held {
		out = append(out, a.convert(h.e, h.v)...)
	}
	return out
}

// expire releases channels that waited longer than PendingWindow.
func (a *ARI) expire(now time.Time) []*pb.Event {
	if now.IsZero() {
		return nil
	}
	var out []*pb.Event
	for len(a.order) > 0 {
		p := a.pending[a.order[0]]
		if p.created.IsZero() || now.Sub(p.created) <= a.window() {
			break
		}
		out = append(out, a.release(a.order[0], a.order[0])...)
	}
	return out
}

// dialed applies a Dial: its peer's linkedid is the caller's.
func (a *ARI) dialed(d *ari.DialEvent) []*pb.Event {
	var out []*pb.Event
	peer := d.Peer.ID
	linked := peer
	if d.Caller != nil && d.Caller.ID != "" {
		if a.pending[d.Caller.ID] != nil {
			// A held channel that dials is a caller, not a dialed leg.
			out = append(out, a.release(d.Caller.ID, d.Caller.ID)...)
		}
		linked = a.Linkedid(d.Caller.ID)
	}
	if peer == "" {
		return out
	}
	if a.pending[peer] != nil {
		out = append(out, a.release(peer, linked)...)
		// A Local channel's ;2 half is created with its ;1 half and shares
		// its linkedid; only the ;1 half is named by the Dial.
		if base, ok := strings.CutSuffix(d.Peer.Name, ";1"); ok && strings.HasPrefix(base, "Local/") {
			for _, id := range a.order {
				if a.pending[id].name == base+";2" {
					out = append(out, a.release(id, linked)...)
					break
				}
			}
		}
	} else if _, ok := a.linked.get(peer); !ok && linked != peer {
		a.linked.set(peer, linked)
	}
	return out
}

// holdable is the channel of an event that may wait with its channel's
// ChannelCreated: what Asterisk does to a dialed channel before its Dial.
func holdable(v any) string {
	switch t := v.(type) {
	case *ari.ChannelVarset:
		if t.Channel != nil {
			return t.Channel.ID
		}
	case *ari.ChannelDialplan:
		return t.Channel.ID
	case *ari.ChannelCallerID:
		return t.Channel.ID
	case *ari.ChannelConnectedLine:
		return t.Channel.ID
	case *ari.ChannelStateChange:
		if t.Channel.State == "Down" {
			return t.Channel.ID
		}
	}
	return ""
}

// ariChannelIDs lists every channel an event names.
func ariChannelIDs(v any) []string {
	var ids []string
	add := func(chs ...*ari.Channel) {
		for _, c := range chs {
			if c != nil && c.ID != "" {
				ids = append(ids, c.ID)
			}
		}
	}
	switch t := v.(type) {
	case *ari.StasisStart:
		add(&t.Channel, t.ReplaceChannel)
	case *ari.StasisEnd:
		add(&t.Channel)
	case *ari.ChannelCreated:
		add(&t.Channel)
	case *ari.ChannelStateChange:
		add(&t.Channel)
	case *ari.ChannelDestroyed:
		add(&t.Channel)
	case *ari.ChannelHangupRequest:
		add(&t.Channel)
	case *ari.ChannelDialplan:
		add(&t.Channel)
	case *ari.ChannelDtmfReceived:
		add(&t.Channel)
	case *ari.ChannelVarset:
		add(t.Channel)
	case *ari.ChannelCallerID:
		add(&t.Channel)
	case *ari.ChannelConnectedLine:
		add(&t.Channel)
	case *ari.ChannelHold:
		add(&t.Channel)
	case *ari.ChannelUnhold:
		add(&t.Channel)
	case *ari.DialEvent:
		add(t.Forwarded)
	case *ari.ChannelEnteredBridge:
		add(t.Channel)
	case *ari.ChannelLeftBridge:
		add(&t.Channel)
	case *ari.BridgeBlindTransfer:
		add(&t.Channel, t.ReplaceChannel, t.Transferee)
	case *ari.BridgeAttendedTransfer:
		add(&t.TransfererFirstLeg, &t.TransfererSecondLeg, t.ReplaceChannel, t.Transferee, t.TransferTarget,
			t.DestinationLinkFirstLeg, t.DestinationLinkSecondLeg, t.DestinationThreewayChannel)
	}
	return ids
}

// ariIntermediate are Dial statuses of a dial still going on; AMI reports
// them as DialState, not DialEnd.
var ariIntermediate = map[string]bool{"RINGING": true, "PROCEEDING": true, "PROGRESS": true}

// convert maps one decoded event. It returns nil for what is not emitted
// (AMI sees it and WithAMI is set, an intermediate Dial, a global variable).
func (a *ARI) convert(e ari.Event, v any) []*pb.Event {
	r := &pb.Event{}
	amiSees := true
	switch t := v.(type) {
	case *ari.StasisStart, *ari.StasisEnd:
		amiSees = false
		sa := &pb.StasisApp{Application: e.Application}
		if s, ok := t.(*ari.StasisStart); ok {
			sa.Started, sa.Args, sa.Channel = true, s.Args, a.channel(&s.Channel)
			if s.ReplaceChannel != nil {
				sa.ReplacedChannel = s.ReplaceChannel.ID
			}
		} else {
			sa.Channel = a.channel(&t.(*ari.StasisEnd).Channel)
		}
		r.Payload = &pb.Event_StasisApp{StasisApp: sa}
		r.Refs = chanRefs(sa.Channel)
	case *ari.ChannelCreated:
		ch := a.channel(&t.Channel)
		r.Payload = &pb.Event_ChannelCreated{ChannelCreated: &pb.ChannelCreated{Channel: ch}}
		r.Refs = chanRefs(ch)
	case *ari.ChannelStateChange:
		ch := a.channel(&t.Channel)
		r.Payload = &pb.Event_ChannelStateChanged{ChannelStateChanged: &pb.ChannelStateChanged{Channel: ch}}
		r.Refs = chanRefs(ch)
	case *ari.ChannelCallerID:
		ch := a.channel(&t.Channel)
		r.Payload = &pb.Event_CallerIdChanged{CallerIdChanged: &pb.CallerIdChanged{Channel: ch}}
		r.Refs = chanRefs(ch)
	case *ari.ChannelConnectedLine:
		ch := a.channel(&t.Channel)
		r.Payload = &pb.Event_CallerIdChanged{CallerIdChanged: &pb.CallerIdChanged{Channel: ch}}
		r.Refs = chanRefs(ch)
	case *ari.ChannelDestroyed:
		ch := a.channel(&t.Channel)
		r.Payload = &pb.Event_ChannelHungUp{ChannelHungUp: &pb.ChannelHungUp{
			Channel: ch, Cause: int32(t.Cause), CauseText: t.CauseTxt,
		}}
		r.Refs = chanRefs(ch)
		// The channel is gone: so is what it needed remembered. (Its peers
		// keep their own entries.)
		a.linked.del(t.Channel.ID)
	case *ari.ChannelHangupRequest:
		ch := a.channel(&t.Channel)
		r.Payload = &pb.Event_ChannelHangupRequest{ChannelHangupRequest: &pb.ChannelHangupRequest{
			Channel: ch, Cause: int32(t.Cause), Soft: t.Soft,
		}}
		r.Refs = chanRefs(ch)
	case *ari.DialEvent:
		callee := a.channel(&t.Peer)
		var caller *pb.Channel
		if t.Caller != nil {
			caller = a.channel(t.Caller)
		}
		switch {
		case t.DialStatus == "":
			r.Payload = &pb.Event_DialBegin{DialBegin: &pb.DialBegin{Caller: caller, Callee: callee, DialString: t.DialString}}
		case ariIntermediate[t.DialStatus]:
			return nil
		default:
			r.Payload = &pb.Event_DialEnd{DialEnd: &pb.DialEnd{Caller: caller, Callee: callee, DialStatus: t.DialStatus}}
		}
		if caller != nil {
			r.Refs = chanRefs(caller)
		} else {
			r.Refs = chanRefs(callee) // an originate: nobody dials
		}
	case *ari.ChannelEnteredBridge:
		if t.Channel == nil {
			return a.raw(e, v) // documented as optional; nothing to report as BridgeEnter
		}
		ch := a.channel(t.Channel)
		ch.BridgeId = t.Bridge.ID
		// AMI's BridgeType is ARI's bridge_class ("basic"); ARI's
		// bridge_type ("mixing") is something else.
		r.Payload = &pb.Event_BridgeEnter{BridgeEnter: &pb.BridgeEnter{
			BridgeId: t.Bridge.ID, BridgeType: t.Bridge.BridgeClass, Channel: ch, NumChannels: uint32(len(t.Bridge.Channels)),
		}}
		r.Refs = chanRefs(ch)
	case *ari.ChannelLeftBridge:
		ch := a.channel(&t.Channel)
		r.Payload = &pb.Event_BridgeLeave{BridgeLeave: &pb.BridgeLeave{
			BridgeId: t.Bridge.ID, Channel: ch, NumChannels: uint32(len(t.Bridge.Channels)),
		}}
		r.Refs = chanRefs(ch)
		r.Refs.BridgeId = t.Bridge.ID
	case *ari.BridgeCreated:
		b := ariBridge(&t.Bridge)
		b.Action = pb.BridgeLifecycle_ACTION_CREATED
		r.Payload = &pb.Event_BridgeLifecycle{BridgeLifecycle: b}
		r.Refs = &pb.PbxRefs{BridgeId: b.BridgeId}
	case *ari.BridgeDestroyed:
		b := ariBridge(&t.Bridge)
		b.Action = pb.BridgeLifecycle_ACTION_DESTROYED
		r.Payload = &pb.Event_BridgeLifecycle{BridgeLifecycle: b}
		r.Refs = &pb.PbxRefs{BridgeId: b.BridgeId}
	case *ari.ChannelHold:
		ch := a.channel(&t.Channel)
		r.Payload = &pb.Event_ChannelHold{ChannelHold: &pb.ChannelHold{Channel: ch, Held: true, MusicClass: t.MusicClass}}
		r.Refs = chanRefs(ch)
	case *ari.ChannelUnhold:
		ch := a.channel(&t.Channel)
		r.Payload = &pb.Event_ChannelHold{ChannelHold: &pb.ChannelHold{Channel: ch}}
		r.Refs = chanRefs(ch)
	case *ari.ChannelDtmfReceived:
		ch := a.channel(&t.Channel)
		r.Payload = &pb.Event_Dtmf{Dtmf: &pb.Dtmf{
			Channel: ch, Digit: t.Digit, DurationMs: uint32(max(t.DurationMs, 0)), Direction: "Received",
		}}
		r.Refs = chanRefs(ch)
	case *ari.ChannelVarset:
		if t.Channel == nil {
			return nil // a global variable, not a channel's (as for AMI)
		}
		ch := a.channel(t.Channel)
		r.Payload = &pb.Event_ChannelVarSet{ChannelVarSet: &pb.ChannelVarSet{Channel: ch, Variable: t.Variable, Value: t.Value}}
		r.Refs = chanRefs(ch)
	case *ari.BridgeBlindTransfer:
		tr := &pb.Transfer{
			Kind: pb.Transfer_KIND_BLIND, Result: t.Result,
			Transferer: a.channel(&t.Channel), Transferee: a.optChannel(t.Transferee),
			Context: t.Context, Extension: t.Exten, IsExternal: t.IsExternal,
		}
		if t.Bridge != nil {
			tr.BridgeId = t.Bridge.ID
		}
		r.Payload = &pb.Event_Transfer{Transfer: tr}
		r.Refs = transferRefs(tr)
	case *ari.BridgeAttendedTransfer:
		tr := &pb.Transfer{
			Kind: pb.Transfer_KIND_ATTENDED, Result: t.Result,
			Transferer: a.channel(&t.TransfererFirstLeg), SecondTransferer: a.channel(&t.TransfererSecondLeg),
			Transferee: a.optChannel(t.Transferee), Target: a.optChannel(t.TransferTarget),
			IsExternal: t.IsExternal, DestType: t.DestinationType, DestBridgeId: t.DestinationBridge,
			DestApp: t.DestinationApplication,
		}
		if t.TransfererFirstLegBridge != nil {
			tr.BridgeId = t.TransfererFirstLegBridge.ID // AMI's OrigBridgeUniqueid
		}
		r.Payload = &pb.Event_Transfer{Transfer: tr}
		r.Refs = transferRefs(tr)
	case *ari.ContactStatusChange:
		ep := t.Endpoint.Resource
		rtt, known := parseRTT(string(t.ContactInfo.RoundtripUsec))
		r.Payload = &pb.Event_ContactStatus{ContactStatus: &pb.ContactStatus{
			Endpoint: ep, Aor: t.ContactInfo.AOR, Uri: t.ContactInfo.URI, Status: t.ContactInfo.ContactStatus,
			RoundtripUsec: rtt, RoundtripKnown: known,
		}}
		r.Refs = &pb.PbxRefs{Endpoint: ep}
	case *ari.PeerStatusChange:
		name := t.Endpoint.Resource
		// "time" is the blob key AMI prints as PeerStatus "Time" (the
		// qualify round trip in ms for chan_sip/IAX2); PJSIP sends none.
		ms, _ := strconv.ParseInt(t.Peer.Time, 10, 64)
		r.Payload = &pb.Event_PeerStatus{PeerStatus: &pb.PeerStatus{
			Name: name, Technology: technology(t.Endpoint.Technology), Status: t.Peer.PeerStatus,
			Address: joinHostPort(t.Peer.Address, t.Peer.Port), RoundtripMs: ms, Cause: t.Peer.Cause,
		}}
		r.Refs = &pb.PbxRefs{Endpoint: name}
	case *ari.DeviceStateChanged:
		dev := t.DeviceState.Name
		r.Payload = &pb.Event_DeviceState{DeviceState: &pb.DeviceState{Device: dev, State: t.DeviceState.State}}
		r.Refs = &pb.PbxRefs{Endpoint: ami.EndpointOfDevice(dev)}
	case *ari.EndpointStateChange:
		// Partial: ARI gives presence and channels, not the listing's AORs,
		// contacts, device state or kind. "online"/"offline"/"unknown" is
		// reachability, which EndpointState keeps in status.
		ep := t.Endpoint
		r.Payload = &pb.Event_EndpointState{EndpointState: &pb.EndpointState{
			Name: ep.Resource, Technology: technology(ep.Technology), Status: ep.State,
			ActiveChannels: uint32(len(ep.ChannelIDs)), Partial: true,
		}}
		r.Refs = &pb.PbxRefs{Endpoint: ep.Resource}
	default:
		// ChannelDialplan (AMI Newexten) and anything else typed but
		// without a payload.
		return a.raw(e, v)
	}
	if a.WithAMI && amiSees {
		return nil
	}
	if !e.Timestamp.IsZero() {
		r.PbxTime = timestamppb.New(e.Timestamp)
	}
	return []*pb.Event{r}
}

// ariAMICovered are event types without a payload that AMI reports too
// (Newexten, UserEvent, ChannelTalkingStart/Stop, BridgeMerge,
// BridgeVideoSourceUpdate): with WithAMI they are not emitted as AriEvent.
var ariAMICovered = map[string]bool{
	"ChannelDialplan": true, "ChannelUserevent": true, "ChannelTalkingStarted": true,
	"ChannelTalkingFinished": true, "BridgeMerged": true, "BridgeVideoSourceChanged": true,
}

// raw keeps an event as AriEvent, with refs where the event names a
// channel, bridge, endpoint or playback/recording target.
func (a *ARI) raw(e ari.Event, v any) []*pb.Event {
	if a.WithAMI && (ariAMICovered[e.Type] || (ari.Known(e.Type) && e.Type != "StasisStart" && e.Type != "StasisEnd")) {
		return nil
	}
	r := &pb.Event{
		Payload: &pb.Event_AriEvent{AriEvent: &pb.AriEvent{Type: e.Type, Application: e.Application, Json: e.Raw}},
		Refs:    a.rawRefs(e, v),
	}
	if !e.Timestamp.IsZero() {
		r.PbxTime = timestamppb.New(e.Timestamp)
	}
	return []*pb.Event{r}
}

func (a *ARI) rawRefs(e ari.Event, v any) *pb.PbxRefs {
	if d, ok := v.(*ari.ChannelDialplan); ok {
		return chanRefs(a.channel(&d.Channel))
	}
	// Only documented keys: channel, bridge, endpoint, and the target_uri
	// ("channel:<id>", "bridge:<id>") of a playback or recording. A future
	// type that uses them differently just gets no refs.
	type target struct {
		TargetURI string `json:"target_uri"`
	}
	var p struct {
		Channel   *ari.Channel  `json:"channel"`
		Bridge    *ari.Bridge   `json:"bridge"`
		Endpoint  *ari.Endpoint `json:"endpoint"`
		Playback  *target       `json:"playback"`
		Recording *target       `json:"recording"`
	}
	if json.Unmarshal(e.Raw, &p) != nil {
		return &pb.PbxRefs{}
	}
	refs := &pb.PbxRefs{}
	if p.Channel != nil && p.Channel.ID != "" {
		refs = chanRefs(a.channel(p.Channel))
	}
	if p.Bridge != nil {
		refs.BridgeId = p.Bridge.ID
	}
	if p.Endpoint != nil && refs.Endpoint == "" {
		refs.Endpoint = p.Endpoint.Resource
	}
	for _, t := range []*target{p.Playback, p.Recording} {
		if t == nil {
			continue
		}
		kind, id, _ := strings.Cut(t.TargetURI, ":")
		switch {
		case kind == "channel" && refs.Uniqueid == "":
			refs.Uniqueid, refs.Linkedid = id, a.Linkedid(id)
		case kind == "bridge" && refs.BridgeId == "":
			refs.BridgeId = id
		}
	}
	return refs
}

// Snapshot converts a REST resync (GET /channels and GET /bridges) into the
// channel list of a ChannelsSnapshot, with CoreShowChannel's conventions:
// Application is the current dialplan application, BridgeId the bridge
// holding the channel, DurationSeconds the age at now. Linkedids are those
// inferred so far: after a reconnect in mid-call a dialed channel's is its
// own id, since ARI cannot tell it.
func (a *ARI) Snapshot(channels []ari.Channel, bridges []ari.Bridge, now time.Time) []*pb.Channel {
	a.init()
	bridgeOf := map[string]string{}
	for _, b := range bridges {
		for _, id := range b.Channels {
			bridgeOf[id] = b.ID
		}
	}
	out := make([]*pb.Channel, 0, len(channels))
	for i := range channels {
		c := &channels[i]
		ch := a.channel(c)
		ch.BridgeId = bridgeOf[c.ID]
		ch.Application = c.Dialplan.AppName
		if !c.CreationTime.IsZero() && now.After(c.CreationTime.Time) {
			ch.DurationSeconds = int64(now.Sub(c.CreationTime.Time) / time.Second)
		}
		out = append(out, ch)
	}
	slices.SortFunc(out, func(x, y *pb.Channel) int { return strings.Compare(x.Uniqueid, y.Uniqueid) })
	return out
}

func (a *ARI) channel(c *ari.Channel) *pb.Channel {
	return &pb.Channel{
		Name:          c.Name,
		Uniqueid:      c.ID,
		Linkedid:      a.Linkedid(c.ID),
		State:         ariState(c.State),
		StateDesc:     c.State,
		CallerNum:     known(c.Caller.Number),
		CallerName:    known(c.Caller.Name),
		ConnectedNum:  known(c.Connected.Number),
		ConnectedName: known(c.Connected.Name),
		Context:       c.Dialplan.Context,
		Exten:         c.Dialplan.Exten,
	}
}

func (a *ARI) optChannel(c *ari.Channel) *pb.Channel {
	if c == nil {
		return nil
	}
	return a.channel(c)
}

func ariBridge(b *ari.Bridge) *pb.BridgeLifecycle {
	return &pb.BridgeLifecycle{
		BridgeId: b.ID, BridgeType: b.BridgeClass, Technology: b.Technology,
		Creator: known(b.Creator), Name: known(b.Name), NumChannels: uint32(len(b.Channels)),
	}
}

// ariStates is ast_state2str (main/channel.c) inverted: ARI sends the text,
// AMI the number. "Rsrved" is how ARI's documentation spells "Rsrvd".
var ariStates = map[string]int32{
	"Down": 0, "Rsrvd": 1, "Rsrved": 1, "OffHook": 2, "Dialing": 3, "Ring": 4, "Ringing": 5,
	"Up": 6, "Busy": 7, "Dialing Offhook": 8, "Pre-ring": 9,
}

// ariState returns the ChannelState number of ARI's state text; for
// ast_state2str's fallback "Unknown (N)" it is N, otherwise 0.
func ariState(s string) int32 {
	if n, ok := ariStates[s]; ok {
		return n
	}
	if inner, ok := strings.CutPrefix(s, "Unknown ("); ok {
		if n, err := strconv.ParseInt(strings.TrimSuffix(inner, ")"), 10, 32); err == nil {
			return int32(n)
		}
	}
	return 0
}

// ariTime is the PBX's time of an event, else when it was received.
func ariTime(e ari.Event) time.Time {
	if !e.Timestamp.IsZero() {
		return e.Timestamp
	}
	return e.Received
}

// linkMap remembers inferred linkedids (only those that differ from the
// channel's own id), bounded: past max the oldest entry goes.
type linkMap struct {
	max   int
	seq   uint64
	m     map[string]linkEntry
	order []linkKey
}

type linkEntry struct {
	linkedid string
	seq      uint64
}

type linkKey struct {
	id  string
	seq uint64
}

func (l *linkMap) get(id string) (string, bool) {
	e, ok := l.m[id]
	return e.linkedid, ok
}

func (l *linkMap) set(id, linkedid string) {
	if l.m == nil {
		l.m = map[string]linkEntry{}
	}
	l.seq++
	l.m[id] = linkEntry{linkedid, l.seq}
	l.order = append(l.order, linkKey{id, l.seq})
	for len(l.m) > l.max && len(l.order) > 0 {
		k := l.order[0]
		l.order = l.order[1:]
		if e, ok := l.m[k.id]; ok && e.seq == k.seq {
			delete(l.m, k.id)
		}
	}
	// Entries deleted on destroy stay in order until here: compact.
	if len(l.order) > 2*len(l.m)+64 {
		kept := l.order[:0]
		for _, k := range l.order {
			if e, ok := l.m[k.id]; ok && e.seq == k.seq {
				kept = append(kept, k)
			}
		}
		l.order = slices.Clip(kept)
	}
}

func (l *linkMap) del(id string) { delete(l.m, id) }

func (l *linkMap) len() int { return len(l.m) }
