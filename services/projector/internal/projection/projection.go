// Package projection applies events to the live views of one tenant, in
// memory, and reports which rows each batch changed. It is deterministic:
// every time it stores comes from the events, so a replay of the same stream
// yields the same rows.
package projection

import (
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pbxpulse/pbxpulse/pkg/ami"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

// Views is a tenant's live views.
type Views struct {
	tenant    string
	pbxs      map[string]*pb.PbxView
	endpoints map[string]*pb.EndpointView // pbx/name
	calls     map[string]*pb.CallView     // pbx/linkedid
	regs      map[string]*pb.TrunkRegistrationView
	chanCall  map[string]string // pbx/uniqueid -> call key

	dirtyPBX, dirtyEndpoints, dirtyCalls, dirtyRegs map[string]bool
	removedCalls                                    map[string]*pb.CallKey
}

// New returns the views of a snapshot (nil for empty).
func New(tenant string, snap *pb.Snapshot) *Views {
	v := &Views{
		tenant: tenant, pbxs: map[string]*pb.PbxView{}, endpoints: map[string]*pb.EndpointView{},
		calls: map[string]*pb.CallView{}, regs: map[string]*pb.TrunkRegistrationView{}, chanCall: map[string]string{},
	}
	v.resetDirty()
	if snap == nil {
		return v
	}
	for _, p := range snap.Pbxs {
		v.pbxs[p.PbxId] = p
	}
	for _, e := range snap.Endpoints {
		v.endpoints[e.PbxId+"/"+e.Name] = e
	}
	for _, c := range snap.Calls {
		k := c.PbxId + "/" + c.Linkedid
		v.calls[k] = c
		for _, ch := range c.Channels {
			v.chanCall[c.PbxId+"/"+ch.Uniqueid] = k
		}
	}
	for _, r := range snap.Registrations {
		v.regs[r.PbxId+"/"+r.Key] = r
	}
	return v
}

func (v *Views) resetDirty() {
	v.dirtyPBX, v.dirtyEndpoints, v.dirtyCalls, v.dirtyRegs = map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}
	v.removedCalls = map[string]*pb.CallKey{}
}

// Snapshot returns a deep copy of the views, sorted, at the given version.
func (v *Views) Snapshot(version uint64) *pb.Snapshot {
	s := &pb.Snapshot{Tenant: v.tenant, Version: version}
	for _, k := range sortedKeys(v.pbxs) {
		s.Pbxs = append(s.Pbxs, proto.Clone(v.pbxs[k]).(*pb.PbxView))
	}
	for _, k := range sortedKeys(v.endpoints) {
		s.Endpoints = append(s.Endpoints, proto.Clone(v.endpoints[k]).(*pb.EndpointView))
	}
	for _, k := range sortedKeys(v.calls) {
		s.Calls = append(s.Calls, proto.Clone(v.calls[k]).(*pb.CallView))
	}
	for _, k := range sortedKeys(v.regs) {
		s.Registrations = append(s.Registrations, proto.Clone(v.regs[k]).(*pb.TrunkRegistrationView))
	}
	return s
}

// TakeChanges returns every row changed since the last call, in a stable
// order, and forgets them.
func (v *Views) TakeChanges() []*pb.Change {
	var out []*pb.Change
	for _, k := range sortedKeys(v.dirtyPBX) {
		out = append(out, &pb.Change{Row: &pb.Change_Pbx{Pbx: proto.Clone(v.pbxs[k]).(*pb.PbxView)}})
	}
	for _, k := range sortedKeys(v.dirtyEndpoints) {
		if e := v.endpoints[k]; e != nil {
			out = append(out, &pb.Change{Row: &pb.Change_Endpoint{Endpoint: proto.Clone(e).(*pb.EndpointView)}})
		}
	}
	for _, k := range sortedKeys(v.dirtyRegs) {
		out = append(out, &pb.Change{Row: &pb.Change_Registration{Registration: proto.Clone(v.regs[k]).(*pb.TrunkRegistrationView)}})
	}
	for _, k := range sortedKeys(v.removedCalls) {
		if _, back := v.calls[k]; !back {
			out = append(out, &pb.Change{Row: &pb.Change_CallRemoved{CallRemoved: v.removedCalls[k]}})
		}
	}
	for _, k := range sortedKeys(v.dirtyCalls) {
		if c := v.calls[k]; c != nil {
			out = append(out, &pb.Change{Row: &pb.Change_Call{Call: proto.Clone(c).(*pb.CallView)}})
		}
	}
	v.resetDirty()
	return out
}

