package projection

import (
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pbxpulse/pbxpulse/pkg/ami"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

// healthEvery is the most often a trunk's round trip is sampled into its
// health history; status changes are always recorded.
const healthEvery = time.Minute

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
	if s.Address != "" {
		cur.Address = s.Address
	}
	if s.Description != "" {
		cur.Description = s.Description
	}
	if s.Technology != pb.Technology_TECHNOLOGY_PJSIP {
		// chan_sip and IAX2 peers have no contacts; their status is the
		// peer's own (OK (5 ms), UNREACHABLE, Unmonitored...).
		cur.Reachability = peerReachability(s.Status)
		v.touchEndpoint(pbx, s.Name)
		return
	}
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
	changed := x.Status != c.Status
	x.Status = c.Status
	known := c.RoundtripKnown || c.RoundtripUsec > 0
	if known {
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
	if cur.Kind == pb.EndpointKind_ENDPOINT_KIND_TRUNK && (changed || known) {
		rtt := x.RoundtripUsec
		if !known {
			rtt = 0 // an Unreachable contact has no round trip; do not repeat the last one
		}
		v.sampleHealth(cur, at, changed, c.Status, rtt)
	}
	v.touchEndpoint(pbx, ep)
}

// applyPeer follows chan_sip and IAX2 peers, which report reachability and
// round trip in PeerStatus rather than contacts.
func (v *Views) applyPeer(pbx string, at *timestamppb.Timestamp, p *pb.PeerStatus) {
	cur := v.endpoints[pbx+"/"+p.Name]
	if cur == nil {
		return
	}
	cur.UpdatedAt = at
	if p.Address != "" {
		cur.Address = p.Address
	}
	r := peerReachability(p.Status)
	was := cur.Reachability
	if cur.Technology == pb.Technology_TECHNOLOGY_PJSIP {
		// PJSIP sends PeerStatus too, but its reachability is its
		// contacts', and the field is only rederived when the batch
		// settles: compare with what the contacts say now, or whether
		// this is a change would depend on where a batch ends.
		_, was = contactsState(cur.Contacts)
	}
	changed := r != was
	cur.Reachability = r
	if cur.Kind == pb.EndpointKind_ENDPOINT_KIND_TRUNK && (changed || p.RoundtripMs > 0) {
		v.sampleHealth(cur, at, changed, p.Status, p.RoundtripMs*1000)
	}
	v.touchEndpoint(pbx, p.Name)
}

// sampleHealth adds a round-trip point to a trunk's health history: every
// status change, otherwise at most one per healthEvery.
func (v *Views) sampleHealth(e *pb.EndpointView, at *timestamppb.Timestamp, changed bool, status string, rtt int64) {
	if at == nil {
		return
	}
	if !changed && e.LastHealthSample != nil && at.AsTime().Sub(e.LastHealthSample.AsTime()) < healthEvery {
		return
	}
	e.LastHealthSample = at
	v.health = append(v.health, &pb.TrunkHealthSample{PbxId: e.PbxId, Trunk: e.Name, At: at, Kind: "roundtrip", Status: status, RoundtripUsec: rtt})
}

func (v *Views) applyRegistration(pbx string, at *timestamppb.Timestamp, r *pb.TrunkRegistration) {
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
	if r.Name != "" {
		// AMI's Registry events do not name the registration; the
		// listing does. Flaps keep the name once it is known.
		cur.Name = r.Name
	}
	if cur.Status != r.Status || cur.Cause != r.Cause {
		// A registration that changes state is a flap in the trunk's history.
		trunk := cur.Name
		if trunk == "" {
			trunk = key
		}
		v.health = append(v.health, &pb.TrunkHealthSample{PbxId: pbx, Trunk: trunk, At: at, Kind: "registration", Status: r.Status, Cause: r.Cause})
	}
	cur.ClientUri, cur.ServerUri, cur.Status, cur.Cause, cur.UpdatedAt = r.ClientUri, r.ServerUri, r.Status, r.Cause, at
	v.dirtyRegs[k] = true
}

// indexChannel and unindexChannel keep the endpoint -> channels index that
// makes an endpoint's status constant time per channel event.
func (v *Views) indexChannel(pbx string, ch *pb.Channel) string {
	ep := ami.EndpointOfChannel(ch.Name)
	if ep == "" {
		return ""
	}
	k := pbx + "/" + ep
	m := v.epChans[k]
	if m == nil {
		m = map[string]*pb.Channel{}
		v.epChans[k] = m
	}
	m[ch.Uniqueid] = ch
	return ep
}

func (v *Views) unindexChannel(pbx string, ch *pb.Channel) string {
	ep := ami.EndpointOfChannel(ch.Name)
	if ep == "" {
		return ""
	}
	k := pbx + "/" + ep
	if m := v.epChans[k]; m != nil {
		delete(m, ch.Uniqueid)
		if len(m) == 0 {
			delete(v.epChans, k)
		}
	}
	return ep
}

// epKey names an endpoint.
type epKey struct{ pbx, name string }

// touchEndpoint marks an endpoint changed; its derived fields are
// recomputed once per batch, when the changes are taken (settle).
func (v *Views) touchEndpoint(pbx, name string) {
	if name != "" {
		v.stale[epKey{pbx, name}] = true // no key string built per event
	}
}

// settle recomputes the derived fields of the endpoints touched since the
// last call: status, current calls, registration and reachability. They
// depend only on the state, so computing them once per batch gives what
// computing them after every event would.
func (v *Views) settle() {
	for k := range v.stale {
		v.deriveEndpoint(k.pbx + "/" + k.name)
	}
	clear(v.stale)
}

func (v *Views) deriveEndpoint(k string) {
	e := v.endpoints[k]
	if e == nil {
		return
	}
	var up, ringing, held int
	calls := e.Calls[:0]
	for _, ch := range v.epChans[k] {
		switch {
		case ch.State == 5: // Ringing
			ringing++
		case v.isHeld(e.PbxId, ch.Uniqueid):
			held++
		default:
			up++
		}
		calls = addUnique(calls, ch.Linkedid)
	}
	sort.Strings(calls)
	if len(calls) == 0 {
		calls = nil
	}
	e.Calls = calls
	e.ActiveChannels = uint32(len(v.epChans[k]))
	if e.Technology == pb.Technology_TECHNOLOGY_PJSIP {
		e.Registration, e.Reachability = contactsState(e.Contacts)
	}
	switch {
	case up > 0:
		e.Status = "in_call"
	case held > 0:
		e.Status = "on_hold"
	case ringing > 0:
		e.Status = "ringing"
	default:
		e.Status = statusFromDevice(e)
	}
	v.dirtyEndpoints[k] = true
}

// contactsState says whether a PJSIP endpoint has registered contacts and
// whether qualify reaches them.
func contactsState(cs []*pb.ContactView) (registration, reachability string) {
	if len(cs) == 0 {
		return "unregistered", "unknown"
	}
	reachability = "unknown"
	for _, c := range cs {
		switch c.Status {
		case "Reachable":
			return "registered", "reachable"
		case "Unreachable":
			reachability = "unreachable"
		}
	}
	return "registered", reachability
}

// peerReachability reads chan_sip/IAX2 peer states: "OK (5 ms)",
// "Reachable", "UNREACHABLE", "Unreachable", "LAGGED", "Unmonitored".
func peerReachability(status string) string {
	s := strings.ToLower(status)
	switch {
	case strings.HasPrefix(s, "ok"), strings.HasPrefix(s, "reachable"), strings.HasPrefix(s, "registered"), strings.HasPrefix(s, "lagged"):
		return "reachable"
	case strings.HasPrefix(s, "unreachable"), strings.HasPrefix(s, "unregistered"), strings.HasPrefix(s, "rejected"):
		return "unreachable"
	}
	return "unknown"
}

func statusFromDevice(e *pb.EndpointView) string {
	switch strings.ToLower(e.DeviceState) {
	case "unavailable", "invalid":
		return "offline"
	case "in use", "busy":
		return "in_call"
	case "on hold":
		return "on_hold"
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
	if len(e.Contacts) > 0 || e.Reachability == "unreachable" {
		return "offline"
	}
	if e.Reachability == "reachable" {
		return "online"
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