// Apply applies one event.
func (v *Views) Apply(e *pb.Event) {
	pbx := e.GetPbxId()
	at := e.GetPbxTime()
	switch p := e.Payload.(type) {
	case *pb.Event_PbxConnection:
		v.applyConnection(pbx, at, p.PbxConnection)
	case *pb.Event_EndpointState:
		v.applyEndpoint(pbx, at, p.EndpointState)
	case *pb.Event_ContactStatus:
		v.applyContact(pbx, at, p.ContactStatus)
	case *pb.Event_DeviceState:
		if ep := ami.EndpointOfDevice(p.DeviceState.Device); ep != "" {
			if ev := v.endpoints[pbx+"/"+ep]; ev != nil {
				ev.DeviceState = deviceStateText(p.DeviceState.State)
				ev.UpdatedAt = at
				v.touchEndpoint(pbx, ep)
			}
		}
	case *pb.Event_TrunkRegistration:
		r := p.TrunkRegistration
		key := r.ClientUri
		if key == "" {
			key = r.Name
		}
		k := pbx + "/" + key
		cur := v.regs[k]
		if cur == nil {
			cur = &pb.TrunkRegistrationView{PbxId: pbx, Key: key}
			v.regs[k] = cur
		}
		cur.ClientUri, cur.ServerUri, cur.Status, cur.Cause, cur.UpdatedAt = r.ClientUri, r.ServerUri, r.Status, r.Cause, at
		v.dirtyRegs[k] = true
	case *pb.Event_ChannelCreated:
		v.upsertChannel(pbx, at, p.ChannelCreated.Channel, true)
	case *pb.Event_ChannelStateChanged:
		v.upsertChannel(pbx, at, p.ChannelStateChanged.Channel, true)
	case *pb.Event_CallerIdChanged:
		v.upsertChannel(pbx, at, p.CallerIdChanged.Channel, true)
	case *pb.Event_DialBegin:
		v.upsertChannel(pbx, at, p.DialBegin.Caller, true)
		if p.DialBegin.Callee != nil {
			v.upsertChannel(pbx, at, p.DialBegin.Callee, true)
		}
	case *pb.Event_DialEnd:
		// DialEnd may follow the callee's Hangup: update, never resurrect.
		v.updateChannel(pbx, at, p.DialEnd.Caller, true)
		v.updateChannel(pbx, at, p.DialEnd.Callee, true)
	case *pb.Event_BridgeEnter:
		ch := proto.Clone(p.BridgeEnter.Channel).(*pb.Channel)
		ch.BridgeId = p.BridgeEnter.BridgeId
		v.upsertChannel(pbx, at, ch, true)
	case *pb.Event_BridgeLeave:
		ch := proto.Clone(p.BridgeLeave.Channel).(*pb.Channel)
		ch.BridgeId = ""
		v.updateChannel(pbx, at, ch, false)
	case *pb.Event_ChannelHungUp:
		v.removeChannel(pbx, p.ChannelHungUp.Channel.Uniqueid)
	case *pb.Event_ChannelsSnapshot:
		v.applyChannelsSnapshot(pbx, at, p.ChannelsSnapshot.Channels)
	}
}

func (v *Views) applyConnection(pbx string, at *timestamppb.Timestamp, c *pb.PbxConnection) {
	cur := v.pbxs[pbx]
	if cur == nil {
		cur = &pb.PbxView{PbxId: pbx}
		v.pbxs[pbx] = cur
	}
	state := strings.ToLower(strings.TrimPrefix(c.State.String(), "STATE_"))
	if state == "unspecified" {
		state = "unknown"
	}
	if cur.State != state {
		cur.Since = at
	}
	cur.State, cur.Detail, cur.Attempt = state, c.Detail, c.Attempt
	if c.Banner != "" {
		cur.Banner = c.Banner
	}
	v.dirtyPBX[pbx] = true
}

func (v *Views) applyEndpoint(pbx string, at *timestamppb.Timestamp, s *pb.EndpointState) {
	k := pbx + "/" + s.Name
	cur := v.endpoints[k]
	if cur == nil {
		cur = &pb.EndpointView{PbxId: pbx, Name: s.Name}
		v.endpoints[k] = cur
	}
	if s.Partial {
		// ARI knows only the endpoint's state: keep what the listing said.
		cur.Technology, cur.UpdatedAt = s.Technology, at
		if cur.Kind == pb.EndpointKind_ENDPOINT_KIND_UNSPECIFIED {
			cur.Kind = s.Kind
		}
		v.touchEndpoint(pbx, s.Name)
		return
	}
	cur.Technology, cur.Kind, cur.DeviceState, cur.UpdatedAt = s.Technology, s.Kind, s.DeviceState, at
	// The endpoint listing is the truth about which contacts exist: drop
	// those that went away while nobody was watching, add those we lack.
	keep := map[string]bool{}
	for _, u := range s.ContactUris {
		keep[u] = true
	}
	contacts := cur.Contacts[:0]
	have := map[string]bool{}
	for _, c := range cur.Contacts {
		if keep[c.Uri] {
			contacts = append(contacts, c)
			have[c.Uri] = true
		}
	}
	for _, u := range s.ContactUris {
		if !have[u] {
			contacts = append(contacts, &pb.ContactView{Uri: u, Status: "Unknown"})
		}
	}
	cur.Contacts = contacts
	v.touchEndpoint(pbx, s.Name)
}

func (v *Views) applyContact(pbx string, at *timestamppb.Timestamp, c *pb.ContactStatus) {
	ep := c.Endpoint
	if ep == "" {
		ep = c.Aor
	}
	cur := v.endpoints[pbx+"/"+ep]
	if cur == nil {
		return // not listed (yet): the next resync lists it with its contacts
	}
	cur.UpdatedAt = at
	idx := -1
	for i, x := range cur.Contacts {
		if x.Uri == c.Uri {
			idx = i
		}
	}
	if c.Status == "Removed" {
		if idx >= 0 {
			cur.Contacts = append(cur.Contacts[:idx], cur.Contacts[idx+1:]...)
		}
		v.touchEndpoint(pbx, ep)
		return
	}
	if idx < 0 {
		cur.Contacts = append(cur.Contacts, &pb.ContactView{Uri: c.Uri})
		idx = len(cur.Contacts) - 1
	}
	x := cur.Contacts[idx]
	x.Status = c.Status
	if c.RoundtripKnown || c.RoundtripUsec > 0 {
		x.RoundtripUsec = c.RoundtripUsec
	}
	if c.UserAgent != "" {
		x.UserAgent = c.UserAgent
	}
	if c.ViaAddress != "" {
		x.ViaAddress = c.ViaAddress
	}
	if c.ExpirationTime != 0 {
		x.ExpirationTime = c.ExpirationTime
	}
	v.touchEndpoint(pbx, ep)
}

// touchEndpoint recomputes an endpoint's status and marks it changed.
func (v *Views) touchEndpoint(pbx, name string) {
	e := v.endpoints[pbx+"/"+name]
	if e == nil {
		return
	}
	var active, up, ringing int
	for _, c := range v.calls {
		if c.PbxId != pbx {
			continue
		}
		for _, ch := range c.Channels {
			if ami.EndpointOfChannel(ch.Name) != name {
				continue
			}
			active++
			switch ch.State {
			case 5: // Ringing
				ringing++
			default:
				up++
			}
		}
	}
	e.ActiveChannels = uint32(active)
	switch {
	case up > 0:
		e.Status = "in_call"
	case ringing > 0:
		e.Status = "ringing"
	default:
		e.Status = statusFromDevice(e)
	}
	v.dirtyEndpoints[pbx+"/"+name] = true
}

func statusFromDevice(e *pb.EndpointView) string {
	switch strings.ToLower(e.DeviceState) {
	case "unavailable", "invalid":
		return "offline"
	case "in use", "busy", "on hold":
		return "in_call"
	case "ringing", "ring+inuse":
		return "ringing"
	case "not in use":
		return "online"
	}
	for _, c := range e.Contacts {
		switch c.Status {
		case "Reachable", "NonQualified", "Created", "Updated":
			return "online"
		}
	}
	if len(e.Contacts) > 0 {
		return "offline"
	}
	return "unknown"
}

// deviceStateText maps DeviceStateChange tokens to the text EndpointList uses.
func deviceStateText(s string) string {
	switch s {
	case "NOT_INUSE":
		return "Not in use"
	case "INUSE":
		return "In use"
	case "BUSY":
		return "Busy"
	case "INVALID":
		return "Invalid"
	case "UNAVAILABLE":
		return "Unavailable"
	case "RINGING":
		return "Ringing"
	case "RINGINUSE":
		return "Ring+Inuse"
	case "ONHOLD":
		return "On Hold"
	}
	return "Unknown"
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
		v.removeChannel(pbx, ch.Uniqueid)
	}
	call := v.calls[ck]
	if call == nil {
		call = &pb.CallView{PbxId: pbx, Linkedid: linked, StartedAt: at}
		v.calls[ck] = call
	}
	n := proto.Clone(ch).(*pb.Channel)
	n.Linkedid = linked
	n.DurationSeconds = 0
	found := false
	for i, x := range call.Channels {
		if x.Uniqueid == ch.Uniqueid {
			if keepBridge && n.BridgeId == "" {
				n.BridgeId = x.BridgeId
			}
			if n.Application == "" {
				n.Application = x.Application
			}
			call.Channels[i] = n
			found = true
		}
	}
	if !found {
		call.Channels = append(call.Channels, n)
	}
	v.chanCall[pbx+"/"+ch.Uniqueid] = ck
	v.deriveCall(call, at)
	v.dirtyCalls[ck] = true
	v.touchEndpoint(pbx, ami.EndpointOfChannel(ch.Name))
}

func (v *Views) updateChannel(pbx string, at *timestamppb.Timestamp, ch *pb.Channel, keepBridge bool) {
	if ch == nil {
		return
	}
	if _, ok := v.chanCall[pbx+"/"+ch.Uniqueid]; ok {
		v.upsertChannel(pbx, at, ch, keepBridge)
	}
}

func (v *Views) removeChannel(pbx, uniqueid string) {
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
	if len(kept) == 0 {
		delete(v.calls, ck)
		delete(v.dirtyCalls, ck)
		v.removedCalls[ck] = &pb.CallKey{PbxId: call.PbxId, Linkedid: call.Linkedid}
	} else {
		v.deriveCall(call, nil)
		v.dirtyCalls[ck] = true
	}
	if gone != nil {
		v.touchEndpoint(pbx, ami.EndpointOfChannel(gone.Name))
	}
}

// applyChannelsSnapshot makes the PBX's calls exactly the listed channels.
func (v *Views) applyChannelsSnapshot(pbx string, at *timestamppb.Timestamp, chans []*pb.Channel) {
	listed := map[string]bool{}
	for _, ch := range chans {
		listed[ch.Uniqueid] = true
	}
	for key := range v.chanCall {
		if p, id, _ := strings.Cut(key, "/"); p == pbx && !listed[id] {
			v.removeChannel(pbx, id)
		}
	}
	for _, ch := range chans {
		start := at
		if ch.DurationSeconds > 0 && at != nil {
			start = timestamppb.New(at.AsTime().Add(-timeSeconds(ch.DurationSeconds)))
		}
		_, existed := v.calls[pbx+"/"+ch.Linkedid]
		v.upsertChannel(pbx, start, ch, false)
		if c := v.calls[pbx+"/"+ch.Linkedid]; c != nil && !existed && start != nil {
			if c.StartedAt == nil || start.AsTime().Before(c.StartedAt.AsTime()) {
				c.StartedAt = start
			}
		}
	}
}

// deriveCall sets a call's parties and state from its channels.
func (v *Views) deriveCall(c *pb.CallView, at *timestamppb.Timestamp) {
	if len(c.Channels) == 0 {
		return
	}
	origin := c.Channels[0]
	for _, ch := range c.Channels {
		if ch.Uniqueid == c.Linkedid {
			origin = ch
		}
	}
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
	var up, ringing, bridged int
	c.BridgeId = ""
	for _, ch := range c.Channels {
		switch ch.State {
		case 6:
			up++
		case 5:
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
	case bridged >= 2:
		c.State = "bridged"
	case up > 0 && (len(c.Channels) == 1 || up >= 2 || origin.State == 6):
		c.State = "up"
	case ringing > 0:
		c.State = "ringing"
	case up > 0:
		c.State = "up"
	default:
		c.State = "dialing"
	}
	if (c.State == "up" || c.State == "bridged") && c.AnsweredAt == nil && at != nil {
		c.AnsweredAt = at
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
